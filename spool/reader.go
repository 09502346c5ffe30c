package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Chunk is a spool file whose lines await shipping: a rotated chunk in
// pending/, or the active queue (Active true), which may still grow.
type Chunk struct {
	Name    string // relative to the spool dir: "queue.ndjson" or "pending/…"
	Active  bool
	Ino     uint64
	Size    int64
	ModTime time.Time
}

// Chunks lists the pending chunks in rotation order, then the active queue
// if it exists.
func (s *Spool) Chunks() ([]Chunk, error) {
	names, err := s.listDir(PendingDir)
	if err != nil {
		return nil, err
	}
	out := make([]Chunk, 0, len(names)+1)
	for _, n := range names {
		if !strings.HasSuffix(n, ".ndjson") || strings.HasPrefix(n, ".") {
			continue
		}
		c, err := s.stat(PendingDir + "/" + n)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return chunkOrder(out[i].Name) < chunkOrder(out[j].Name) })
	q, err := s.stat(QueueFile)
	switch {
	case err == nil:
		q.Active = true
		out = append(out, q)
	case !errors.Is(err, unix.ENOENT):
		return nil, err
	}
	return out, nil
}

// chunkOrder sorts "pending/<seq>[-n].ndjson" by seq, then n.
func chunkOrder(name string) string {
	base := strings.TrimSuffix(strings.TrimPrefix(name, PendingDir+"/"), ".ndjson")
	seq, n, _ := strings.Cut(base, "-")
	return fmt.Sprintf("%020s-%010s", seq, n)
}

func (s *Spool) stat(name string) (Chunk, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(s.dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return Chunk{}, fmt.Errorf("stat %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return Chunk{}, fmt.Errorf("stat %s: not a regular file", name)
	}
	return Chunk{Name: name, Ino: st.Ino, Size: st.Size, ModTime: time.Unix(st.Mtim.Unix())}, nil
}

func (s *Spool) listDir(sub string) ([]string, error) {
	fd, err := unix.Openat(s.dirfd, sub, unix.O_RDONLY|unix.O_DIRECTORY|openFlags, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", sub, err)
	}
	f := os.NewFile(uintptr(fd), sub)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", sub, err)
	}
	sort.Strings(names)
	return names, nil
}

// OpenChunk opens c for reading and checks it is still the same file.
func (s *Spool) OpenChunk(c Chunk) (*os.File, error) {
	fd, err := unix.Openat(s.dirfd, c.Name, unix.O_RDONLY|openFlags, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", c.Name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Ino != c.Ino {
		unix.Close(fd)
		return nil, fmt.Errorf("open %s: the file changed (rotated?)", c.Name)
	}
	return os.NewFile(uintptr(fd), c.Name), nil
}

// Rotate moves a non-empty active queue into pending/ under the lock, so
// that it can be deleted once shipped. The chunk is named after the seq
// counter at that moment, which bounds every seq inside it. ok is false when
// there was nothing to rotate.
func (s *Spool) Rotate() (c Chunk, ok bool, err error) {
	l, _, err := s.lock()
	if err != nil {
		return Chunk{}, false, fmt.Errorf("rotate: %w", err)
	}
	defer l.unlock()
	q, err := s.stat(QueueFile)
	if errors.Is(err, unix.ENOENT) || err == nil && q.Size == 0 {
		return Chunk{}, false, nil
	}
	if err != nil {
		return Chunk{}, false, fmt.Errorf("rotate: %w", err)
	}
	if err := mkdirAt(s.dirfd, PendingDir); err != nil {
		return Chunk{}, false, fmt.Errorf("rotate: %w", err)
	}
	cur, recovered, err := s.counterLocked(l)
	if err != nil {
		return Chunk{}, false, fmt.Errorf("rotate: %w", err)
	}
	if recovered {
		if err := l.writeCounter(cur); err != nil {
			return Chunk{}, false, fmt.Errorf("rotate: %w", err)
		}
	}
	name := fmt.Sprintf("%s/%020d.ndjson", PendingDir, cur)
	for i := 1; ; i++ {
		err = unix.Renameat2(s.dirfd, QueueFile, s.dirfd, name, unix.RENAME_NOREPLACE)
		if err != unix.EEXIST || i > 1000 {
			break
		}
		// Same counter as an earlier chunk: the queue held only lines
		// without a new seq (torn bytes). Keep both.
		name = fmt.Sprintf("%s/%020d-%d.ndjson", PendingDir, cur, i)
	}
	if err != nil {
		return Chunk{}, false, fmt.Errorf("rotate %s to %s: %w", QueueFile, name, err)
	}
	q.Name = name
	return q, true, nil
}

// Remove deletes a chunk. Call it only after SaveState has recorded the
// chunk's high-water mark and dropped its progress entry.
func (s *Spool) Remove(c Chunk) error {
	if c.Active {
		return fmt.Errorf("remove %s: the active queue is never deleted, only rotated", c.Name)
	}
	if err := unix.Unlinkat(s.dirfd, c.Name, 0); err != nil && err != unix.ENOENT {
		return fmt.Errorf("remove %s: %w", c.Name, err)
	}
	return nil
}

// Quarantine keeps a malformed line's raw bytes in quarantine/, named after
// the chunk it came from, for a person to look at.
func (s *Spool) Quarantine(from string, data []byte) (string, error) {
	if err := mkdirAt(s.dirfd, QuarantineDir); err != nil {
		return "", fmt.Errorf("quarantine: %w", err)
	}
	base := strings.TrimSuffix(strings.ReplaceAll(from, "/", "_"), ".ndjson")
	name := QuarantineDir + "/" + base + ".bad"
	fd, _, err := openOrCreate(s.dirfd, name, unix.O_WRONLY|unix.O_APPEND, StateMode)
	if err != nil {
		return "", fmt.Errorf("quarantine: open %s: %w", name, err)
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, len(data)+1)
	buf = append(append(buf, data...), '\n')
	if err := writeAll(fd, buf); err != nil {
		return "", fmt.Errorf("quarantine: write %s: %w", name, err)
	}
	if s.opts.Fsync {
		unix.Fdatasync(fd)
	}
	return name, nil
}

// State is the shipper's progress, kept in shipper.state.
type State struct {
	// HWM is the highest seq in any chunk the shipper deleted; it keeps
	// the counter above numbers already used after a reboot.
	HWM uint64 `json:"hwm"`
	// Files maps an inode number to how far that file is acknowledged.
	// Progress follows the inode, so a rotation (a rename) keeps it.
	Files map[string]FileProgress `json:"files"`
}

// FileProgress is the acknowledged prefix of one spool file.
type FileProgress struct {
	Name  string `json:"name"`
	Acked int64  `json:"acked"`
}

// Progress returns how far c is acknowledged (0 when unknown). An entry
// only counts for the same inode under the same name, or for the active
// queue that has since been rotated; anything else is a reused inode.
func (st *State) Progress(c Chunk) int64 {
	p, ok := st.Files[strconv.FormatUint(c.Ino, 10)]
	if !ok || p.Acked > c.Size {
		return 0
	}
	if p.Name == c.Name || p.Name == QueueFile && strings.HasPrefix(c.Name, PendingDir+"/") {
		return p.Acked
	}
	return 0
}

// SetProgress records that c is acknowledged up to off.
func (st *State) SetProgress(c Chunk, off int64) {
	if st.Files == nil {
		st.Files = map[string]FileProgress{}
	}
	st.Files[strconv.FormatUint(c.Ino, 10)] = FileProgress{Name: c.Name, Acked: off}
}

// Forget drops c's entry (before c is removed).
func (st *State) Forget(c Chunk) { delete(st.Files, strconv.FormatUint(c.Ino, 10)) }

// LoadState reads shipper.state. A missing file is an empty state; an
// unreadable one is an empty state and an error to report (everything is
// re-sent, and de-duplicated downstream).
func (s *Spool) LoadState() (State, error) {
	st := State{Files: map[string]FileProgress{}}
	b, err := readFileAt(s.dirfd, StateFile, 64<<20)
	if errors.Is(err, unix.ENOENT) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read %s: %w", StateFile, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return State{Files: map[string]FileProgress{}}, fmt.Errorf("read %s: %w; starting over", StateFile, err)
	}
	if st.Files == nil {
		st.Files = map[string]FileProgress{}
	}
	return st, nil
}

// SaveState replaces shipper.state atomically; durable syncs it (needed
// before a chunk is deleted, optional for mere progress).
func (s *Spool) SaveState(st State, durable bool) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode %s: %w", StateFile, err)
	}
	if err := writeFileAtomic(s.dirfd, StateFile, b, StateMode, durable); err != nil {
		return fmt.Errorf("write %s: %w", StateFile, err)
	}
	return nil
}

// WriteStatus replaces the status file atomically (for `ctl status`, which
// must work while NATS is down).
func (s *Spool) WriteStatus(b []byte) error {
	if err := writeFileAtomic(s.dirfd, StatusFile, b, EventMode, false); err != nil {
		return fmt.Errorf("write %s: %w", StatusFile, err)
	}
	return nil
}

// recoverSeq finds the highest seq the spool may have handed out: the
// shipper's high-water mark, the newest chunk's name, the last seq in the
// queue's tail. The caller holds the lock.
func (s *Spool) recoverSeq() (uint64, error) {
	var max uint64
	if st, err := s.LoadState(); err == nil {
		max = st.HWM
	}
	names, err := s.listDir(PendingDir)
	if err != nil {
		return 0, err
	}
	for _, n := range names {
		digits, _, _ := strings.Cut(strings.TrimSuffix(n, ".ndjson"), "-")
		if v, err := strconv.ParseUint(digits, 10, 64); err == nil && v > max {
			max = v
		}
	}
	fd, err := unix.Openat(s.dirfd, QueueFile, unix.O_RDONLY|openFlags, 0)
	if err == unix.ENOENT {
		return max, nil
	}
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", QueueFile, err)
	}
	defer unix.Close(fd)
	last, err := lastSeq(fd)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", QueueFile, err)
	}
	if last > max {
		max = last
	}
	return max, nil
}

// lastSeq returns the seq of the last readable line of a file, reading
// backwards from the end in blocks. Lines are appended in seq order under
// the lock, so that is the file's highest. It gives up (returning 0) after
// MaxLine*4 bytes without a readable line.
func lastSeq(fd int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	end := st.Size
	const block = 64 << 10
	var tail []byte // bytes from some offset to end
	for read := int64(0); end > 0 && read < MaxLine*4; {
		n := int64(block)
		if n > end {
			n = end
		}
		buf := make([]byte, n)
		if _, err := unix.Pread(fd, buf, end-n); err != nil {
			return 0, err
		}
		end -= n
		read += n
		tail = append(buf, tail...)
		// Try complete lines from the last one backwards. The first
		// line in tail may be cut unless we reached the file's start.
		lines := strings.Split(string(tail), "\n")
		first := 1
		if end == 0 {
			first = 0
		}
		for i := len(lines) - 1; i >= first; i-- {
			if r, err := ParseRecord([]byte(lines[i])); err == nil {
				return r.Seq, nil
			}
		}
	}
	return 0, nil
}
