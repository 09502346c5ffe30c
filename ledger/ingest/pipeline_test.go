package ingest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/pgtest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// pipelined is a PostgreSQL store that counts the transactions it writes
// while the one before commits, and can fail one of them as the database
// going away would (after three fetches, nothing written).
type pipelined struct {
	*postgres.Store
	mu        sync.Mutex
	after     int // ApplyChunksAfter calls that wrote a transaction
	chained   int // of them, begun with the one before not yet settled (prev given)
	failAfter int // fail the call after this many written (0: never)
	failed    int
}

func (s *pipelined) ApplyChunksAfter(ctx context.Context, prev *ledger.Pending, next ledger.Chunks) (*ledger.Pending, error) {
	s.mu.Lock()
	fail := s.failAfter > 0 && s.after == s.failAfter && s.failed == 0
	s.mu.Unlock()
	if fail {
		return nil, goAway(next, &s.mu, &s.failed)
	}
	p, err := s.Store.ApplyChunksAfter(ctx, prev, next)
	if err == nil {
		s.mu.Lock()
		s.after++
		if prev != nil {
			s.chained++
		}
		s.mu.Unlock()
	}
	return p, err
}

func pgStore(t *testing.T) *postgres.Store {
	t.Helper()
	dsn := pgtest.Database(t)
	if _, err := postgres.Migrate(context.Background(), dsn); err != nil {
		t.Fatal(err)
	}
	s, err := postgres.Open(context.Background(), dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// drained waits until st's committed position reaches seq and the
// consumer has acknowledged every message (the last transaction of a
// backlog too, with nothing more arriving), and returns its status.
func drained(t *testing.T, b *bed, c *Consumer, st ledger.IngestStore, seq uint64) Status {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for {
		p, err := st.Position(ctx)
		s := c.Status()
		info, ierr := b.js.Consumer(ctx, streamName, "ocserv_ledger")
		if err == nil && ierr == nil && p.StreamSeq >= seq && s.Position.StreamSeq >= seq && s.State == StateRunning {
			ci, err := info.Info(ctx)
			if err == nil && ci.NumAckPending == 0 && ci.AckFloor.Stream >= seq {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not drained in 60s: position %d (%v), status %+v", p.StreamSeq, err, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// On PostgreSQL a backlog is drained in transactions each written while
// the one before commits: every event is applied once, every message is
// acknowledged after its transaction committed (the backlog's last one
// too, with nothing more arriving), and the tables are a replay's, one
// batch at a time, on SQLite.
func TestPipelinedBacklogOnPostgreSQL(t *testing.T) {
	b := newBed(t, t.TempDir())
	var msgs []ledger.Message
	ledgertest.Workload{Seed: 21, Servers: 3, Users: 25, Start: time.Now().UTC().Add(-2 * time.Hour)}.Emit(3000,
		func(m ledger.Message) bool { msgs = append(msgs, m); return true })
	b.publish(msgs...)
	st := &pipelined{Store: pgStore(t)}
	c, stop := b.runWith(Options{Store: st, Batch: 200, Fetch: 50})
	s := drained(t, b, c, st, uint64(len(msgs)))
	stop()

	if st.after < 2 || st.chained == 0 {
		t.Errorf("%d transactions written, %d of them while the one before was not yet acknowledged: the pipeline was not used", st.after, st.chained)
	}
	if s.Applied != int64(len(msgs)) || s.Duplicates != 0 || s.Rejected != 0 {
		t.Errorf("status: applied %d, duplicates %d, rejected %d; want %d, 0, 0", s.Applied, s.Duplicates, s.Rejected, len(msgs))
	}
	if p, _ := st.Position(context.Background()); p.Applied != int64(len(msgs)) {
		t.Errorf("stored position: %d applied, want %d", p.Applied, len(msgs))
	}
	b.sameAsReplay(st, 50)
}

// A pipelined transaction that fails while the one before commits: the
// one before is acknowledged once committed, the failed one's messages
// are read again from the committed position, and every event is
// applied once.
func TestFailedPipelinedTransactionIsReadAgain(t *testing.T) {
	b := newBed(t, t.TempDir())
	msgs := b.backlog()
	st := &pipelined{Store: pgStore(t), failAfter: 2}
	c, stop := b.runWith(Options{Store: st, Batch: 100, Fetch: 20})
	s := drained(t, b, c, st, uint64(len(msgs)))
	stop()

	if st.failed == 0 {
		t.Fatalf("no transaction failed (%d written): the test did not test the failure", st.after)
	}
	if s.Applied != int64(len(msgs)) || s.Duplicates != 0 || s.Errors["database"] == 0 {
		t.Errorf("status %+v: want %d applied once, no duplicates, the error counted", s, len(msgs))
	}
	page, err := st.History(context.Background(), ledger.HistoryQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != len(msgs)/2 {
		t.Errorf("%d sessions stored, want %d", len(page.Items), len(msgs)/2)
	}
}
