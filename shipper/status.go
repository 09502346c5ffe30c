package shipper

import (
	"encoding/json"
	"io"
	"os"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// Status is the content of the spool's status.json, rewritten every
// StatusInterval so that `ctl status` works while NATS is down. Counters
// are since the shipper started.
type Status struct {
	Time              string  `json:"time"`
	PID               int     `json:"pid"`
	SpoolID           string  `json:"spool_id,omitempty"`
	NATS              string  `json:"nats_state"`
	BacklogEvents     int64   `json:"backlog_events"`
	BacklogBytes      int64   `json:"backlog_bytes"`
	BacklogFiles      int     `json:"backlog_files"`
	OldestPendingAgeS float64 `json:"oldest_pending_age_s"`
	LastSuccess       string  `json:"last_success,omitempty"`
	LastError         string  `json:"last_error,omitempty"`
	LastErrorTime     string  `json:"last_error_time,omitempty"`
	Retrying          bool    `json:"retrying"`
	Published         uint64  `json:"published"`
	Acknowledged      uint64  `json:"acknowledged"`
	Retries           uint64  `json:"retries"`
	DroppedEvents     int64   `json:"dropped_events"`
	DroppedChunks     int64   `json:"dropped_chunks"`
	Quarantined       int64   `json:"quarantined_lines"`
	FallbackIngested  int64   `json:"fallback_ingested"`
	StartedAt         string  `json:"started_at"`
	// LiveState is the live state's report (package livestate), absent
	// when it is off.
	LiveState any `json:"live_state,omitempty"`
}

type stats struct {
	started       time.Time
	sent, acked   uint64
	retries       uint64
	lastOK        time.Time
	lastErr       string
	lastErrAt     time.Time
	droppedEvents int64
	droppedChunks int64
	quarantined   int64
	fallbacks     int64
	lastTempSweep time.Time
}

// Status computes the current status. It reads a little of the spool:
// line counts of chunks not counted yet, and the oldest pending event.
func (s *Shipper) Status() Status {
	st := Status{
		Time:             time.Now().UTC().Format(time.RFC3339Nano),
		PID:              os.Getpid(),
		SpoolID:          s.sp.Meta().SpoolID,
		NATS:             s.pub.State(),
		Retrying:         s.retrying,
		Published:        s.stats.sent,
		Acknowledged:     s.stats.acked,
		Retries:          s.stats.retries,
		DroppedEvents:    s.stats.droppedEvents,
		DroppedChunks:    s.stats.droppedChunks,
		Quarantined:      s.stats.quarantined,
		FallbackIngested: s.stats.fallbacks,
		LastError:        s.stats.lastErr,
		StartedAt:        s.stats.started.UTC().Format(time.RFC3339),
	}
	if s.o.LiveState != nil {
		st.LiveState = s.o.LiveState()
	}
	if !s.stats.lastOK.IsZero() {
		st.LastSuccess = s.stats.lastOK.UTC().Format(time.RFC3339Nano)
	}
	if !s.stats.lastErrAt.IsZero() {
		st.LastErrorTime = s.stats.lastErrAt.UTC().Format(time.RFC3339Nano)
	}
	oldest := true
	for _, t := range s.chunks {
		size := t.c.Size
		if !t.final && t.f != nil {
			if fi, err := t.f.Stat(); err == nil {
				size = fi.Size()
			}
		}
		if t.acked >= size {
			continue
		}
		st.BacklogBytes += size - t.acked
		st.BacklogFiles++
		if t.final {
			if t.lines < 0 {
				t.lines = s.countLines(t, t.acked, size)
			}
			st.BacklogEvents += t.lines
		} else {
			st.BacklogEvents += s.countLines(t, t.acked, size)
		}
		if oldest {
			oldest = false
			if ts, ok := s.eventTime(t); ok {
				st.OldestPendingAgeS = time.Since(ts).Seconds()
			}
		}
	}
	return st
}

func (s *Shipper) writeStatus() {
	st := s.Status()
	b, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		err = s.sp.WriteStatus(append(b, '\n'))
	}
	if err != nil {
		s.noteErr("write status", err)
	}
	if s.o.OnStatus != nil {
		s.o.OnStatus(st)
	}
}

func (s *Shipper) withFile(t *tracker, fn func(f *os.File)) {
	if t.f != nil {
		fn(t.f)
		return
	}
	f, err := s.sp.OpenChunk(t.c)
	if err != nil {
		return
	}
	defer f.Close()
	fn(f)
}

// countLines counts complete lines in [from, to) with positioned reads, so
// the tracker's read offset is untouched.
func (s *Shipper) countLines(t *tracker, from, to int64) int64 {
	var n int64
	s.withFile(t, func(f *os.File) {
		buf := make([]byte, 256<<10)
		for off := from; off < to; {
			want := min(int64(len(buf)), to-off)
			m, err := f.ReadAt(buf[:want], off)
			for _, c := range buf[:m] {
				if c == '\n' {
					n++
				}
			}
			off += int64(m)
			if err != nil && err != io.EOF || m == 0 {
				break
			}
		}
		if t.final && to > from && n == 0 {
			n = 1 // a torn tail is one (malformed) line
		}
	})
	return n
}

// eventTime reads the time of the first unacknowledged event of t.
func (s *Shipper) eventTime(t *tracker) (time.Time, bool) {
	var ts time.Time
	ok := false
	s.withFile(t, func(f *os.File) {
		sc := spool.NewScanner(io.NewSectionReader(f, t.acked, spool.MaxLine+1), t.acked, t.final)
		for i := 0; i < 16 && sc.Scan(); i++ {
			var v struct {
				Time string `json:"time"`
			}
			if json.Unmarshal(sc.Line().Data, &v) == nil {
				if p, err := time.Parse(time.RFC3339Nano, v.Time); err == nil {
					ts, ok = p, true
					return
				}
			}
		}
	})
	return ts, ok
}
