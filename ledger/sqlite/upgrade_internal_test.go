package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestUpgradeFrom8: a database of schema 8 as earlier versions left it —
// a self-link row per session beside a roamed worker's link, and a
// webhook error quoting the webhook URL — is brought up to date by
// migrations 00009 and 00010: the self-links go (no row means the same),
// the roamed link stays, and the URL is no longer anywhere in the notice.
func TestUpgradeFrom8(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := provider(s.w)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 8); err != nil {
		t.Fatal(err)
	}
	const self, roamed, logical = "01a20c39-82a1-7ad6-94d6-1337fcece38f", "01a20c39-82a1-7ad6-94d6-1337fcece390", "01a20c39-82a1-7ad6-94d6-1337fcece391"
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO session_links (session_uid, logical_uid) VALUES (?, ?), (?, ?)`, []any{self, self, roamed, logical}},
		{`INSERT INTO policy_notices (notice_id, username, kind, time, body, webhook, attempts, last_error)
			VALUES (x'01', 'alice', 'quota', 0, '{}', 'failed', 3, ?), (x'02', 'bob', 'quota', 0, '{}', 'failed', 3, 'HTTP 500')`,
			[]any{`POST to the webhook: Post "https://hooks.example/services/T0/B0/secret-token": dial tcp 192.0.2.1:443: connect: connection refused`}},
	} {
		if _, err := s.w.ExecContext(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
	links := pairs(t, s, `SELECT session_uid, logical_uid FROM session_links`)
	if len(links) != 1 || links[roamed] != logical {
		t.Errorf("links after the upgrade %v, want the roamed worker's alone", links)
	}
	errs := pairs(t, s, `SELECT username, last_error FROM policy_notices`)
	if e := errs["alice"]; e == "" || strings.Contains(e, "hooks.example") || strings.Contains(e, "secret-token") || strings.Contains(e, "://") {
		t.Errorf("alice's notice error after the upgrade: %q, want it without the URL", e)
	}
	if errs["bob"] != "HTTP 500" {
		t.Errorf("bob's notice error %q changed, want HTTP 500 kept", errs["bob"])
	}
}

// pairs reads a query of two text columns as a map from the first to the
// second.
func pairs(t *testing.T, s *Store, query string) map[string]string {
	t.Helper()
	rows, err := s.w.QueryContext(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		out[k] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
