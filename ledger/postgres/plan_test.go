package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestOpenSessionsPlan: a user's open sessions come from the partial
// index sessions_open_user, never from every session the user ever had
// (sessions_user, then the heap row of each to test its state): the
// console's user page and every policy check ask this, and its cost must
// not grow with the user's history. Planned on analysed tables, as
// autovacuum keeps them.
func TestOpenSessionsPlan(t *testing.T) {
	ctx := context.Background()
	s, dsn := testStore(t)
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	// alice: a long history, two sessions open; bob: one open.
	if _, err := c.Exec(ctx, `INSERT INTO sessions SELECT gen_random_uuid(), gen_random_uuid(), 'vpn' || (i % 3), 'spool',
			CASE WHEN i % 3 = 2 THEN 'bob' ELSE 'alice' END, 'staff', 'default', i, 'vpns0', NULL, NULL, NULL, NULL, NULL, NULL,
			'', '', '', '', '', now() - (20000 - i) * interval '1 hour', false,
			CASE WHEN i >= 19997 THEN NULL ELSE now() - (20000 - i) * interval '1 hour' + interval '30 minutes' END, false,
			CASE WHEN i >= 19997 THEN 'open' ELSE 'disconnect' END, '', 'connect'
		FROM generate_series(0, 19999) i`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "ANALYZE sessions"); err != nil {
		t.Fatal(err)
	}
	for _, users := range [][]string{{"alice"}, {"alice", "bob"}, nil} {
		q, args := openSessionsQuery(users)
		var plan []string
		rows, err := c.Query(ctx, "EXPLAIN "+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, strings.TrimSpace(line))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		p := strings.Join(plan, "; ")
		t.Logf("users %v: %s", users, p)
		if !strings.Contains(p, "sessions_open_user") || strings.Contains(p, "Seq Scan") {
			t.Errorf("users %v: plan %q, want the partial index sessions_open_user", users, p)
		}
	}
	got, err := s.OpenSessions(ctx, []string{"alice"})
	if err != nil || len(got["alice"]) != 2 || len(got) != 1 {
		t.Errorf("alice's open sessions %+v %v, want her two", got, err)
	}
}
