package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// derived decodes the notices among stored messages.
func notices(t *testing.T, msgs []streamMsg, typ events.Type) []events.Event {
	t.Helper()
	var out []events.Event
	for _, m := range msgs {
		var ev events.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatalf("stored message is not an event: %v: %s", err, m.Data)
		}
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// Chunks that are truncated, bit-flipped or binary junk: every unreadable
// line is set aside in quarantine/ and reported by a quarantine event with
// exact counts, every readable event is still delivered, and shipping goes
// on afterwards.
func TestCorruptChunksQuarantined(t *testing.T) {
	srv := natstest.Run(t)
	url := srv.ClientURL()
	s := newSite(t, url, nil)
	sp := s.openSpool()
	rotate := func() spool.Chunk {
		c, ok, err := sp.Rotate()
		if err != nil || !ok {
			t.Fatalf("rotate: %v %v", ok, err)
		}
		return c
	}
	var good []uint64
	good = append(good, s.appendEvents(10)...) // seqs 1..10, a clean chunk
	rotate()

	// Bit-flipped: the third line's '{' becomes 'y'.
	flipped := s.appendEvents(10) // 11..20
	c := rotate()
	path := filepath.Join(s.spoolDir, c.Name)
	b, _ := os.ReadFile(path)
	lines := bytes.SplitAfter(b, []byte("\n"))
	lines[2][0] ^= 0x02
	os.WriteFile(path, bytes.Join(lines, nil), 0o640)
	good = append(good, flipped[:2]...)
	good = append(good, flipped[3:]...)

	// Truncated: the last line loses its second half and its newline.
	trunc := s.appendEvents(5) // 21..25
	c = rotate()
	path = filepath.Join(s.spoolDir, c.Name)
	b, _ = os.ReadFile(path)
	last := bytes.LastIndexByte(b[:len(b)-1], '\n') + 1
	os.Truncate(path, int64(last+(len(b)-last)/2))
	good = append(good, trunc[:4]...)

	// Binary junk: a chunk of random bytes, ending in a newline.
	rng := rand.New(rand.NewSource(7))
	junk := make([]byte, 20000)
	rng.Read(junk)
	junk = append(junk, '\n')
	junkLines := bytes.Count(junk, []byte("\n"))
	junkName := fmt.Sprintf("%s/%020d-1.ndjson", spool.PendingDir, 25)
	if err := os.WriteFile(filepath.Join(s.spoolDir, junkName), junk, 0o640); err != nil {
		t.Fatal(err)
	}
	good = append(good, s.appendEvents(5)...) // 26..30, in the active file
	wantQ := int64(1 + 1 + junkLines)

	p := s.start()
	p.waitNote("READY=1", 5*time.Second)
	waitFor(t, 20*time.Second, "every readable event and the notices", func() bool {
		m := s.status()
		return m != nil && m["quarantined_lines"] == float64(wantQ) && m["backlog_events"] == float64(0)
	})
	// Shipping goes on after the bad chunks. The acknowledged count also
	// holds the quarantine notices, so wait for 3 more than it has now,
	// not for the number of good events.
	acked := s.status()["acknowledged"].(float64)
	good = append(good, s.appendEvents(3)...)
	waitFor(t, 10*time.Second, "3 more after the quarantine", func() bool {
		m := s.status()
		return m != nil && m["backlog_events"] == float64(0) && m["acknowledged"].(float64) >= acked+3
	})
	p.stop()

	msgs := readStream(t, url, stream)
	counts := seqCounts(msgs)
	for _, q := range good {
		if counts[q] != 1 {
			t.Errorf("readable event seq %d stored %d times, want once", q, counts[q])
		}
	}
	for _, q := range []uint64{flipped[2], trunc[4]} {
		if counts[q] != 0 {
			t.Errorf("corrupt line seq %d was published", q)
		}
	}
	qs := notices(t, msgs, events.Quarantine)
	var total int64
	files := map[string]bool{}
	for _, ev := range qs {
		if ev.Quarantine == nil || ev.Quarantine.Events <= 0 || ev.Quarantine.Bytes <= 0 {
			t.Errorf("quarantine event without counts: %+v", ev.Quarantine)
			continue
		}
		total += ev.Quarantine.Events
		files[ev.Quarantine.Files[0]] = true
	}
	if total != wantQ {
		t.Errorf("quarantine events report %d lines, want %d (1 flipped + 1 torn + %d junk)", total, wantQ, junkLines)
	}
	if !files[junkName] || len(files) != 3 {
		t.Errorf("quarantine events name chunks %v, want the three corrupt ones", files)
	}
	bad, _ := filepath.Glob(filepath.Join(s.spoolDir, spool.QuarantineDir, "*.bad"))
	if len(bad) != 3 {
		t.Errorf("quarantine/ holds %d files, want 3: %v", len(bad), bad)
	}
	left, _ := filepath.Glob(filepath.Join(s.spoolDir, spool.PendingDir, "*.ndjson"))
	if len(left) != 0 {
		t.Errorf("chunks left after everything was handled: %v", left)
	}
}

// The spool reaches SPOOL_MAX_BYTES while NATS is down: the oldest chunks
// go, each with an overflow event that names exactly the seqs it dropped.
// Delivered and dropped seqs together are every seq, with no overlap.
func TestDiskCapOverflow(t *testing.T) {
	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	s := newSite(t, url, map[string]string{"SPOOL_MAX_BYTES": "1048576", "SPOOL_ROTATE_BYTES": "65536"})
	p := s.start()
	p.waitNote("READY=1", 5*time.Second)
	var all []uint64
	for i := 0; i < 30; i++ {
		all = append(all, s.appendEvents(250)...)
		time.Sleep(30 * time.Millisecond) // let the shipper rotate as it would in life
	}
	waitFor(t, 10*time.Second, "drops reported in the status file", func() bool {
		m := s.status()
		return m != nil && m["dropped_events"].(float64) > 0 && m["backlog_bytes"].(float64) <= 1048576
	})
	startServer(t, port, t.TempDir())
	waitFor(t, 30*time.Second, "the backlog delivered", func() bool {
		m := s.status()
		return m != nil && m["backlog_events"] == float64(0) && m["nats_state"] == "connected"
	})
	st := s.status()
	p.stop()

	msgs := readStream(t, url, stream)
	delivered := map[uint64]int{}
	for _, m := range msgs {
		var ev events.Event
		json.Unmarshal(m.Data, &ev)
		if ev.Type == events.Connect {
			delivered[ev.Seq]++
		}
	}
	dropped := map[uint64]int{}
	var dropCount int64
	ovs := notices(t, msgs, events.Overflow)
	for _, ev := range ovs {
		n := ev.Overflow
		dropCount += n.Events
		var inRanges int64
		for _, r := range n.SeqRanges {
			for q := r[0]; q <= r[1]; q++ {
				dropped[q]++
				inRanges++
			}
		}
		if inRanges != n.Events {
			t.Errorf("overflow event counts %d events but its ranges hold %d: %+v", n.Events, inRanges, n)
		}
		if n.Bytes <= 0 || len(n.Files) != 1 {
			t.Errorf("overflow event without bytes or file: %+v", n)
		}
	}
	if len(ovs) == 0 {
		t.Fatal("no overflow event delivered")
	}
	if float64(dropCount) != st["dropped_events"].(float64) {
		t.Errorf("overflow events count %d drops, status says %v", dropCount, st["dropped_events"])
	}
	for _, q := range all {
		if delivered[q]+dropped[q] != 1 {
			t.Errorf("seq %d: delivered %d times, dropped %d times; want exactly one of them", q, delivered[q], dropped[q])
		}
	}
	// The oldest went: every dropped seq is below every delivered one.
	var maxDropped, minDelivered uint64 = 0, ^uint64(0)
	for q := range dropped {
		maxDropped = max(maxDropped, q)
	}
	keys := make([]uint64, 0, len(delivered))
	for q := range delivered {
		keys = append(keys, q)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	if len(keys) > 0 {
		minDelivered = keys[0]
	}
	if maxDropped > minDelivered {
		t.Errorf("dropped seq %d is newer than delivered seq %d: the oldest must go first", maxDropped, minDelivered)
	}
	t.Logf("%d events appended, %d dropped in %d overflow events, %d delivered", len(all), dropCount, len(ovs), len(delivered))
}
