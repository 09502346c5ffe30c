package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/natsjs"
	"github.com/ocserv-telemetry/ocserv-telemetry/shipper"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

var jsonUnmarshal = json.Unmarshal

const stream = "OCSERV_EVENTS"

// Events from the real hook arrive on the right subject with the right
// headers and exactly the spool's bytes, fields this version does not know
// included; systemd hears READY, STATUS, WATCHDOG and STOPPING.
func TestDeliveryHeadersAndNotify(t *testing.T) {
	srv := natstest.Run(t)
	s := newSite(t, srv.ClientURL(), nil)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	got := make(chan *nats.Msg, 100)
	if _, err := nc.ChanSubscribe("ocserv.events.>", got); err != nil {
		t.Fatal(err)
	}
	p := s.start("WATCHDOG_USEC=400000")
	p.waitNote("READY=1", 5*time.Second)

	for _, reason := range []string{"connect", "host-update", "disconnect"} {
		if err := s.hook(reason, "alice", 4242); err != nil {
			t.Fatal(err)
		}
	}
	// A line from a newer hook: a field and a type this version does not
	// know. It must be published unchanged.
	sp := s.openSpool()
	var future []byte
	if _, err := sp.Append(func(st spool.Stamp) ([]byte, error) {
		future = []byte(fmt.Sprintf(`{"v":1,"event_id":"0190-future-1","server_id":"%s","spool_id":"%s","seq":%d,"type":"teleport","zz_new":{"a":[1,2.50,"\u00e9"]},  "time":"2030-01-01T00:00:00Z"}`+"\n", s.serverID, st.SpoolID, st.Seq))
		return future, nil
	}); err != nil {
		t.Fatal(err)
	}

	queue, err := os.ReadFile(filepath.Join(s.spoolDir, spool.QueueFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(queue, []byte("\n")), []byte("\n"))
	if len(lines) != 4 {
		t.Fatalf("queue has %d lines, want 4", len(lines))
	}
	for i, want := range []string{"connect", "host-update", "disconnect", "teleport"} {
		var m *nats.Msg
		select {
		case m = <-got:
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d (%s) not received within 5s", i+1, want)
		}
		rec, err := spool.ParseRecord(lines[i])
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != "ocserv.events.vpn-test."+want {
			t.Errorf("event %d: subject %s, want ocserv.events.vpn-test.%s", i+1, m.Subject, want)
		}
		if !bytes.Equal(m.Data, lines[i]) {
			t.Errorf("event %d: published bytes differ from the spool line:\n got %s\nwant %s", i+1, m.Data, lines[i])
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); id != rec.EventID {
			t.Errorf("event %d: Nats-Msg-Id %q, want %q", i+1, id, rec.EventID)
		}
		if v := m.Header.Get(natsjs.HeaderSeq); v != fmt.Sprint(rec.Seq) {
			t.Errorf("event %d: %s %q, want %d", i+1, natsjs.HeaderSeq, v, rec.Seq)
		}
		if v := m.Header.Get(natsjs.HeaderSpoolID); v != rec.SpoolID || v == "" {
			t.Errorf("event %d: %s %q, want %q", i+1, natsjs.HeaderSpoolID, v, rec.SpoolID)
		}
		if v := m.Header.Get(natsjs.HeaderServer); v != "vpn-test" {
			t.Errorf("event %d: %s %q", i+1, natsjs.HeaderServer, v)
		}
	}
	if !bytes.Equal(lines[3], bytes.TrimSuffix(future, []byte("\n"))) {
		t.Fatal("the spool changed the future line")
	}

	p.waitNote("WATCHDOG=1", 3*time.Second)
	st := p.waitNote("STATUS=", 3*time.Second)
	if !strings.Contains(st, "NATS connected") {
		t.Errorf("STATUS line %q does not say NATS is connected", st)
	}
	waitFor(t, 5*time.Second, "status file with 4 acknowledged", func() bool {
		m := s.status()
		return m != nil && m["acknowledged"] == float64(4) && m["backlog_events"] == float64(0) && m["last_success"] != nil
	})
	p.stop()
	p.waitNote("STOPPING=1", time.Second)
	if n := streamCount(srv.ClientURL(), stream); n != 4 {
		t.Fatalf("stream holds %d messages, want 4", n)
	}
}

// A clean stop with nothing pending, then a restart: nothing is sent again.
func TestCleanShutdownResendsNothing(t *testing.T) {
	srv := natstest.Run(t)
	s := newSite(t, srv.ClientURL(), nil)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var seen atomic.Int64
	if _, err := nc.Subscribe("ocserv.events.>", func(*nats.Msg) { seen.Add(1) }); err != nil {
		t.Fatal(err)
	}
	s.appendEvents(50)
	p := s.start()
	waitFor(t, 10*time.Second, "50 events stored", func() bool { return streamCount(srv.ClientURL(), stream) == 50 })
	// The server hands a stored message to core subscribers on its own
	// schedule, not before it answers a stream-info request on another
	// connection: wait for the 50 deliveries rather than expect them there.
	waitFor(t, 5*time.Second, "the subscriber saw 50 messages", func() bool { return seen.Load() >= 50 })
	if n := seen.Load(); n != 50 {
		t.Fatalf("subscriber saw %d messages for 50 events", n)
	}
	p.stop()
	nc.Flush()

	p = s.start()
	p.waitNote("READY=1", 5*time.Second)
	// The restarted shipper reads the acknowledged queue to its end, rotates
	// it when idle and deletes the chunk: wait for that, then for a status
	// written after it, which counts what this run published.
	waitFor(t, 10*time.Second, "the acknowledged queue rotated and deleted", func() bool {
		q, _ := os.Stat(filepath.Join(s.spoolDir, spool.QueueFile))
		chunks, _ := filepath.Glob(filepath.Join(s.spoolDir, spool.PendingDir, "*.ndjson"))
		return (q == nil || q.Size() == 0) && len(chunks) == 0
	})
	emptied := time.Now()
	waitFor(t, 5*time.Second, "a status written after that", func() bool { return s.statusSince(emptied) != nil })
	if m := s.statusSince(emptied); m["published"] != float64(0) {
		t.Fatalf("after a clean restart the shipper published %v messages, want 0 (something was re-sent)", m["published"])
	}
	s.appendEvents(1)
	waitFor(t, 5*time.Second, "the 51st event", func() bool { return seen.Load() == 51 })
	waitFor(t, 5*time.Second, "its acknowledgement", func() bool {
		m := s.status()
		return m != nil && m["acknowledged"] == float64(1)
	})
	if n, m := seen.Load(), s.status(); n != 51 || m["published"] != float64(1) {
		t.Fatalf("subscriber saw %d messages, the shipper published %v since the restart; want 51 and 1", n, m["published"])
	}
	p.stop()
}

// NATS is down when the shipper starts: it is READY at once, the status
// file says what is pending, the watchdog keeps being fed, and everything
// arrives once a server comes up.
func TestNATSDownThenBack(t *testing.T) {
	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	s := newSite(t, url, nil)
	seqs := s.appendEvents(200)
	start := time.Now()
	p := s.start("WATCHDOG_USEC=300000")
	p.waitNote("READY=1", 5*time.Second)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("READY took %s with NATS down; it must not wait for NATS", d)
	}
	waitFor(t, 5*time.Second, "status file showing the backlog", func() bool {
		m := s.status()
		return m != nil && m["backlog_events"] == float64(200) && m["nats_state"] != "connected" && m["oldest_pending_age_s"].(float64) > 0
	})
	for i := 0; i < 3; i++ {
		p.waitNote("WATCHDOG=1", 2*time.Second) // NATS is down, the loop is alive
	}
	more := s.appendEvents(20)
	seqs = append(seqs, more...)

	startServer(t, port, t.TempDir())
	waitFor(t, 20*time.Second, "220 messages in the stream", func() bool { return streamCount(url, stream) >= 220 })
	msgs := readStream(t, url, stream)
	counts := seqCounts(msgs)
	for _, q := range seqs {
		if counts[q] != 1 {
			t.Errorf("seq %d stored %d times, want once", q, counts[q])
		}
	}
	if len(msgs) != 220 {
		t.Errorf("stream holds %d messages, want 220", len(msgs))
	}
	waitFor(t, 5*time.Second, "status back to connected and empty", func() bool {
		m := s.status()
		return m != nil && m["backlog_events"] == float64(0) && m["nats_state"] == "connected"
	})
	p.stop()
}

// The server restarts mid-run (same store): nothing is lost or doubled.
func TestNATSRestarted(t *testing.T) {
	port := freePort(t)
	store := t.TempDir()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	srv, err := natstest.Start(natstest.Options{Port: port, StoreDir: store})
	if err != nil {
		t.Fatal(err)
	}
	s := newSite(t, url, nil)
	p := s.start()
	p.waitNote("READY=1", 5*time.Second)
	seqs := s.appendEvents(100)
	waitFor(t, 10*time.Second, "first 100", func() bool { return streamCount(url, stream) == 100 })

	// Keep appending while the server goes away and comes back: events
	// before, during (the shipper has seen the server go) and after (it
	// has reconnected).
	ap := s.appendWhile(10 * time.Millisecond)
	ap.waitMore(t, 20, "before the restart")
	srv.Shutdown()
	srv.WaitForShutdown()
	waitFor(t, 10*time.Second, "the shipper to see NATS gone", func() bool {
		m := s.status()
		return m != nil && m["nats_state"] != "connected"
	})
	ap.waitMore(t, 20, "while NATS is down")
	srv = startServer(t, port, store)
	waitFor(t, 20*time.Second, "the shipper to reconnect", func() bool {
		m := s.status()
		return m != nil && m["nats_state"] == "connected"
	})
	ap.waitMore(t, 20, "after the reconnect")
	seqs = append(seqs, ap.stop()...)
	want := uint64(len(seqs))
	waitFor(t, 30*time.Second, fmt.Sprintf("%d messages", want), func() bool { return streamCount(url, stream) >= want })
	counts := seqCounts(readStream(t, url, stream))
	for _, q := range seqs {
		if counts[q] != 1 {
			t.Errorf("seq %d stored %d times, want once", q, counts[q])
		}
	}
	if uint64(len(counts)) != want {
		t.Errorf("stream has %d distinct seqs, want %d", len(counts), want)
	}
	p.stop()
}

// The shipper is killed with SIGKILL at each named crash point, and at
// random moments, many times, while hook processes keep appending. In the
// end the stream holds every seq exactly once.
func TestCrashPointsExactlyOnce(t *testing.T) {
	srv := natstest.Run(t)
	url := srv.ClientURL()
	// Small chunks so that rotations and deletions happen all the time.
	s := newSite(t, url, map[string]string{"SPOOL_ROTATE_BYTES": "8192", "SHIPPER_MAX_IN_FLIGHT": "16"})

	var wg sync.WaitGroup
	stop := make(chan struct{})
	var hookErrs atomic.Int64
	var hooks atomic.Int64
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := s.hook([]string{"connect", "host-update", "disconnect"}[i%3], fmt.Sprintf("u%d", w), 100+w); err != nil {
					hookErrs.Add(1)
					t.Log(err)
				}
				hooks.Add(1)
			}
		}(w)
	}

	points := []string{shipper.CrashAfterRotate, shipper.CrashMidPublish, shipper.CrashAfterAckBeforeProgress, shipper.CrashMidDelete}
	rounds := 2
	if testing.Short() {
		rounds = 1
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	killed := map[string]int{}
	for r := 0; r < rounds; r++ {
		for _, pt := range points {
			after := 1 + rng.Intn(20)
			p := s.start("OCSERV_TELEMETRY_CRASHPOINT="+pt, fmt.Sprintf("%s=%d", shipper.CrashAfterEnv, after))
			select {
			case <-p.done:
				if _, k := p.exited(); k {
					killed[pt]++
				} else {
					t.Fatalf("shipper at %s exited without SIGKILL: %v\n%s", pt, p.err, p.out.String())
				}
			case <-time.After(6 * time.Second):
				p.kill() // the point was not reached in time; a random kill instead
				killed["timeout-kill"]++
			}
		}
		// Random moments.
		for i := 0; i < 3; i++ {
			p := s.start()
			time.Sleep(time.Duration(50+rng.Intn(400)) * time.Millisecond)
			p.kill()
			killed["random"]++
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("kills: %v; hook runs: %d", killed, hooks.Load())
	for _, pt := range points {
		if killed[pt] == 0 {
			t.Errorf("crash point %s was never reached", pt)
		}
	}
	if hookErrs.Load() > 0 {
		t.Fatalf("%d hook runs failed", hookErrs.Load())
	}

	p := s.start()
	// Every event the hooks wrote has a seq 1..N (no writer died, so no gaps).
	sp := s.openSpool()
	var maxSeq uint64
	waitFor(t, 30*time.Second, "the spool to drain", func() bool {
		m := s.status()
		if m == nil || m["backlog_events"] != float64(0) {
			return false
		}
		fb, _ := sp.Fallbacks()
		return len(fb) == 0
	})
	msgs := readStream(t, url, stream)
	counts := seqCounts(msgs)
	for q := range counts {
		maxSeq = max(maxSeq, q)
	}
	if int64(maxSeq) != hooks.Load() {
		t.Errorf("highest seq %d, but the hooks ran %d times", maxSeq, hooks.Load())
	}
	for q := uint64(1); q <= maxSeq; q++ {
		if counts[q] != 1 {
			t.Errorf("seq %d stored %d times, want exactly once", q, counts[q])
		}
	}
	if len(msgs) != int(maxSeq) {
		t.Errorf("stream holds %d messages for %d seqs", len(msgs), maxSeq)
	}
	p.stop()
}
