package postgres

import (
	"context"
	"maps"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
)

var t0 = time.Date(2026, 11, 24, 6, 0, 0, 0, time.UTC)

// pipeline drives a chain of ApplyChunksAfter as the consumer does, with
// each transaction's writing (and so its commit) held until the next one
// is projected or waits for it (a lock): everything the next one reads
// before that, it reads while the one before is not committed, which is
// the case the carried rows are for, whatever the machine's timing.
type pipeline struct {
	t     *testing.T
	s     *Store
	holds chan chan struct{} // each transaction's writing in turn takes one and waits for it to close
	prev  *ledger.Pending
	hold  chan struct{} // prev's
	// fail, when set, is called with a transaction before it writes its
	// rows (once released): the test can make it fail.
	fail func(pgx.Tx)
}

func newPipeline(t *testing.T, s *Store) *pipeline {
	p := &pipeline{t: t, s: s, holds: make(chan chan struct{}, 1024)}
	s.beforeWrite = func(tx pgx.Tx) {
		<-<-p.holds
		if p.fail != nil {
			p.fail(tx)
		}
	}
	return p
}

// apply projects one transaction of chunks after the last one, releases
// the last one's writing once this one is projected or waits on a lock,
// and returns the last one (writing and committing).
func (p *pipeline) apply(chunks [][]ledger.Message) (*ledger.Pending, error) {
	ctx := context.Background()
	hold := make(chan struct{})
	p.holds <- hold
	type result struct {
		pend *ledger.Pending
		err  error
	}
	done := make(chan result, 1)
	go func() {
		k := 0
		pend, err := p.s.ApplyChunksAfter(ctx, p.prev, func() []ledger.Message {
			if k == len(chunks) {
				return nil
			}
			k++
			return chunks[k-1]
		})
		done <- result{pend, err}
	}()
	var r result
	released := p.hold == nil
	deadline := time.Now().Add(time.Minute)
	for r.pend == nil && r.err == nil {
		select {
		case r = <-done:
			continue
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatal("a transaction was not projected in a minute")
		}
		if released {
			continue
		}
		var waiting int
		if err := p.s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted`).Scan(&waiting); err != nil {
			p.t.Fatal(err)
		}
		if waiting > 0 {
			close(p.hold) // the new one waits for the last one's commit
			released = true
		}
	}
	if !released {
		close(p.hold)
	}
	last := p.prev
	if r.err != nil {
		close(hold) // nothing of it commits; nothing waits for it
		return last, r.err
	}
	p.prev, p.hold = r.pend, hold
	return last, nil
}

// finish releases and waits for the last transaction.
func (p *pipeline) finish() error {
	if p.hold != nil {
		close(p.hold)
		p.hold = nil
	}
	return p.prev.Wait()
}

// cut is msgs cut into transactions of 1 to 4 chunks of 1 to 150
// messages.
func cut(r *rand.Rand, msgs []ledger.Message) [][][]ledger.Message {
	var txs [][][]ledger.Message
	for i := 0; i < len(msgs); {
		var chunks [][]ledger.Message
		for range 1 + r.IntN(4) {
			n := 1 + r.IntN(150)
			chunks = append(chunks, msgs[i:min(i+n, len(msgs))])
			if i += n; i >= len(msgs) {
				break
			}
		}
		txs = append(txs, chunks)
	}
	return txs
}

// oneBatch is the checksum of a new ledger after msgs in one Apply.
func oneBatch(t *testing.T, msgs []ledger.Message) map[string]string {
	t.Helper()
	a, _ := testStore(t)
	if _, err := a.Apply(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	return ledgertest.Checksum(t, a)
}

// TestPipelinedTransactionsEqualOneBatch: a chain of transactions, each
// written while the one before is not committed, leaves the tables one
// Apply of the same messages leaves, whatever the cut: every transaction
// changes rows the one before changed (a session's counters and state,
// a user's usage of the day, the position), and redelivered events of
// the transaction before, claimed and not committed, are counted as
// duplicates.
func TestPipelinedTransactionsEqualOneBatch(t *testing.T) {
	ctx := context.Background()
	msgs := ledgertest.Workload{Seed: 7, Servers: 3, Users: 30, Start: t0}.Messages(2000)
	want := oneBatch(t, msgs)
	r := rand.New(rand.NewPCG(8, 8))
	for round := range 3 {
		b, _ := testStore(t)
		head := r.IntN(300)
		if head > 0 {
			if _, err := b.Apply(ctx, msgs[:head]); err != nil {
				t.Fatal(err)
			}
		}
		p := newPipeline(t, b)
		applied, dups := 0, 0
		txs := cut(r, msgs[head:])
		for i, chunks := range txs {
			if i > 0 && r.IntN(2) == 0 {
				// The last event of the transaction before, again.
				before := txs[i-1][len(txs[i-1])-1]
				chunks[0] = append([]ledger.Message{before[len(before)-1]}, chunks[0]...)
				dups++
			}
			last, err := p.apply(chunks)
			if err != nil {
				t.Fatalf("round %d, transaction %d: %v", round, i, err)
			}
			if last != nil {
				if err := last.Wait(); err != nil {
					t.Fatalf("round %d, commit of transaction %d: %v", round, i-1, err)
				}
				applied += last.Result().Applied
			}
		}
		if err := p.finish(); err != nil {
			t.Fatalf("round %d, last commit: %v", round, err)
		}
		applied += p.prev.Result().Applied
		if applied != len(msgs)-head {
			t.Errorf("round %d, %d transactions: applied %d, want %d", round, len(txs), applied, len(msgs)-head)
		}
		if got := ledgertest.Checksum(t, b); !maps.Equal(got, want) {
			t.Fatalf("round %d: %d pipelined transactions vs one batch:\n%v\n%v", round, len(txs), got, want)
		}
		pos, err := b.Position(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if pos.StreamSeq != msgs[len(msgs)-1].StreamSeq || pos.Applied != int64(len(msgs)) || pos.Duplicates != int64(dups) {
			t.Errorf("round %d: position %+v, want stream seq %d, %d applied, %d duplicates",
				round, pos, msgs[len(msgs)-1].StreamSeq, len(msgs), dups)
		}
		if rp := p.prev.Result().Position; rp.StreamSeq != pos.StreamSeq || rp.Applied != pos.Applied || rp.Duplicates != pos.Duplicates {
			t.Errorf("round %d: the last transaction reported %+v; the store holds %+v", round, rp, pos)
		}
	}
}

// TestPipelinedTransactionAfterAFailedCommit: when a transaction fails
// after it was projected (its connection is cut before its rows are
// written), the one projected after it, on the rows it carried, rolls
// back too: the tables are as the commit before left them, and applying
// the same messages again from there gives what one Apply gives.
func TestPipelinedTransactionAfterAFailedCommit(t *testing.T) {
	ctx := context.Background()
	msgs := ledgertest.Workload{Seed: 9, Servers: 2, Users: 20, Start: t0}.Messages(1200)
	want := oneBatch(t, msgs)

	b, _ := testStore(t)
	p := newPipeline(t, b)
	txs := [][][]ledger.Message{{msgs[:400]}, {msgs[400:600], msgs[600:800]}, {msgs[800:1000]}}
	if _, err := p.apply(txs[0]); err != nil {
		t.Fatal(err)
	}
	first, err := p.apply(txs[1]) // the first is written and commits as the second is projected
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Wait(); err != nil {
		t.Fatal(err)
	}
	committed := ledgertest.Checksum(t, b)
	// The second transaction fails; the third was projected on what it
	// carried.
	p.fail = func(tx pgx.Tx) {
		pid := tx.Conn().PgConn().PID()
		if _, err := b.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
			t.Error(err)
		}
	}
	second, err := p.apply(txs[2])
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Wait(); err == nil {
		t.Fatal("the second transaction committed on a connection cut before it wrote its rows")
	}
	if err := p.finish(); err == nil {
		t.Fatal("the third transaction committed after the one before it failed")
	}
	if got := ledgertest.Checksum(t, b); !maps.Equal(got, committed) {
		t.Fatalf("after the failed commit, the tables are not the first commit's:\n%v\n%v", got, committed)
	}
	pos, err := b.Position(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pos.StreamSeq != msgs[399].StreamSeq || pos.Applied != 400 {
		t.Fatalf("position after the failed commit: %+v, want the first transaction's (stream seq %d, 400 applied)", pos, msgs[399].StreamSeq)
	}
	// What the consumer does next: read again from the committed
	// position, one transaction at a time.
	b.beforeWrite = nil
	if _, err := b.Apply(ctx, msgs[400:]); err != nil {
		t.Fatal(err)
	}
	if got := ledgertest.Checksum(t, b); !maps.Equal(got, want) {
		t.Fatalf("applied again after the failed commit vs one batch:\n%v\n%v", got, want)
	}
}
