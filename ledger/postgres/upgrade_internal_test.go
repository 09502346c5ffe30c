package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/pgtest"
)

// TestUpgradeFrom8: see the SQLite store's test of the same name; the
// same database of schema 8, upgraded by PostgreSQL's 00009 and 00010.
func TestUpgradeFrom8(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Database(t)
	p, closeDB, err := provider(dsn, false)
	if err != nil {
		t.Fatal(err)
	}
	defer closeDB()
	if _, err := p.UpTo(ctx, 8); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	const self, roamed, logical = "01a20c39-82a1-7ad6-94d6-1337fcece38f", "01a20c39-82a1-7ad6-94d6-1337fcece390", "01a20c39-82a1-7ad6-94d6-1337fcece391"
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO session_links (session_uid, logical_uid) VALUES ($1, $1), ($2, $3)`, []any{self, roamed, logical}},
		{`INSERT INTO policy_notices (notice_id, username, kind, time, body, webhook, attempts, last_error)
			VALUES ($1, 'alice', 'quota', now(), '{}', 'failed', 3, $2), ($3, 'bob', 'quota', now(), '{}', 'failed', 3, 'HTTP 500')`,
			[]any{self, `POST to the webhook: Post "https://hooks.example/services/T0/B0/secret-token": dial tcp 192.0.2.1:443: connect: connection refused`, roamed}},
	} {
		if _, err := conn.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
	links := pairs(t, conn, `SELECT session_uid::text, logical_uid::text FROM session_links`)
	if len(links) != 1 || links[roamed] != logical {
		t.Errorf("links after the upgrade %v, want the roamed worker's alone", links)
	}
	errs := pairs(t, conn, `SELECT username, last_error FROM policy_notices`)
	if e := errs["alice"]; e == "" || strings.Contains(e, "hooks.example") || strings.Contains(e, "secret-token") || strings.Contains(e, "://") {
		t.Errorf("alice's notice error after the upgrade: %q, want it without the URL", e)
	}
	if errs["bob"] != "HTTP 500" {
		t.Errorf("bob's notice error %q changed, want HTTP 500 kept", errs["bob"])
	}
}

// pairs reads a query of two text columns as a map from the first to the
// second.
func pairs(t *testing.T, conn *pgx.Conn, query string) map[string]string {
	t.Helper()
	rows, err := conn.Query(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		out[k] = v
	}
	if rows.Close(); rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	return out
}
