package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
)

// These tests run the consumer against a real nats-server (embedded) and
// a real SQLite ledger; the whole service (bin/ledger) is tested in
// cmd/ledger. Here: what only the consumer decides.

const streamName = "OCSERV_EVENTS"

type bed struct {
	t     *testing.T
	srv   *server.Server
	nc    *nats.Conn
	js    jetstream.JetStream
	store *sqlite.Store
	gen   *ledgertest.Gen
}

func newBed(t *testing.T, storeDir string) *bed {
	t.Helper()
	srv, err := natstest.Start(natstest.Options{StoreDir: storeDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	b := &bed{t: t, srv: srv, gen: ledgertest.NewGen("vpn-a", nil)}
	b.connect()
	if _, err := b.js.CreateStream(context.Background(), jetstream.StreamConfig{Name: streamName, Subjects: []string{"ocserv.events.>"},
		Storage: jetstream.FileStorage, Duplicates: time.Hour}); err != nil {
		t.Fatal(err)
	}
	b.store = openStore(t, filepath.Join(t.TempDir(), "ledger.db"))
	return b
}

// openStore makes a migrated SQLite ledger, as `ledger migrate` does.
func openStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	if _, err := sqlite.Migrate(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (b *bed) connect() {
	b.t.Helper()
	nc, err := nats.Connect(b.srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(nc.Close)
	b.nc = nc
	if b.js, err = jetstream.New(nc); err != nil {
		b.t.Fatal(err)
	}
}

// publish puts msgs on the stream as the shipper does (its message id is
// the event id, so JetStream's window drops a re-send).
func (b *bed) publish(msgs ...ledger.Message) {
	b.t.Helper()
	for _, m := range msgs {
		if _, err := b.js.Publish(context.Background(), m.Subject, m.Data); err != nil {
			b.t.Fatalf("publish %s: %v", m.Subject, err)
		}
	}
}

// sessions makes n complete sessions (connect, disconnect) of user.
func (b *bed) sessions(user string, n int) []ledger.Message {
	var out []ledger.Message
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	for i := range n {
		uid := ledgertest.UID()
		out = append(out,
			b.gen.Connect(uid, ledgertest.Conn{User: user, IPReal: "203.0.113.7", VPN4: fmt.Sprintf("10.8.%d.%d", i/250, 2+i%250)}, at),
			b.gen.Disconnect(uid, 1000, 2000, 60, at.Add(time.Minute)))
	}
	return out
}

type store interface {
	ledger.IngestStore
	Ping(context.Context) error
}

func (b *bed) run(st store, batch int) (*Consumer, func()) {
	return b.runWith(Options{Store: st, Batch: batch})
}

// runWith runs a consumer on the bed's stream with o (Store and the
// sizes), quiet and quick to give up waiting on a fetch.
func (b *bed) runWith(o Options) (*Consumer, func()) {
	b.t.Helper()
	return b.start(b.consumer(o))
}

// consumer makes (without running it) the consumer runWith runs.
func (b *bed) consumer(o Options) *Consumer {
	o.JS, o.Stream, o.Prefix, o.MaxWait = b.js, streamName, "ocserv", 20*time.Millisecond
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return New(o)
}

// start runs c until the test ends or the returned stop is called.
func (b *bed) start(c *Consumer) (*Consumer, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { b.stopWait(cancel, done) }) }
	b.t.Cleanup(stop)
	return c, stop
}

func (b *bed) stopWait(cancel func(), done <-chan error) {
	cancel()
	select {
	case err := <-done:
		if err != nil {
			b.t.Errorf("consumer: %v", err)
		}
	case <-time.After(10 * time.Second):
		b.t.Error("consumer did not stop within 10s of its context ending")
	}
}

// waitPosition waits until the database's committed position reaches seq.
func (b *bed) waitPosition(seq uint64) ledger.Position {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, err := b.store.Position(context.Background())
		if err == nil && p.StreamSeq >= seq {
			return p
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("position %d (err %v), want %d within 30s", p.StreamSeq, err, seq)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// caughtUp waits (bounded) until the consumer's own status has reached
// stream sequence seq and says running: the status is updated just after
// the commit that moves the position waitPosition reads, so a reading
// taken between the two is late, not wrong.
func caughtUp(c *Consumer, seq uint64) Status {
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := c.Status()
		if s.Position.StreamSeq >= seq && s.State == StateRunning || time.Now().After(deadline) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *bed) count(user string) int {
	b.t.Helper()
	page, err := b.store.History(context.Background(), ledger.HistoryQuery{User: user, Limit: 1000})
	if err != nil {
		b.t.Fatal(err)
	}
	return len(page.Items)
}

// refusing is a store whose database answers but refuses any batch that
// holds an event of the user named bad: the consumer must find that one
// event, reject it with the database's reason, and apply the rest.
type refusing struct {
	*sqlite.Store
	bad     string
	batches atomic.Int64
}

func (r *refusing) Apply(ctx context.Context, msgs []ledger.Message) (ledger.BatchResult, error) {
	r.batches.Add(1)
	for _, m := range msgs {
		if strings.Contains(string(m.Data), `"username":"`+r.bad+`"`) {
			return ledger.BatchResult{}, errors.New(`value too long for type character varying(64) (SQLSTATE 22001)`)
		}
	}
	return r.Store.Apply(ctx, msgs)
}

func (r *refusing) ApplyChunks(ctx context.Context, next ledger.Chunks) (ledger.BatchResult, error) {
	var all []ledger.Message
	for m := next(); m != nil; m = next() {
		all = append(all, m...)
	}
	return r.Apply(ctx, all)
}

func TestRefusedEventIsRejectedAloneAndTheStreamGoesOn(t *testing.T) {
	b := newBed(t, t.TempDir())
	before := b.sessions("alice", 20)
	bad := b.sessions("mallory", 1)[:1] // its connect only
	after := b.sessions("bob", 20)
	b.publish(before...)
	b.publish(bad...)
	b.publish(after...)
	total := uint64(len(before) + len(bad) + len(after))

	st := &refusing{Store: b.store, bad: "mallory"}
	c, _ := b.run(st, 500)
	b.waitPosition(total)

	if n := b.count("alice"); n != 20 {
		t.Errorf("alice: %d sessions, want 20 (the events before the refused one)", n)
	}
	if n := b.count("bob"); n != 20 {
		t.Errorf("bob: %d sessions, want 20 (the events after the refused one)", n)
	}
	if n := b.count("mallory"); n != 0 {
		t.Errorf("mallory: %d sessions, want 0 (the database refused it)", n)
	}
	s := caughtUp(c, total)
	if s.Rejected != 1 || s.Errors["rejected_by_database"] != 1 {
		t.Errorf("status: rejected %d, rejected_by_database %d; want 1 and 1", s.Rejected, s.Errors["rejected_by_database"])
	}
	if s.Applied != int64(total-1) {
		t.Errorf("status: applied %d, want %d", s.Applied, total-1)
	}
	if s.State != StateRunning {
		t.Errorf("state %q after a refused event, want %q", s.State, StateRunning)
	}
	rej, err := b.store.Rejected(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) != 1 || !strings.Contains(rej[0].Reason, "SQLSTATE 22001") {
		t.Fatalf("rejected rows %+v, want one naming the database's refusal", rej)
	}
}

// A store that is away for a while: nothing is acknowledged meanwhile,
// the state says so, and once it is back every event is applied once.
type away struct {
	*sqlite.Store
	mu   sync.Mutex
	down bool
}

func (a *away) set(down bool) { a.mu.Lock(); a.down = down; a.mu.Unlock() }

func (a *away) Apply(ctx context.Context, msgs []ledger.Message) (ledger.BatchResult, error) {
	a.mu.Lock()
	down := a.down
	a.mu.Unlock()
	if down {
		return ledger.BatchResult{}, ledger.Unavailable("apply", errors.New("connection refused"))
	}
	return a.Store.Apply(ctx, msgs)
}

func (a *away) ApplyChunks(ctx context.Context, next ledger.Chunks) (ledger.BatchResult, error) {
	var all []ledger.Message
	for m := next(); m != nil; m = next() {
		all = append(all, m...)
	}
	return a.Apply(ctx, all)
}

func TestDatabaseAwayHoldsTheBatch(t *testing.T) {
	b := newBed(t, t.TempDir())
	st := &away{Store: b.store}
	first := b.sessions("alice", 10)
	b.publish(first...)
	c, _ := b.run(st, 100)
	b.waitPosition(uint64(len(first)))

	st.set(true)
	second := b.sessions("alice", 10)
	b.publish(second...)
	deadline := time.Now().Add(20 * time.Second)
	for c.Status().State != StateDatabaseDown {
		if time.Now().After(deadline) {
			t.Fatalf("state %q, want %q while the database is away", c.Status().State, StateDatabaseDown)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p, _ := b.store.Position(context.Background()); p.StreamSeq != uint64(len(first)) {
		t.Fatalf("position moved to %d while the database was away", p.StreamSeq)
	}
	st.set(false)
	b.waitPosition(uint64(len(first) + len(second)))
	if n := b.count("alice"); n != 20 {
		t.Fatalf("alice: %d sessions after the database came back, want 20", n)
	}
	s := caughtUp(c, uint64(len(first)+len(second)))
	if s.Errors["database"] == 0 || s.State != StateRunning || s.Duplicates != 0 {
		t.Fatalf("status %+v: want database errors counted, running again, no duplicates", s)
	}
}

// The database, not the consumer's ack state, holds the position: a new
// consumer (the service restarted, or another instance took over) starts
// right after what was committed, and what was already applied is not
// applied again even when JetStream would redeliver it.
func TestRestartStartsAfterTheCommittedPosition(t *testing.T) {
	b := newBed(t, t.TempDir())
	first := b.sessions("alice", 15)
	b.publish(first...)
	_, stop := b.run(b.store, 7) // odd batches: a partly acknowledged stream
	b.waitPosition(uint64(len(first)))
	stop()

	second := b.sessions("alice", 15)
	b.publish(second...)
	c, _ := b.run(b.store, 7)
	b.waitPosition(uint64(len(first) + len(second)))
	if n := b.count("alice"); n != 30 {
		t.Fatalf("alice: %d sessions, want 30", n)
	}
	if s := caughtUp(c, uint64(len(first)+len(second))); s.Duplicates != 0 || s.Applied != int64(len(second)) {
		t.Fatalf("the second consumer applied %d (duplicates %d), want %d and 0", s.Applied, s.Duplicates, len(second))
	}
}

// NATS restarts under the consumer (same store directory): the state
// names it, and once it is back the stream is applied to its end.
func TestNATSRestart(t *testing.T) {
	dir := t.TempDir()
	b := newBed(t, dir)
	first := b.sessions("alice", 10)
	b.publish(first...)
	c, _ := b.run(b.store, 50)
	b.waitPosition(uint64(len(first)))

	port := b.srv.Addr().(*net.TCPAddr).Port
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
	deadline := time.Now().Add(20 * time.Second)
	for c.Status().State != StateNATSDown {
		if time.Now().After(deadline) {
			t.Fatalf("state %q, want %q while NATS is down", c.Status().State, StateNATSDown)
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv, err := natstest.Start(natstest.Options{StoreDir: dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	b.srv = srv

	second := b.sessions("alice", 10)
	pubDeadline := time.Now().Add(20 * time.Second)
	for _, m := range second {
		for {
			_, err := b.js.Publish(context.Background(), m.Subject, m.Data)
			if err == nil {
				break
			}
			if time.Now().After(pubDeadline) {
				t.Fatalf("publish after the restart: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	b.waitPosition(uint64(len(first) + len(second)))
	if n := b.count("alice"); n != 20 {
		t.Fatalf("alice: %d sessions after NATS came back, want 20", n)
	}
	deadline = time.Now().Add(20 * time.Second)
	for c.Status().State != StateRunning {
		if time.Now().After(deadline) {
			t.Fatalf("state %q after NATS came back, want %q", c.Status().State, StateRunning)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Replay into an empty database rebuilds the same tables the live
// consumer wrote, and a second replay over them changes nothing.
func TestReplayRebuildsTheSameLedger(t *testing.T) {
	b := newBed(t, t.TempDir())
	msgs := b.sessions("alice", 30)
	msgs = append(msgs, b.sessions("bob", 30)...)
	b.publish(msgs...)
	_, stop := b.run(b.store, 64)
	b.waitPosition(uint64(len(msgs)))
	stop()
	live, err := b.store.Checksum(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	fresh := openStore(t, filepath.Join(t.TempDir(), "rebuilt.db"))
	for round := range 2 {
		res, err := Replay(context.Background(), ReplayOptions{JS: b.js, Stream: streamName, Prefix: "ocserv", Store: fresh, Batch: 25})
		if err != nil {
			t.Fatalf("replay %d: %v", round, err)
		}
		if res.Messages != uint64(len(msgs)) || res.LastSeq != uint64(len(msgs)) {
			t.Fatalf("replay %d: %+v, want %d messages up to seq %d", round, res, len(msgs), len(msgs))
		}
		if round == 1 && (res.Applied != 0 || res.Duplicates != int64(len(msgs))) {
			t.Fatalf("second replay applied %d (duplicates %d), want 0 and %d", res.Applied, res.Duplicates, len(msgs))
		}
		got, err := fresh.Checksum(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for table, sum := range live {
			if got[table] != sum {
				t.Errorf("replay %d: table %s differs from the live ledger", round, table)
			}
		}
	}
}

// backlog counts the consumer's transactions and, when failing is set,
// fails the next transaction of several fetches after taking three: the
// database going away in the middle of a backlog.
type backlog struct {
	*sqlite.Store
	mu      sync.Mutex
	sizes   []int // events per committed transaction (chunked or not)
	chunked int   // committed transactions of more than one fetch
	failing bool
	failed  int
}

func (s *backlog) Apply(ctx context.Context, msgs []ledger.Message) (ledger.BatchResult, error) {
	r, err := s.Store.Apply(ctx, msgs)
	if err == nil {
		s.mu.Lock()
		s.sizes = append(s.sizes, len(msgs))
		s.mu.Unlock()
	}
	return r, err
}

func (s *backlog) ApplyChunks(ctx context.Context, next ledger.Chunks) (ledger.BatchResult, error) {
	s.mu.Lock()
	fail := s.failing
	s.failing = false
	s.mu.Unlock()
	if fail {
		return ledger.BatchResult{}, goAway(next, &s.mu, &s.failed)
	}
	n, chunks := 0, 0
	r, err := s.Store.ApplyChunks(ctx, func() []ledger.Message {
		m := next()
		if m != nil {
			n, chunks = n+len(m), chunks+1
		}
		return m
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.sizes = append(s.sizes, n)
		if chunks > 1 {
			s.chunked++
		}
	}
	return r, err
}

var errFailed = errors.New("connection reset by peer")

// goAway is a transaction of several fetches whose database goes away:
// three fetches taken, nothing committed; it counts the failure in
// *failed (under mu) and returns errFailed.
func goAway(next ledger.Chunks, mu *sync.Mutex, failed *int) error {
	for range 3 {
		if next() == nil {
			break
		}
	}
	mu.Lock()
	*failed++
	mu.Unlock()
	return errFailed
}

func (s *backlog) stats() (sizes []int, chunked, failed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.sizes...), s.chunked, s.failed
}

// sameAsReplay fails the test where a table of st differs from a replay
// of the whole stream into a new SQLite ledger, batch events at a time.
func (b *bed) sameAsReplay(st interface {
	Checksum(context.Context) (map[string]string, error)
}, batch int) {
	b.t.Helper()
	ref := openStore(b.t, filepath.Join(b.t.TempDir(), "ref.db"))
	if _, err := Replay(context.Background(), ReplayOptions{JS: b.js, Stream: streamName, Prefix: "ocserv", Store: ref, Batch: batch}); err != nil {
		b.t.Fatal(err)
	}
	got, err := st.Checksum(context.Background())
	if err != nil {
		b.t.Fatal(err)
	}
	want, _ := ref.Checksum(context.Background())
	for table, sum := range want {
		if got[table] != sum {
			b.t.Errorf("table %s differs from a replay's, %d events at a time", table, batch)
		}
	}
}

// backlog publishes 20 sessions of each of user0 … user9 (400 events)
// before a consumer runs.
func (b *bed) backlog() []ledger.Message {
	var msgs []ledger.Message
	for i := range 10 {
		msgs = append(msgs, b.sessions(fmt.Sprintf("user%d", i), 20)...)
	}
	b.publish(msgs...)
	return msgs
}

// A backlog is drained in transactions of several fetches (after a full
// fetch the next one joins), never more than Batch events, and the tables
// are those of a replay's, a batch at a time.
func TestBacklogJoinsWaitingFetches(t *testing.T) {
	b := newBed(t, t.TempDir())
	msgs := b.backlog()
	st := &backlog{Store: b.store}
	c, stop := b.runWith(Options{Store: st, Batch: 100, Fetch: 20})
	b.waitPosition(uint64(len(msgs)))
	s := caughtUp(c, uint64(len(msgs)))
	stop()

	sizes, chunked, _ := st.stats()
	total := 0
	for _, n := range sizes {
		total += n
		if n > 100 {
			t.Errorf("a transaction of %d events, over the batch of 100: %v", n, sizes)
		}
	}
	if total != len(msgs) {
		t.Errorf("transactions applied %d events, want %d: %v", total, len(msgs), sizes)
	}
	if chunked == 0 {
		t.Errorf("no transaction joined several fetches of a %d-event backlog: %v", len(msgs), sizes)
	}
	if s.Applied != int64(len(msgs)) || s.Duplicates != 0 {
		t.Errorf("status: applied %d, duplicates %d; want %d and 0", s.Applied, s.Duplicates, len(msgs))
	}

	b.sameAsReplay(b.store, 20)
}

// The consumer's limit of unacknowledged messages covers what the
// pipeline holds in a backlog (a transaction committing, the next one
// built, a fetch waiting and one under way): with less, the server stops
// delivering while a commit is under way, and the transaction being
// built is cut short by the empty fetch.
func TestConsumerLetsThePipelineFetchAhead(t *testing.T) {
	for _, o := range []Options{{Batch: 10000, Fetch: 1000}, {Batch: DefaultBatch}} {
		b := newBed(t, t.TempDir())
		o.Store = b.store
		c, stop := b.runWith(o)
		holds := 2 * (c.o.Batch + c.o.Fetch)
		deadline := time.Now().Add(10 * time.Second)
		for {
			cons, err := b.js.Consumer(context.Background(), streamName, "ocserv_ledger")
			if err == nil {
				if got := cons.CachedInfo().Config.MaxAckPending; got < holds {
					t.Errorf("batch %d, fetch %d: the consumer lets %d messages wait for their acknowledgement; the pipeline holds up to %d",
						c.o.Batch, c.o.Fetch, got, holds)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no consumer after 10s: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		stop()
	}
}

// A transaction of several fetches that fails lets its messages go: the
// consumer reads them again from the committed position, the first batch
// alone, and every event is applied once.
func TestFailedBacklogTransactionIsReadAgain(t *testing.T) {
	b := newBed(t, t.TempDir())
	msgs := b.backlog()
	st := &backlog{Store: b.store, failing: true}
	c, stop := b.runWith(Options{Store: st, Batch: 100, Fetch: 20})
	b.waitPosition(uint64(len(msgs)))
	s := caughtUp(c, uint64(len(msgs)))
	stop()

	sizes, _, failed := st.stats()
	if failed == 0 {
		t.Fatalf("no transaction failed (sizes %v): the test did not test the failure", sizes)
	}
	for i := range 10 {
		if n := b.count(fmt.Sprintf("user%d", i)); n != 20 {
			t.Errorf("user%d: %d sessions, want 20", i, n)
		}
	}
	if s.Applied != int64(len(msgs)) || s.Duplicates != 0 || s.Errors["database"] == 0 || s.State != StateRunning {
		t.Errorf("status %+v: want %d applied once, the error counted, running", s, len(msgs))
	}
}

// The engines' BenchmarkApply drains as this consumer does by default.
func TestBenchmarkApplyUsesTheDefaults(t *testing.T) {
	if DefaultBatch != ledgertest.TxEvents || MaxFetch != ledgertest.FetchEvents {
		t.Errorf("ledgertest drains %d-event transactions of %d-message fetches; the consumer's defaults are %d and %d",
			ledgertest.TxEvents, ledgertest.FetchEvents, DefaultBatch, MaxFetch)
	}
}
