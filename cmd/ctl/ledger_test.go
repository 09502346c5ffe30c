package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/api"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
)

// ledgerBed: an embedded NATS, a ledger (SQLite, the query service
// in-process) holding a small fleet's events, and ctl's config with a
// key made by ctl keygen and trusted by the ledger; extra adds events of
// vpn1 after the fleet's own.
func newLedgerBed(t *testing.T, trust bool, extra ...func(vpn1 *ledgertest.Gen, t0 time.Time) ledger.Message) (*ctlBed, time.Time) {
	t.Helper()
	srv := natstest.Run(t)
	dir := t.TempDir()
	b := &ctlBed{t: t, cfg: filepath.Join(dir, "ctl.env"), keyOut: filepath.Join(dir, "op.nk")}
	os.WriteFile(b.cfg, []byte("NATS_URL="+srv.ClientURL()+"\nOPERATOR_KEY="+b.keyOut+"\nCTL_TIMEOUT=3s\n"), 0o600)
	out, errs, code := b.run("", "keygen", "--name", "auditor", "--role", "read-only")
	if code != 0 {
		t.Fatalf("keygen: %d %s", code, errs)
	}
	trusted := filepath.Join(dir, "trusted")
	if !trust {
		out = "# nobody\n"
	}
	os.WriteFile(trusted, []byte(out), 0o600)
	tr, err := opauth.LoadTrusted(trusted)
	if err != nil {
		t.Fatal(err)
	}
	nonces, _ := opauth.OpenNonceCache(filepath.Join(dir, "nonces"), opauth.NonceLimits{}, time.Now())
	t.Cleanup(func() { nonces.Close() })
	ctx := context.Background()
	path := filepath.Join(dir, "ledger.db")
	if _, err := sqlite.Migrate(ctx, path); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	t0 := time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)
	seq := &ledgertest.Seq{}
	g1, g2 := ledgertest.NewGen("vpn1", seq), ledgertest.NewGen("vpn2", seq)
	a, bb, c := ledgertest.UID(), ledgertest.UID(), ledgertest.UID()
	msgs := []ledger.Message{
		g1.Connect(a, ledgertest.Conn{User: "alice", IPReal: "203.0.113.9", VPN4: "10.8.0.23"}, t0),
		g1.Disconnect(a, 1<<20, 3<<20, 3600, t0.Add(time.Hour)),
		g1.Connect(bb, ledgertest.Conn{User: "bob", IPReal: "203.0.113.10", VPN4: "10.8.0.23"}, t0.Add(time.Hour+time.Minute)),
		g2.Connect(c, ledgertest.Conn{User: "alice", IPReal: "198.51.100.4", VPN4: "10.9.0.5"}, t0.Add(30*time.Minute)),
		g2.Disconnect(c, 1000, 2000, 600, t0.Add(40*time.Minute)),
		g2.Audit("kick", "ops", false, t0),
		g1.AuditFor("kick", "olga", "bob", t0.Add(2*time.Hour)),
	}
	for _, f := range extra {
		msgs = append(msgs, f(g1, t0))
	}
	if _, err := st.Apply(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	svc, err := api.Start(api.Options{NC: nc, Prefix: "ocserv", Store: st,
		Verifier: &opauth.Verifier{Trusted: tr, Nonces: nonces, MaxSkew: time.Second, MaxValidity: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	return b, t0
}

func TestCtlLedger(t *testing.T) {
	b, t0 := newLedgerBed(t, true)
	out, errs, code := b.run("", "history", "--user", "alice")
	if code != 0 || strings.Count(out, "alice") != 2 || !strings.Contains(out, "CONNECTED (UTC)") || !strings.Contains(out, "1.0 MiB") {
		t.Fatalf("history: %d\n%s%s", code, out, errs)
	}
	out, _, code = b.run("", "history", "-s", "vpn2", "--json")
	var h api.HistoryResult
	if code != 0 || json.Unmarshal([]byte(out), &h) != nil || len(h.Sessions) != 1 || h.Sessions[0].ServerID != "vpn2" {
		t.Fatalf("history -s vpn2 --json: %d %s", code, out)
	}
	// The address reused by the next user: who names each at their time.
	at := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339) }
	out, _, code = b.run("", "who", "--ip", "10.8.0.23", "--at", at(10*time.Minute))
	if code != 0 || !strings.Contains(out, "alice") || strings.Contains(out, "bob") {
		t.Fatalf("who at +10m: %d\n%s", code, out)
	}
	out, _, code = b.run("", "who", "--ip", "10.8.0.23", "--at", at(2*time.Hour), "--json")
	var w api.WhoResult
	if code != 0 || json.Unmarshal([]byte(out), &w) != nil || len(w.Sessions) != 1 || w.Sessions[0].Username != "bob" {
		t.Fatalf("who at +2h: %d %s", code, out)
	}
	out, _, code = b.run("", "who", "--ip", "10.8.0.99", "--at", at(0))
	if code != 0 || !strings.Contains(out, "nobody") {
		t.Fatalf("who nobody: %d %s", code, out)
	}
	out, _, code = b.run("", "usage", "--month", "2026-11", "--json")
	var u api.UsageResult
	if code != 0 || json.Unmarshal([]byte(out), &u) != nil || len(u.Rows) != 2 {
		t.Fatalf("usage: %d %s", code, out)
	}
	for _, r := range u.Rows {
		if r.Username == "alice" && (r.BytesIn != 1<<20+1000 || r.BytesOut != 3<<20+2000 || r.Sessions != 2) {
			t.Errorf("alice's usage across both servers: %+v", r)
		}
	}
	out, _, code = b.run("", "usage", "--month", "2026-11", "--per-server")
	if code != 0 || !strings.Contains(out, "vpn1") || !strings.Contains(out, "vpn2") || !strings.Contains(out, "SESSIONS") {
		t.Fatalf("usage --per-server: %d\n%s", code, out)
	}
	out, _, code = b.run("", "audit", "--refused")
	if code != 0 || !strings.Contains(out, "kick") || !strings.Contains(out, "forbidden") {
		t.Fatalf("audit: %d\n%s", code, out)
	}
	// A command the web console signed for a web user names both.
	out, _, code = b.run("", "audit", "--actor", "olga")
	if code != 0 || !strings.Contains(out, "console for olga") || strings.Contains(out, "forbidden") {
		t.Fatalf("audit --actor olga: %d\n%s", code, out)
	}
	out, _, code = b.run("", "audit", "--user", "bob", "--json")
	var ar api.AuditResult
	if code != 0 || json.Unmarshal([]byte(out), &ar) != nil || len(ar.Entries) != 1 || ar.Entries[0].Actor != "olga" {
		t.Fatalf("audit --user bob --json: %d %s", code, out)
	}
	// Bad input: a clear error, exit 2.
	if _, errs, code := b.run("", "who", "--ip", "10.8.0.23"); code != exitUsage || !strings.Contains(errs, "--at") {
		t.Fatalf("who without --at: %d %s", code, errs)
	}
	if _, errs, code := b.run("", "who", "--ip", "10.8.0.300", "--at", "now"); code != exitUsage || !strings.Contains(errs, "ip") {
		t.Fatalf("who with a bad address: %d %s", code, errs)
	}
	if _, errs, code := b.run("", "history", "--from", "last tuesday"); code != exitUsage || !strings.Contains(errs, "--from") {
		t.Fatalf("history with a bad time: %d %s", code, errs)
	}
}

// TestCtlLedgerRefused: a key the ledger does not trust gets exit 4.
func TestCtlLedgerRefused(t *testing.T) {
	b, _ := newLedgerBed(t, false)
	_, errs, code := b.run("", "history")
	if code != exitRefused || !strings.Contains(errs, "unknown_key") {
		t.Fatalf("untrusted key: %d %s", code, errs)
	}
}

// What a VPN user or any NATS account with the right to publish commands
// puts in the ledger reaches ctl's ledger tables: a user name from the
// login (RADIUS and PAM take what the client typed), the arguments of an
// unsigned request a command service refused and audited as sent. The
// terminal layer lets ctl's own newlines and tabs through, so a field
// carrying them forged rows and columns: an audit line saying "alice
// kicked bob, ok" that nobody ran, a session row under another name.
// Every field stays on its own row now, escaped visibly; --json keeps
// the data exact.
func TestCtlLedgerTablesKeepRemoteFieldsOnTheirRow(t *testing.T) {
	forgedRow := "\n2026-11-24 13:00:00  vpn1    kick    done   true  alice  user=bob  -  -"
	evilUser := "mallory" + forgedRow + "\tcol\x1b]0;t\x07"
	b, _ := newLedgerBed(t, true,
		func(g *ledgertest.Gen, t0 time.Time) ledger.Message {
			return g.Connect(ledgertest.UID(), ledgertest.Conn{User: evilUser, IPReal: "203.0.113.50", VPN4: "10.8.0.50"}, t0.Add(3*time.Hour))
		},
		func(g *ledgertest.Gen, t0 time.Time) ledger.Message {
			// As cmdsvc audits an unsigned request: its arguments verbatim.
			audit := json.RawMessage(mustJSON(map[string]any{"phase": "refused", "action": "unkick", "subject": "ocserv.cmd.vpn1.unkick",
				"args": map[string]string{"user": "x" + forgedRow}, "ok": false, "code": "unsigned", "message": "unsigned\trequest" + forgedRow}))
			ev := events.Event{V: events.SchemaVersion, EventID: ledgertest.UID(), ServerID: g.ServerID, SpoolID: g.SpoolID, Seq: 100,
				Type: events.Audit, Time: t0.Add(3 * time.Hour).Format(time.RFC3339Nano), Audit: &audit}
			return g.Raw("audit", mustJSON(ev))
		})
	rows := func(out string) []string {
		return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	}
	// history: a header and the fleet's four sessions, one row each.
	out, errs, code := b.run("", "history")
	if code != 0 {
		t.Fatalf("history: %d %s", code, errs)
	}
	if l := rows(out); len(l) != 5 || unsafeIn(out, true) != -1 || strings.Count(out, "\t") != 0 {
		t.Fatalf("history printed %d rows for 4 sessions (or a raw control):\n%s", len(l)-1, out)
	}
	if !strings.Contains(out, `mallory\n2026-11-24 13:00:00`) || !strings.Contains(out, `\tcol\x1b]0;t\x07`) {
		t.Fatalf("history does not show the user name escaped:\n%s", out)
	}
	out, _, code = b.run("", "history", "--json")
	var h api.HistoryResult
	if code != 0 || json.Unmarshal([]byte(out), &h) != nil || len(h.Sessions) != 4 || h.Sessions[0].Username != evilUser {
		t.Fatalf("history --json does not keep the name exactly: %d %s", code, out)
	}
	// who: the same table.
	out, _, code = b.run("", "who", "--ip", "10.8.0.50", "--at", "2026-11-24T17:30:00Z")
	if l := rows(out); code != 0 || len(l) != 2 || !strings.Contains(out, `mallory\n`) {
		t.Fatalf("who printed %d rows for one session:\n%s", len(l)-1, out)
	}
	// audit: a header and three entries.
	out, _, code = b.run("", "audit")
	if l := rows(out); code != 0 || len(l) != 4 || unsafeIn(out, true) != -1 {
		t.Fatalf("audit printed %d rows for 3 entries:\n%s", len(l)-1, out)
	}
	if !strings.Contains(out, `user=x\n2026-11-24`) || !strings.Contains(out, `unsigned\trequest\n`) {
		t.Fatalf("audit does not show the arguments escaped:\n%s", out)
	}
	// usage: a header line, a header row and three users.
	out, _, code = b.run("", "usage", "--month", "2026-11")
	if l := rows(out); code != 0 || len(l) != 5 || !strings.Contains(out, `mallory\n`) {
		t.Fatalf("usage printed %d rows for 3 users:\n%s", len(l)-2, out)
	}
}

// The operator's seed signs every ledger question and command; the
// ledger and the console refuse a key file others can read, and ctl
// signed with one whatever its mode (a copy on a shared jump host,
// unpacked from a tar with 0644). It refuses now, before any request.
func TestCtlRefusesAnOperatorKeyOthersCanRead(t *testing.T) {
	b, _ := newLedgerBed(t, true)
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620} {
		if err := os.Chmod(b.keyOut, mode); err != nil {
			t.Fatal(err)
		}
		_, errs, code := b.run("", "history")
		if code == 0 || !strings.Contains(errs, "readable or writable by others") || !strings.Contains(errs, "chmod 600") {
			t.Errorf("key mode %v: exit %d, %s", mode, code, errs)
		}
	}
	os.Chmod(b.keyOut, 0o600)
	if out, errs, code := b.run("", "history"); code != 0 {
		t.Fatalf("key mode 0600: exit %d %s%s", code, out, errs)
	}
}
