package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/pgtest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// TestHistoryReadsTheUserIndexInOrder: a user's history page (but the
// last) is read from the user's index in the page's own order (connect
// time, then the session's uuid) and stops at the page's end, with no
// sort of the user's sessions; and the pages put together are every one of the user's
// sessions in exactly that order, ties on the connect time included (a
// third of the sessions share theirs with two others, broken by random
// uuids).
func TestHistoryReadsTheUserIndexInOrder(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Database(t)
	if _, err := Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// 40 users, 1,000 sessions each; three sessions share each minute.
	for _, q := range []string{
		`INSERT INTO sessions SELECT gen_random_uuid(), gen_random_uuid(), 'vpn1', 'spool', 'user' || (g % 40), 'staff', 'default', g, 'vpns0',
			'203.0.113.9', '198.51.100.1', '10.8.' || (g % 200) || '.' || (g % 250 + 2), '10.255.0.1', NULL, NULL, 'laptop', 'agent', '', '', '',
			timestamptz '2026-01-01 00:00:00+00' + (g / 120) * interval '1 minute', false, NULL, false, 'open', '', 'connect'
			FROM generate_series(0, 39999) g`,
		`INSERT INTO session_counters SELECT session_uid, 0, 0, 0, 0, NULL, false, 0, 0 FROM sessions`,
		`ANALYZE sessions`,
		`ANALYZE session_counters`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var want []string
	rows, err := conn.Query(ctx, `SELECT session_uid::text FROM sessions WHERE username = 'user7' ORDER BY connected_at DESC, session_uid DESC`)
	if err != nil {
		t.Fatal(err)
	}
	want, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(want) != 1000 {
		t.Fatalf("user7's sessions: %d, %v", len(want), err)
	}

	s, err := Open(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []string
	q := ledger.HistoryQuery{User: "user7", Limit: 50}
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatalf("more than 20 pages of 50 for 1,000 sessions")
		}
		if err := q.Check(); err != nil {
			t.Fatal(err)
		}
		// The plan of this very page, as History sends it.
		query, args, err := historySQL(q)
		if err != nil {
			t.Fatal(err)
		}
		var plan string
		if err := conn.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+query, args...).Scan(&plan); err != nil {
			t.Fatal(err)
		}
		p, err := s.History(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		// The last page's few remaining rows may as well be fetched
		// and sorted; every page before it must not sort the user's
		// sessions.
		if p.NextCursor != "" && (strings.Contains(plan, `Sort"`) || !strings.Contains(plan, `"Index Name": "sessions_user"`)) {
			t.Fatalf("page %d is not read from sessions_user in its order:\n%s", pages+1, plan)
		}
		for _, x := range p.Items {
			got = append(got, x.UID)
		}
		if p.NextCursor == "" {
			break
		}
		q.Cursor = p.NextCursor
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("pages give %d sessions, not user7's %d in connect time and uuid order", len(got), len(want))
	}
}
