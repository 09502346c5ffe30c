package testbed

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

// Events reads every event in the spool: pending chunks, the queue file
// and fallback files, one JSON event per line, sorted by seq (events
// without a seq, from the fallback path, last in file order). A final line
// without its newline is a write in progress and is left for the next
// read; any other line that does not decode is an error, because the spool
// promises one valid event per line.
func (b *Bed) Events() ([]events.Event, error) {
	files, err := b.spoolFiles()
	if err != nil {
		return nil, err
	}
	var evs []events.Event
	for _, f := range files {
		data, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue // moved by a rotation between listing and reading
		}
		if err != nil {
			return nil, err
		}
		lines := bytes.Split(data, []byte("\n"))
		// The element after the last "\n" is "" or an unfinished line.
		for i, line := range lines[:len(lines)-1] {
			var e events.Event
			if err := json.Unmarshal(line, &e); err != nil {
				return nil, fmt.Errorf("%s line %d is not an event: %v: %q", f, i+1, err, line)
			}
			evs = append(evs, e)
		}
	}
	sort.SliceStable(evs, func(i, j int) bool {
		si, sj := evs[i].Seq, evs[j].Seq
		if si == 0 || sj == 0 {
			return si != 0 && sj == 0
		}
		return si < sj
	})
	return evs, nil
}

// WaitEvents polls the spool until pred accepts the events in it and
// returns them; after timeout it fails the test with what it saw. Call it
// from the test's goroutine.
func (b *Bed) WaitEvents(pred func([]events.Event) bool, timeout time.Duration) []events.Event {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		evs, err := b.Events()
		if err != nil {
			b.t.Fatalf("spool: %v", err)
		}
		if pred(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("spool did not reach the expected state within %s; it holds %d events:\n%s", timeout, len(evs), Summarize(evs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Match selects events: every non-zero field must be equal.
type Match struct {
	Type     events.Type
	Username string
	ID       int // session.id, ocserv's worker PID
}

func (m Match) ok(e events.Event) bool {
	if m.Type != "" && e.Type != m.Type {
		return false
	}
	if m.Username != "" && (e.Session == nil || e.Session.Username != m.Username) {
		return false
	}
	if m.ID != 0 && (e.Session == nil || e.Session.ID != m.ID) {
		return false
	}
	return true
}

// Filter returns the events that match m.
func Filter(evs []events.Event, m Match) []events.Event {
	var out []events.Event
	for _, e := range evs {
		if m.ok(e) {
			out = append(out, e)
		}
	}
	return out
}

// Count returns a WaitEvents predicate: at least n events match m.
func Count(m Match, n int) func([]events.Event) bool {
	return func(evs []events.Event) bool { return len(Filter(evs, m)) >= n }
}

// All combines predicates.
func All(preds ...func([]events.Event) bool) func([]events.Event) bool {
	return func(evs []events.Event) bool {
		for _, p := range preds {
			if !p(evs) {
				return false
			}
		}
		return true
	}
}

// Summarize prints events one per line for failure messages.
func Summarize(evs []events.Event) string {
	var s strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&s, "  seq=%d type=%s", e.Seq, e.Type)
		if e.Session != nil {
			fmt.Fprintf(&s, " id=%d user=%q group=%q dev=%s real=%s remote=%s", e.Session.ID, e.Session.Username,
				e.Session.Groupname, e.Session.Device, e.Session.IPReal, e.Session.IPRemote)
		}
		if e.Stats != nil {
			fmt.Fprintf(&s, " in=%d out=%d", e.Stats.BytesIn, e.Stats.BytesOut)
		}
		if e.Admitted != nil {
			fmt.Fprintf(&s, " admitted=%v", *e.Admitted)
		}
		if len(e.Problems) > 0 {
			fmt.Fprintf(&s, " problems=%q", e.Problems)
		}
		s.WriteString("\n")
	}
	return s.String()
}
