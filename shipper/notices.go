package shipper

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// derivedNS is the UUIDv5 namespace of the events the shipper writes. An
// id is a hash of the spool and of exactly what the notice is about, so the
// same fact noticed again after a restart gets the same event_id.
var derivedNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/ocserv-telemetry/ocserv-telemetry/derived-event"))

func derivedID(parts ...any) string {
	return uuid.NewSHA1(derivedNS, []byte(fmt.Sprint(parts...))).String()
}

// Longest run of malformed lines reported as one notice.
const (
	runMaxLines = 1000
	runMaxBytes = 4 << 20
)

// qrun is a run of consecutive malformed lines of one chunk: one
// quarantine event covers it.
type qrun struct {
	from, to int64
	reason   string
	lines    [][]byte
	kept     int
	n        int64
	seqs     ranges
}

func (s *Shipper) quarantineLine(t *tracker, run *qrun, ln *spool.Line) *qrun {
	if run != nil && (run.n >= runMaxLines || run.kept >= runMaxBytes) {
		s.flushRun(t, run)
		run = nil
	}
	if run == nil {
		run = &qrun{from: ln.Off, reason: ln.Err.Error()}
	}
	run.to = ln.Next
	run.n++
	if ln.Data != nil {
		b := make([]byte, len(ln.Data))
		copy(b, ln.Data)
		run.lines = append(run.lines, b)
		run.kept += len(b)
	}
	if ln.Data != nil {
		if r, err := spool.ParseRecord(ln.Data); err == nil {
			run.seqs.add(r.Seq) // a readable event that cannot be delivered (too large)
		}
	}
	return run
}

// flushRun keeps the run's raw lines in quarantine/, appends the notice and
// lets the acknowledged prefix pass over the run. During a retry the run is
// forgotten instead: the lines are read again, and reported, after it.
func (s *Shipper) flushRun(t *tracker, run *qrun) {
	if run == nil || s.retrying {
		return
	}
	var qname string
	for _, l := range run.lines {
		n, err := s.sp.Quarantine(t.c.Name, l)
		if err != nil {
			s.noteErr("quarantine", err)
			s.fail(err)
			return
		}
		qname = n
	}
	if qname == "" {
		qname = spool.QuarantineDir + "/(line too long to keep)"
	}
	notice := &events.SpoolNotice{
		Reason:    "unreadable spool line: " + run.reason,
		Events:    run.n,
		Bytes:     run.to - run.from,
		SeqRanges: run.seqs.list,
		Files:     []string{t.c.Name, qname},
	}
	id := derivedID(s.sp.Meta().SpoolID, "quarantine", t.c.Ino, run.from, run.to)
	if err := s.appendNotice(events.Quarantine, id, notice); err != nil {
		s.noteErr("write quarantine notice", err)
		s.fail(err)
		return
	}
	s.stats.quarantined += run.n
	s.log.Warn("spool lines quarantined", "chunk", t.c.Name, "lines", run.n, "bytes", run.to-run.from, "file", qname, "reason", run.reason)
	s.push(t, run.to, 1)
	s.pop()
}

// appendNotice writes a derived event through the spool, numbered under the
// lock like the hook's.
func (s *Shipper) appendNotice(typ events.Type, id string, n *events.SpoolNotice) error {
	_, err := s.sp.Append(func(st spool.Stamp) ([]byte, error) {
		ev := events.Event{
			V: events.SchemaVersion, EventID: id, ServerID: s.o.ServerID,
			SpoolID: st.SpoolID, Seq: st.Seq, Type: typ,
			Time: time.Now().UTC().Format(time.RFC3339Nano), BootID: spool.BootID(),
		}
		if typ == events.Overflow {
			ev.Overflow = n
		} else {
			ev.Quarantine = n
		}
		return ev.Marshal()
	})
	return err
}

// ranges collects seqs as inclusive [first, last] pairs.
type ranges struct{ list [][2]uint64 }

// maxRanges bounds a notice's size; a chunk has a handful of gaps at most,
// so this only stops a pathological file from making a huge event.
const maxRanges = 4096

func (r *ranges) add(seq uint64) {
	if n := len(r.list); n > 0 {
		last := &r.list[n-1]
		if seq == last[1]+1 {
			last[1] = seq
			return
		}
		if seq >= last[0] && seq <= last[1] {
			return
		}
	}
	if len(r.list) < maxRanges {
		r.list = append(r.list, [2]uint64{seq, seq})
	}
}

// enforceCap drops the oldest rotated chunks while the spool is over
// MaxBytes, writing an overflow notice for each that says exactly what was
// lost. A chunk with publishes in flight is left alone: it is moving.
func (s *Shipper) enforceCap() {
	if s.o.MaxBytes <= 0 {
		return
	}
	for {
		total := int64(0)
		for _, t := range s.chunks {
			total += t.c.Size
		}
		if total <= s.o.MaxBytes {
			return
		}
		var victim *tracker
		for _, t := range s.chunks {
			if t.final {
				victim = t
				break
			}
		}
		if victim == nil {
			// Everything is in the active file: rotate it so it can go.
			if a := s.active(); a != nil && a.infl == 0 {
				s.rotate()
				continue
			}
			return
		}
		if victim.infl > 0 {
			return
		}
		if err := s.overflow(victim, total); err != nil {
			s.noteErr("drop chunk over the cap", err)
			return
		}
	}
}

func (s *Shipper) overflow(t *tracker, total int64) error {
	notice, err := s.describe(t)
	if err != nil {
		return err
	}
	notice.Reason = fmt.Sprintf("spool over SPOOL_MAX_BYTES (%d bytes, cap %d): oldest chunk dropped before delivery", total, s.o.MaxBytes)
	id := derivedID(s.sp.Meta().SpoolID, "overflow", t.c.Ino, t.acked, t.c.Size)
	if notice.Events > 0 {
		if err := s.appendNotice(events.Overflow, id, notice); err != nil {
			return fmt.Errorf("write overflow notice: %w", err)
		}
	}
	crash(CrashAfterOverflowNotice)
	if err := s.drop(t); err != nil {
		return err
	}
	s.stats.droppedEvents += notice.Events
	s.stats.droppedChunks++
	s.log.Warn("spool over its cap; oldest chunk dropped", "chunk", t.c.Name, "events", notice.Events, "bytes", notice.Bytes, "seq_ranges", fmt.Sprint(notice.SeqRanges))
	return nil
}

// describe reads the unacknowledged part of a chunk for its overflow notice.
func (s *Shipper) describe(t *tracker) (*events.SpoolNotice, error) {
	f, err := s.sp.OpenChunk(t.c)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(t.acked, io.SeekStart); err != nil {
		return nil, err
	}
	var rs ranges
	n := int64(0)
	sc := spool.NewScanner(f, t.acked, true)
	for sc.Scan() {
		n++
		if ln := sc.Line(); ln.Err == nil {
			rs.add(ln.Rec.Seq)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return &events.SpoolNotice{Events: n, Bytes: t.c.Size - t.acked, SeqRanges: rs.list, Files: []string{t.c.Name}}, nil
}

// ingestFallbacks numbers the events the hook wrote without the lock.
func (s *Shipper) ingestFallbacks() {
	names, err := s.sp.Fallbacks()
	if err != nil {
		s.noteErr("list fallback", err)
		return
	}
	for _, name := range names {
		_, err := s.sp.IngestFallback(name)
		switch {
		case err == nil:
			s.stats.fallbacks++
		case errors.Is(err, spool.ErrMalformedFallback):
			s.stats.quarantined++
			id := derivedID(s.sp.Meta().SpoolID, "quarantine-fallback", name)
			n := &events.SpoolNotice{Reason: "unreadable fallback file", Events: 1, Files: []string{name}}
			if err := s.appendNotice(events.Quarantine, id, n); err != nil {
				s.noteErr("write quarantine notice", err)
			}
			s.log.Warn("fallback file quarantined", "file", name)
		case errors.Is(err, spool.ErrLockTimeout):
			s.fallbackDue = true // busy spool; the next turn retries
			return
		default:
			s.noteErr("take in fallback", err)
			return
		}
	}
	if time.Since(s.stats.lastTempSweep) > time.Minute {
		s.stats.lastTempSweep = time.Now()
		if n, err := s.sp.RemoveStaleTemp(s.o.StaleTemp); err == nil && n > 0 {
			s.log.Info("removed stale fallback temporaries", "count", n)
		}
	}
}
