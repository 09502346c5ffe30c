package sqlite

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// TestIdentityColumns: the sessions columns this engine writes are
// ledger.IdentityColumns after session_uid, in order (an update of the
// changed columns picks its arguments by that order).
func TestIdentityColumns(t *testing.T) {
	var cols []string
	for _, c := range strings.Split(identityCols, ",") {
		cols = append(cols, strings.TrimSpace(c))
	}
	if cols[0] != "session_uid" || !slices.Equal(cols[1:], ledger.IdentityColumns) {
		t.Fatalf("identityCols %v, ledger.IdentityColumns %v", cols, ledger.IdentityColumns)
	}
	if n := len(identityArgs(&ledger.Session{UID: "0190c1d2-0000-7000-8000-000000000001", LogicalUID: "0190c1d2-0000-7000-8000-000000000001"})); n != len(cols) {
		t.Fatalf("identityArgs gives %d values for %d columns", n, len(cols))
	}
}

// TestWriteSessionsPaths: a row the batch believes new but which is stored
// after all takes the upsert's conflict path and ends up whole; a stored
// row updated in its changed columns only keeps the others.
func TestWriteSessionsPaths(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	a := &ledger.Session{UID: "0190c1d2-0000-7000-8000-000000000001", LogicalUID: "0190c1d2-0000-7000-8000-000000000001",
		ServerID: "vpn1", Username: "alice", VPNIPv4: "10.8.0.2", ConnectedAt: t0, State: "open", Origin: "connect"}
	write := func(c *ledger.Changes) {
		t.Helper()
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		p, err := readPosition(ctx, tx)
		if err != nil {
			t.Fatal(err)
		}
		c.Position = p
		if err := (&ingestTx{tx: tx}).Write(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	load := func() *ledger.Session {
		t.Helper()
		got, err := scanSession(s.r.QueryRowContext(ctx, `SELECT `+sessionCols+sessionsFrom+` WHERE session_uid = ?`, ub(a.UID)))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	write(&ledger.Changes{Sessions: []*ledger.Session{a}, Counters: []*ledger.Session{a}, New: map[string]bool{a.UID: true}})
	// The same uid again as new, with other values: the conflict path.
	b := *a
	b.Username, b.VPNIPv4, b.State, b.EndedAt, b.EndReason = "bob", "10.8.0.3", "ended", t0.Add(time.Hour), "user"
	write(&ledger.Changes{Sessions: []*ledger.Session{&b}, Counters: []*ledger.Session{&b}, New: map[string]bool{a.UID: true}})
	if got := load(); ledger.IdentityDiff(got, &b) != 0 {
		t.Fatalf("a new row already stored: got %+v, want %+v", got, b)
	}
	// A stored row changed in its end columns; the update names those
	// only, so a column outside the set keeps its stored value even
	// when the row in hand says otherwise.
	c := b
	c.EndReason, c.Hostname = "idle", "not-written"
	write(&ledger.Changes{Sessions: []*ledger.Session{&c},
		Changed: map[string]ledger.ColumnSet{a.UID: endReasonOnly()}})
	got := load()
	if got.EndReason != "idle" || got.Hostname != "" || got.Username != "bob" {
		t.Fatalf("an update of end_reason only: got %+v", got)
	}
}

// endReasonOnly is the column set {end_reason}.
func endReasonOnly() ledger.ColumnSet {
	return 1 << slices.Index(ledger.IdentityColumns, "end_reason")
}
