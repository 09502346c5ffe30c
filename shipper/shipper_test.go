package shipper

// Unit-level tests with a scripted Publisher: they pin down the window's
// bookkeeping, which the process tests against a real nats-server
// (cmd/shipper) only see through its effects.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

type pubCall struct {
	m    Message
	done func(error)
}

// scripted hands every publish to the test, which decides its outcome.
type scripted struct{ calls chan pubCall }

func (p *scripted) Publish(m Message, done func(error)) error {
	p.calls <- pubCall{m, done}
	return nil
}
func (p *scripted) MaxPayload() int64 { return 1 << 20 }
func (p *scripted) Connected() bool   { return true }
func (p *scripted) State() string     { return "connected" }

func setup(t *testing.T, n int) (*spool.Spool, *scripted, func()) {
	t.Helper()
	return setupWith(t, n, nil)
}

// setupWith is setup with a status every 20ms handed to onStatus: after
// the step that saves progress, so a status is a reading of what the loop
// has done.
func setupWith(t *testing.T, n int, onStatus func(Status)) (*spool.Spool, *scripted, func()) {
	t.Helper()
	sp, err := spool.Open(t.TempDir()+"/spool", spool.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := sp.Append(func(st spool.Stamp) ([]byte, error) {
			ev := events.Event{V: 1, EventID: fmt.Sprintf("ev-%d", st.Seq), ServerID: "vpn1", SpoolID: st.SpoolID, Seq: st.Seq, Type: events.Connect, Time: "2026-01-01T00:00:00Z"}
			return ev.Marshal()
		}); err != nil {
			t.Fatal(err)
		}
	}
	pub := &scripted{calls: make(chan pubCall, 100)}
	sh, err := New(Options{Spool: sp, Publisher: pub, ServerID: "vpn1", SaveEvery: time.Millisecond,
		BackoffInitial: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond, Poll: 50 * time.Millisecond,
		StatusInterval: 20 * time.Millisecond, OnStatus: onStatus})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sh.Run(ctx); close(done) }()
	return sp, pub, func() {
		cancel()
		<-done
		sp.Close()
	}
}

func take(t *testing.T, p *scripted, n int) []pubCall {
	t.Helper()
	var out []pubCall
	for len(out) < n {
		select {
		case c := <-p.calls:
			out = append(out, c)
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d publishes, want %d", len(out), n)
		}
	}
	return out
}

func queueProgress(t *testing.T, sp *spool.Spool) (acked, size int64) {
	t.Helper()
	cs, err := sp.Chunks()
	if err != nil || len(cs) == 0 {
		t.Fatalf("chunks: %v %v", cs, err)
	}
	st, err := sp.LoadState()
	if err != nil {
		t.Fatal(err)
	}
	c := cs[len(cs)-1]
	return st.Progress(c), c.Size
}

// Acks that arrive out of order advance the saved progress only over the
// contiguous acknowledged prefix.
func TestProgressIsContiguousPrefix(t *testing.T) {
	// Statuses that count the four acks, the first of them at first.
	var mu sync.Mutex
	var firstAt, lastAt time.Time
	sp, pub, stop := setupWith(t, 5, func(st Status) {
		mu.Lock()
		defer mu.Unlock()
		if st.Acknowledged == 4 {
			if firstAt.IsZero() {
				firstAt = time.Now()
			}
			lastAt = time.Now()
		}
	})
	defer stop()
	calls := take(t, pub, 5)
	for _, c := range calls[1:] {
		c.done(nil)
	}
	// A status counting the four acks, written at least SaveEvery after
	// the first such: the loop has had its chance to save progress since.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		done := !firstAt.IsZero() && lastAt.Sub(firstAt) >= 10*time.Millisecond
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no status counting the four acks within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if acked, _ := queueProgress(t, sp); acked != 0 {
		t.Fatalf("progress %d with the first event unacknowledged, want 0", acked)
	}
	calls[0].done(nil)
	deadline = time.Now().Add(5 * time.Second)
	for {
		acked, size := queueProgress(t, sp)
		if acked == size {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("progress %d of %d after every ack", acked, size)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A failed publish makes everything from it on be published again, with
// the same ids and bytes; acknowledged events before it are not repeated.
func TestFailureRepublishesSameIDs(t *testing.T) {
	_, pub, stop := setup(t, 5)
	defer stop()
	first := take(t, pub, 5)
	first[0].done(nil)
	first[1].done(nil)
	first[2].done(fmt.Errorf("nats: timeout"))
	first[3].done(nil)
	first[4].done(nil)
	again := take(t, pub, 3)
	for i, c := range again {
		want := first[2+i].m
		if c.m.EventID != want.EventID || string(c.m.Data) != string(want.Data) || c.m.Subject != want.Subject {
			t.Errorf("retry %d: %s %q, want %s %q", i, c.m.EventID, c.m.Data, want.EventID, want.Data)
		}
	}
	for _, c := range again {
		c.done(nil)
	}
	select {
	case c := <-pub.calls:
		t.Fatalf("unexpected publish after the retry succeeded: %s", c.m.EventID)
	case <-time.After(300 * time.Millisecond):
	}
}

// While a malformed line cannot be set aside (quarantine/ unwritable),
// progress never passes it, and nothing after it is lost: once quarantine
// works again, the line is quarantined and every event after it published.
func TestQuarantineFailureHoldsProgress(t *testing.T) {
	dir := t.TempDir() + "/spool"
	sp, err := spool.Open(dir, spool.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	appendN := func(n int) {
		for i := 0; i < n; i++ {
			sp.Append(func(st spool.Stamp) ([]byte, error) {
				ev := events.Event{V: 1, EventID: fmt.Sprintf("ev-%d", st.Seq), ServerID: "vpn1", SpoolID: st.SpoolID, Seq: st.Seq, Type: events.Connect, Time: "2026-01-01T00:00:00Z"}
				return ev.Marshal()
			})
		}
	}
	appendN(2)
	// A torn line (a writer died mid-write); the next append starts a new line.
	f, err := os.OpenFile(dir+"/"+spool.QueueFile, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"v":1,"event_id":"torn`)
	f.Close()
	appendN(3)
	os.Remove(dir + "/" + spool.QuarantineDir)
	if err := os.WriteFile(dir+"/"+spool.QuarantineDir, nil, 0o600); err != nil { // a file where the directory should be
		t.Fatal(err)
	}

	pub := &scripted{calls: make(chan pubCall, 100)}
	sh, err := New(Options{Spool: sp, Publisher: pub, ServerID: "vpn1", SaveEvery: time.Millisecond,
		BackoffInitial: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond, Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sh.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	seen := map[string]int{}
	ackAll := func(d time.Duration) {
		end := time.After(d)
		for {
			select {
			case c := <-pub.calls:
				seen[c.m.EventID]++
				seen[c.m.Subject]++
				c.done(nil)
			case <-end:
				return
			}
		}
	}
	ackAll(300 * time.Millisecond)
	b, _ := os.ReadFile(dir + "/" + spool.QueueFile)
	tornAt := int64(strings.Index(string(b), `{"v":1,"event_id":"torn`))
	if acked, _ := queueProgress(t, sp); acked > tornAt {
		t.Fatalf("progress %d passed the unquarantined line at %d", acked, tornAt)
	}
	os.Remove(dir + "/" + spool.QuarantineDir)
	ackAll(500 * time.Millisecond)
	for _, id := range []string{"ev-1", "ev-2", "ev-3", "ev-4", "ev-5"} {
		if seen[id] == 0 {
			t.Errorf("%s never published", id)
		}
	}
	if seen["ocserv.events.vpn1.quarantine"] != 1 {
		t.Errorf("quarantine notice published %d times, want once", seen["ocserv.events.vpn1.quarantine"])
	}
	bad, _ := os.ReadFile(dir + "/" + spool.QuarantineDir + "/queue.bad")
	if !strings.Contains(string(bad), `"torn`) {
		t.Errorf("quarantine file holds %q", bad)
	}
}
