package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// takenSuffix marks a fallback file the shipper has started to take in.
const takenSuffix = ".taken"

// AppendFallback writes one event without the lock: a file of its own in
// fallback/, written under a temporary name and renamed, so a reader sees
// the whole line or nothing. The line carries no seq (it is numbered when
// the shipper takes it in). It returns the file's name.
func (s *Spool) AppendFallback(line []byte) (string, error) {
	if err := checkLine(line); err != nil {
		return "", err
	}
	if err := mkdirAt(s.dirfd, FallbackDir); err != nil {
		return "", fmt.Errorf("fallback: %w", err)
	}
	base := fmt.Sprintf("%019d-%d-%s.ndjson", time.Now().UnixNano(), os.Getpid(), newUUID()[:8])
	tmp := FallbackDir + "/.tmp-" + base
	name := FallbackDir + "/" + base
	fd, err := createExcl(s.dirfd, tmp, unix.O_WRONLY, EventMode)
	if err != nil {
		return "", fmt.Errorf("fallback: create %s: %w", tmp, err)
	}
	err = writeAll(fd, line)
	if err == nil && s.opts.Fsync {
		err = unix.Fdatasync(fd)
	}
	unix.Close(fd)
	if err == nil {
		err = unix.Renameat(s.dirfd, tmp, s.dirfd, name)
	}
	if err != nil {
		unix.Unlinkat(s.dirfd, tmp, 0)
		return "", fmt.Errorf("fallback: write %s: %w", name, err)
	}
	if s.opts.Fsync {
		if err := fsyncDirOf(s.dirfd, FallbackDir); err != nil {
			return name, fmt.Errorf("fallback: fsync %s: %w", FallbackDir, err)
		}
	}
	return name, nil
}

// Fallbacks lists the fallback files waiting to be taken in, oldest first
// (names start with the time they were written), including ".taken" ones
// left by a crash.
func (s *Spool) Fallbacks() ([]string, error) {
	names, err := s.listDir(FallbackDir)
	if err != nil {
		return nil, err
	}
	out := names[:0]
	for _, n := range names {
		if !strings.HasPrefix(n, ".") && (strings.HasSuffix(n, ".ndjson") || strings.HasSuffix(n, takenSuffix)) {
			out = append(out, FallbackDir+"/"+n)
		}
	}
	return out, nil
}

// ErrMalformedFallback means a fallback file did not hold one readable
// event; IngestFallback has moved it to quarantine/.
var ErrMalformedFallback = errors.New("malformed fallback file")

// IngestFallback numbers the event in fallback file name and appends it to
// the queue like any other, then deletes the file. Every field is kept; only
// "seq" (and "spool_id" when the hook could not read it) are set, so the
// line is re-encoded with its keys in sorted order.
//
// The file is first renamed to *.taken. If the shipper dies after the append
// but before the delete, the next call finds the event_id in the spool and
// only deletes the file: each fallback event gets exactly one seq.
func (s *Spool) IngestFallback(name string) (uint64, error) {
	l, _, err := s.lock()
	if err != nil {
		return 0, fmt.Errorf("take in %s: %w", name, err)
	}
	seq, qfd, err := s.ingestLocked(l, name)
	l.unlock()
	if err != nil {
		return 0, err
	}
	if qfd >= 0 {
		defer unix.Close(qfd)
		if s.opts.Fsync {
			if err := unix.Fdatasync(qfd); err != nil {
				return 0, fmt.Errorf("take in %s: fsync: %w", name, err)
			}
		}
	}
	taken := name
	if !strings.HasSuffix(name, takenSuffix) {
		taken = name + takenSuffix
	}
	if err := unix.Unlinkat(s.dirfd, taken, 0); err != nil && err != unix.ENOENT {
		return seq, fmt.Errorf("take in %s: remove: %w", name, err)
	}
	return seq, nil
}

// ingestLocked returns the new seq and the queue descriptor (-1 when the
// event was already in the queue).
func (s *Spool) ingestLocked(l *lockFile, name string) (uint64, int, error) {
	taken := name
	if !strings.HasSuffix(name, takenSuffix) {
		taken = name + takenSuffix
		if err := unix.Renameat(s.dirfd, name, s.dirfd, taken); err != nil {
			return 0, -1, fmt.Errorf("take in %s: %w", name, err)
		}
	}
	raw, err := readFileAt(s.dirfd, taken, MaxLine+1)
	if err != nil {
		return 0, -1, fmt.Errorf("take in %s: %w", name, err)
	}
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimSpace(raw), &ev); err != nil || len(ev) == 0 || len(raw) > MaxLine {
		if _, qerr := s.Quarantine(name, bytes.TrimRight(raw, "\n")); qerr != nil {
			return 0, -1, qerr
		}
		unix.Unlinkat(s.dirfd, taken, 0)
		return 0, -1, fmt.Errorf("take in %s: %w", name, ErrMalformedFallback)
	}
	var id string
	json.Unmarshal(ev["event_id"], &id)
	if strings.HasSuffix(name, takenSuffix) && id != "" {
		if seq, found := s.findEvent(id); found {
			return seq, -1, nil // appended before a crash; only the delete was missing
		}
	}
	var info AppendInfo
	qfd, err := s.appendLocked(l, func(st Stamp) ([]byte, error) {
		ev["seq"] = json.RawMessage(strconv.FormatUint(st.Seq, 10))
		if sid, ok := ev["spool_id"]; !ok || string(sid) == `""` {
			ev["spool_id"], _ = json.Marshal(st.SpoolID)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(ev); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}, &info)
	if err != nil {
		return 0, -1, fmt.Errorf("take in %s: %w", name, err)
	}
	return info.Seq, qfd, nil
}

// findEvent looks for an event_id in the queue and the newest chunk, where
// an event taken in just before a crash must be.
func (s *Spool) findEvent(id string) (uint64, bool) {
	chunks, err := s.Chunks()
	if err != nil {
		return 0, false
	}
	needle := []byte(`"event_id":"` + id + `"`)
	for i := len(chunks) - 1; i >= 0 && i >= len(chunks)-2; i-- {
		f, err := s.OpenChunk(chunks[i])
		if err != nil {
			continue
		}
		sc := NewScanner(f, 0, !chunks[i].Active)
		for sc.Scan() {
			if ln := sc.Line(); ln.Err == nil && bytes.Contains(ln.Data, needle) {
				f.Close()
				return ln.Rec.Seq, true
			}
		}
		f.Close()
	}
	return 0, false
}

// RemoveStaleTemp deletes fallback temporaries older than age: their
// writers died before committing the event.
func (s *Spool) RemoveStaleTemp(age time.Duration) (int, error) {
	names, err := s.listDir(FallbackDir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, name := range names {
		if !strings.HasPrefix(name, ".tmp-") {
			continue
		}
		rel := FallbackDir + "/" + name
		var st unix.Stat_t
		if err := unix.Fstatat(s.dirfd, rel, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue
		}
		if time.Since(time.Unix(st.Mtim.Unix())) > age {
			if unix.Unlinkat(s.dirfd, rel, 0) == nil {
				n++
			}
		}
	}
	return n, nil
}
