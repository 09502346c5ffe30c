package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenSessionsPlan: a user's open sessions come from the partial
// index sessions_open_user, never from every session the user ever had
// (sessions_user, then the table row of each to test its state): the
// console's user page and every policy check ask this, and its cost
// must not grow with the user's history. Checked with and without the
// planner's statistics (the ledger never runs ANALYZE itself; an operator
// or a copy made by the benchmark may have them).
func TestOpenSessionsPlan(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	// alice: a long history, two sessions open; bob: one open.
	if _, err := s.w.ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 2999)
		INSERT INTO sessions SELECT randomblob(16), randomblob(16), 'vpn' || (i % 3), 'spool',
			CASE WHEN i % 3 = 2 THEN 'bob' ELSE 'alice' END, 'staff', 'default', i, 'vpns0', NULL, NULL, NULL, NULL, NULL, NULL,
			'', '', '', '', '', 1000 + i, 0, CASE WHEN i >= 2997 THEN NULL ELSE 2000 + i END, 0,
			CASE WHEN i >= 2997 THEN 'open' ELSE 'disconnect' END, '', 'connect' FROM n`); err != nil {
		t.Fatal(err)
	}
	plan := func(q string, args ...any) string {
		rows, err := s.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			out = append(out, detail)
		}
		return strings.Join(out, "; ")
	}
	check := func(stats string) {
		for _, c := range []struct {
			cond string
			args []any
		}{{"username IN (?)", []any{"alice"}}, {"username IN (?,?)", []any{"alice", "bob"}}, {"", nil}} {
			p := plan(openSessionsSQL(c.cond), c.args...)
			if !strings.Contains(p, "USING INDEX sessions_open_user") || strings.Contains(p, "TEMP B-TREE") {
				t.Errorf("%s, users %v: plan %q, want the partial index sessions_open_user in its order", stats, c.args, p)
			}
		}
		got, err := s.OpenSessions(ctx, []string{"alice"})
		if err != nil || len(got["alice"]) != 2 || len(got) != 1 {
			t.Errorf("%s: alice's open sessions %+v %v, want her two", stats, got, err)
		}
	}
	check("without statistics")
	if _, err := s.w.ExecContext(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	check("after ANALYZE")
}

// testStore is a migrated, open store in a temporary directory, closed
// when the test ends.
func testStore(t *testing.T) *Store {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	if _, err := Migrate(ctx, path); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
