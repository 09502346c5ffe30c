package postgres

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// TestReadAhead: what LoadSessions reads ahead (the links of its uids,
// the ingest position) is what LoadLinks and Position would have read;
// links asked for other uids, and the position after a Write, come from
// the database, never from the read-ahead.
func TestReadAhead(t *testing.T) {
	ctx := context.Background()
	s, _ := testStore(t)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	const (
		a, la = "0190c1d2-3e4f-7a5b-8c6d-7e8f90a1b2c3", "0190c1d2-3e4f-7a5b-8c6d-7e8f90a1b2c4"
		b, lb = "0190c1d2-3e4f-7a5b-8c6d-7e8f90a1b2c5", "0190c1d2-3e4f-7a5b-8c6d-7e8f90a1b2c6"
	)
	if _, err := tx.Exec(ctx, `INSERT INTO session_links VALUES ($1, $2), ($3, $4)`, a, la, b, lb); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE ingest_state SET stream_seq = 7, applied = 5 WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	it := &ingestTx{tx: tx}
	if _, err := it.LoadSessions(ctx, []string{a}); err != nil {
		t.Fatal(err)
	}
	if it.links == nil || it.pos == nil {
		t.Fatal("LoadSessions read nothing ahead")
	}
	if l, err := it.LoadLinks(ctx, []string{b}); err != nil || !maps.Equal(l, map[string]string{b: lb}) {
		t.Fatalf("links of other uids: %v, %v; want %s's from the database", l, err, b)
	}
	if l, err := it.LoadLinks(ctx, []string{a}); err != nil || !maps.Equal(l, map[string]string{a: la}) {
		t.Fatalf("links read ahead: %v, %v", l, err)
	}
	if p, err := it.Position(ctx); err != nil || p.StreamSeq != 7 || p.Applied != 5 {
		t.Fatalf("position read ahead: %+v, %v", p, err)
	}

	// Read ahead again, then write: the position asked for next is the
	// one written.
	if _, err := it.LoadSessions(ctx, []string{a}); err != nil {
		t.Fatal(err)
	}
	want := ledger.Position{StreamSeq: 9, Applied: 6, StreamTime: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	if err := it.Write(ctx, &ledger.Changes{Position: want}); err != nil {
		t.Fatal(err)
	}
	if it.links != nil || it.pos != nil {
		t.Fatal("Write left the read-ahead in place")
	}
	if p, err := it.Position(ctx); err != nil || p != want {
		t.Fatalf("position after Write: %+v, %v; want %+v", p, err, want)
	}
}
