package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/api"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
)

var ctx = context.Background()

type fixture struct {
	nc       *nats.Conn
	st       ledger.Store
	ro       nkeys.KeyPair // read-only key: may query
	stranger nkeys.KeyPair // not in the trusted file
	uid      string
	t0       time.Time
}

func setup(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	st := openLedger(t, dir)
	f := &fixture{st: st, uid: ledgertest.UID(), t0: time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)}
	g := ledgertest.NewGen("vpn1", &ledgertest.Seq{})
	if _, err := st.Apply(ctx, []ledger.Message{
		g.Connect(f.uid, ledgertest.Conn{User: "alice", IPReal: "203.0.113.9", VPN4: "10.8.0.23"}, f.t0),
		g.Disconnect(f.uid, 100, 200, 600, f.t0.Add(10*time.Minute)),
		g.Audit("kick", "ops", false, f.t0),
	}); err != nil {
		t.Fatal(err)
	}
	f.ro, _ = nkeys.CreateUser()
	f.stranger, _ = nkeys.CreateUser()
	pub, _ := f.ro.PublicKey()
	f.nc = serve(t, dir, "ro "+pub+" auditor\n", api.Options{Store: st})
	return f
}

// openLedger makes a migrated SQLite ledger in dir, closed when the test
// ends.
func openLedger(t *testing.T, dir string) ledger.Store {
	t.Helper()
	path := filepath.Join(dir, "l.db")
	if _, err := sqlite.Migrate(ctx, path); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// serve runs the query service with o (its Store set) on a NATS server
// of the test's own, trusting the keys file lines keys, and returns a
// connection to that server. The service stops when the test ends.
func serve(t *testing.T, dir, keys string, o api.Options) *nats.Conn {
	t.Helper()
	srv := natstest.Run(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	path := filepath.Join(dir, "operators.keys")
	os.WriteFile(path, []byte(keys), 0o600)
	trusted, err := opauth.LoadTrusted(path)
	if err != nil {
		t.Fatal(err)
	}
	nonces, err := opauth.OpenNonceCache(filepath.Join(dir, "nonces"), opauth.NonceLimits{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nonces.Close() })
	o.NC, o.Prefix = nc, "ocserv"
	o.Verifier = &opauth.Verifier{Trusted: trusted, Nonces: nonces, MaxSkew: 30 * time.Second, MaxValidity: 5 * time.Minute}
	svc, err := api.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	return nc
}

func (f *fixture) client(k nkeys.KeyPair) *api.Client {
	return &api.Client{NC: f.nc, Prefix: "ocserv", Key: k}
}

func TestQueries(t *testing.T) {
	f := setup(t)
	c := f.client(f.ro)
	var h api.HistoryResult
	rep, err := c.Query(ctx, "history", map[string]string{"user": "alice"}, &h)
	if err != nil || !rep.OK || len(h.Sessions) != 1 || h.Sessions[0].UID != f.uid || h.Sessions[0].BytesOut != 200 {
		t.Fatalf("history: %+v %+v %v", rep, h, err)
	}
	var w api.WhoResult
	rep, err = c.Query(ctx, "who", map[string]string{"ip": "10.8.0.23", "at": f.t0.Add(5 * time.Minute).Format(time.RFC3339)}, &w)
	if err != nil || !rep.OK || len(w.Sessions) != 1 || w.Sessions[0].Username != "alice" {
		t.Fatalf("who: %+v %+v %v", rep, w, err)
	}
	var u api.UsageResult
	rep, err = c.Query(ctx, "usage", map[string]string{"from": "2026-11-01", "to": "2026-12-01"}, &u)
	if err != nil || !rep.OK || len(u.Rows) != 1 || u.Rows[0].BytesIn != 100 || u.From != "2026-11-01" {
		t.Fatalf("usage: %+v %+v %v", rep, u, err)
	}
	var a api.AuditResult
	rep, err = c.Query(ctx, "audit", map[string]string{"refused": "true"}, &a)
	if err != nil || !rep.OK || len(a.Entries) != 1 || a.Entries[0].Action != "kick" {
		t.Fatalf("audit: %+v %+v %v", rep, a, err)
	}
	var sv api.ServersResult
	if rep, err = c.Query(ctx, "servers", nil, &sv); err != nil || !rep.OK || len(sv.Servers) != 1 {
		t.Fatalf("servers: %+v %v", rep, err)
	}
	var ss api.SessionResult
	if rep, err = c.Query(ctx, "session", map[string]string{"uid": f.uid}, &ss); err != nil || !rep.OK || ss.Session.State != "disconnect" {
		t.Fatalf("session: %+v %v", rep, err)
	}
	// Bad arguments name the argument.
	for _, bad := range []struct {
		action string
		args   map[string]string
	}{
		{"who", map[string]string{"ip": "10.8.0.23"}},
		{"who", map[string]string{"ip": "nope", "at": "2026-11-24T14:00:00Z"}},
		{"who", map[string]string{"ip": "10.8.0.23", "at": "yesterday"}},
		{"history", map[string]string{"limit": "100000"}},
		{"history", map[string]string{"colour": "blue"}},
		{"usage", map[string]string{"by": "week"}},
		{"session", map[string]string{"uid": "../../etc"}},
	} {
		rep, err := c.Do(ctx, bad.action, bad.args)
		if err != nil || rep.OK || rep.Error.Code != ledger.ECodeInvalid {
			t.Errorf("%s %v: %+v %v, want invalid_argument", bad.action, bad.args, rep, err)
		}
	}
}

// TestRefusals: the security layer of every command, on the queries.
func TestRefusals(t *testing.T) {
	f := setup(t)
	send := func(subject string, body []byte) *cmdsvc.Reply {
		t.Helper()
		m, err := f.nc.Request(subject, body, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var r cmdsvc.Reply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	sign := func(k nkeys.KeyPair, subject, action string, iat time.Time, ttl time.Duration) []byte {
		b, err := opauth.Sign(k, opauth.NewCommand(subject, action, map[string]string{"user": "alice"}, iat, ttl))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hist := api.Subject("ocserv", "history")
	now := time.Now()
	good := sign(f.ro, hist, "history", now, time.Minute)
	if r := send(hist, good); !r.OK {
		t.Fatalf("a good request: %+v", r.Error)
	}
	var tampered map[string]any
	json.Unmarshal(good, &tampered)
	cmd := tampered["cmd"].(map[string]any)
	cmd["args"] = map[string]string{"user": "bob"}
	tb, _ := json.Marshal(tampered)
	for _, c := range []struct {
		name    string
		subject string
		body    []byte
		code    string
	}{
		{"unsigned", hist, []byte(`{"user":"alice"}`), opauth.CodeUnsigned},
		{"unknown key", hist, sign(f.stranger, hist, "history", now, time.Minute), opauth.CodeUnknownKey},
		{"replayed", hist, good, opauth.CodeReplayed},
		{"signed for another action", api.Subject("ocserv", "usage"), sign(f.ro, hist, "history", now, time.Minute), opauth.CodeWrongSubject},
		{"expired", hist, sign(f.ro, hist, "history", now.Add(-10*time.Minute), time.Minute), opauth.CodeExpired},
		{"too long a validity", hist, sign(f.ro, hist, "history", now, time.Hour), opauth.CodeTooLong},
		{"tampered", hist, tb, opauth.CodeBadSignature},
	} {
		r := send(c.subject, c.body)
		if r.OK || r.Error == nil || r.Error.Code != c.code {
			t.Errorf("%s: %+v, want refused with %s", c.name, r.Error, c.code)
		}
	}
}

// TestBadReplySubject: a request whose reply subject is not an inbox gets
// no answer at all (nobody can make the ledger publish where they choose).
func TestBadReplySubject(t *testing.T) {
	f := setup(t)
	sub, err := f.nc.SubscribeSync("ocserv.events.victim.connect")
	if err != nil {
		t.Fatal(err)
	}
	hist := api.Subject("ocserv", "history")
	body, _ := opauth.Sign(f.ro, opauth.NewCommand(hist, "history", nil, time.Now(), time.Minute))
	if err := f.nc.PublishRequest(hist, "ocserv.events.victim.connect", body); err != nil {
		t.Fatal(err)
	}
	// A good request after it is answered, so the bad one was handled
	// (the endpoint serves requests in order).
	var h api.HistoryResult
	if rep, err := f.client(f.ro).Query(ctx, "history", nil, &h); err != nil || !rep.OK {
		t.Fatalf("a good request: %+v %v", rep, err)
	}
	if m, err := sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("the ledger answered onto %s: %s", m.Subject, m.Data)
	}
}

// A taken-over host publishes, for its own server, sessions whose free
// text (host name, user agent, device strings: up to the ledger's cap
// each) is all control characters, which JSON spells in six bytes each.
// A page of them was over the NATS server's max payload: the ledger
// logged that its reply failed, and the operator's history, audit or
// who timed out as if the ledger were down, for as long as the
// sessions were kept. A page now ends where the answer still fits (with
// a cursor to the rest), and an answer that cannot be cut says so.
func TestAnswersOverMaxPayload(t *testing.T) {
	f := setup(t)
	g := ledgertest.NewGen("vpn9", &ledgertest.Seq{})
	fat := strings.Repeat("\x01", 1024)
	var msgs []ledger.Message
	for i := range 60 {
		m := g.Connect(ledgertest.UID(), ledgertest.Conn{User: fmt.Sprintf("u%d", i), IPReal: "203.0.113.77", VPN4: "10.77.0.1"}, f.t0.Add(time.Duration(i)*time.Second))
		var ev map[string]any
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		sess := ev["session"].(map[string]any)
		for _, k := range []string{"hostname", "user_agent", "device_type", "device_platform"} {
			sess[k] = fat
		}
		m.Data, _ = json.Marshal(ev)
		msgs = append(msgs, m)
	}
	if _, err := f.st.Apply(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	c := f.client(f.ro)
	// history: every session exactly once, page by page.
	seen := map[string]int{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 60 {
			t.Fatal("history does not come to an end")
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var h api.HistoryResult
		rep, err := c.Query(qctx, "history", map[string]string{"cursor": cursor}, &h)
		cancel()
		if err != nil || !rep.OK {
			t.Fatalf("history page %d: %v %+v", pages, err, rep)
		}
		for _, x := range h.Sessions {
			seen[x.UID]++
		}
		if h.NextCursor == "" {
			break
		}
		if len(h.Sessions) == 0 {
			t.Fatal("an empty page with a cursor")
		}
		cursor = h.NextCursor
	}
	if len(seen) != 61 {
		t.Fatalf("history paged through %d sessions, want 61", len(seen))
	}
	for uid, n := range seen {
		if n != 1 {
			t.Errorf("session %s on %d pages", uid, n)
		}
	}
	// who: 60 sessions held the address at once; the answer cannot be
	// cut (it is the answer), so it is refused with a clear error.
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rep, err := c.Do(qctx, "who", map[string]string{"ip": "10.77.0.1", "at": f.t0.Add(time.Hour).Format(time.RFC3339)})
	if err != nil {
		t.Fatalf("who: no answer: %v", err)
	}
	if rep.OK || rep.Error == nil || rep.Error.Code != ledger.ECodeTooLarge || !strings.Contains(rep.Error.Message, "max payload") {
		t.Fatalf("who: %+v", rep.Error)
	}
}
