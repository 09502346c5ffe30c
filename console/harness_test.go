package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/api"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
	"github.com/ocserv-telemetry/ocserv-telemetry/livestate"
	"github.com/ocserv-telemetry/ocserv-telemetry/natsjs"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// Test accounts. Their hashes use cheap argon2 parameters (the format
// carries them) so a test logs in within milliseconds.
const (
	opUser, opPass         = "olga", "olga-password-1"
	viewerUser, viewerPass = "victor", "victor-password-2"
)

var cheapArgon = Argon2Params{Memory: 64, Time: 1, Threads: 1}

// bench is a console on 127.0.0.1 with everything real behind it: an
// embedded nats-server with the events stream and the state bucket, a
// SQLite ledger, the console's audit spool shipped to the stream, and a
// real command service (cmdsvc) for server "vpn1" whose occtl is a
// stand-in, trusting the console's key read-write.
type bench struct {
	t      *testing.T
	srv    *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	store  *sqlite.Store
	s      *Server
	url    string
	dir    string
	live   *Live
	gens   map[string]*ledgertest.Gen
	seq    *ledgertest.Seq
	hostSp *spool.Spool // vpn1's spool: the command service's audits and kick list
	occtl  string       // vpn1's stand-in occtl argv log
	cfg    Config
}

type benchOpts struct {
	noCommands bool
	loginBurst int
	// policies runs the ledger's query service with its policy
	// endpoints on the bench's store, trusting the console's key with
	// ledgerRole (default read-write), and gives the console the
	// policy views and actions.
	policies   bool
	ledgerRole opauth.Role
}

func newBench(t *testing.T, o benchOpts) *bench {
	t.Helper()
	b := &bench{t: t, dir: t.TempDir(), gens: map[string]*ledgertest.Gen{}, seq: &ledgertest.Seq{}}
	b.srv = natstest.Run(t)
	var err error
	if b.nc, err = nats.Connect(b.srv.ClientURL()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.nc.Close)
	b.js, _ = jetstream.New(b.nc)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	spec := natsjs.StreamSpec{Name: "OCSERV_EVENTS", Subjects: natsjs.EventsSubjects("ocserv"), DupWindow: 2 * time.Minute, Create: true}
	if _, err := natsjs.EnsureStream(ctx, b.js, spec); err != nil {
		t.Fatal(err)
	}
	if b.kv, err = b.js.CreateKeyValue(ctx, livestate.BucketConfig("ocserv_state")); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(b.dir, "ledger.db")
	if _, err := sqlite.Migrate(ctx, dbPath); err != nil {
		t.Fatal(err)
	}
	if b.store, err = sqlite.Open(ctx, dbPath, sqlite.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.store.Close() })

	// Accounts: an operator and a viewer.
	users := filepath.Join(b.dir, "console-users")
	if err := EditAccounts(users, func(m map[string]Account) error {
		for _, u := range []struct {
			name, pw string
			role     Role
		}{{opUser, opPass, Operator}, {viewerUser, viewerPass, Viewer}} {
			h, err := HashPassword(u.pw, cheapArgon)
			if err != nil {
				return err
			}
			m[u.name] = Account{Name: u.name, Role: u.role, Hash: h}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	accts, err := LoadAccounts(users)
	if err != nil {
		t.Fatal(err)
	}
	sessions, err := OpenSessions(filepath.Join(b.dir, "sessions.json"), time.Hour, 30*time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	b.live = NewLive(log, nil)
	go b.live.Run(ctx, b.nc, b.js, "ocserv", "ocserv_state")
	select {
	case <-b.live.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("live state not ready")
	}
	auditor, err := OpenSpoolAuditor(filepath.Join(b.dir, "audit-spool"), "console")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auditor.Close() })
	conn, err := natsjs.Connect(config.NATS{URLs: []string{b.srv.ClientURL()}}, natsjs.Options{Name: "console-audit"}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	shipDone := make(chan struct{})
	go func() { defer close(shipDone); auditor.Ship(ctx, conn, "ocserv", log) }()
	t.Cleanup(func() { cancel(); <-shipDone })

	// The console's key, trusted read-write by vpn1's command service.
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	var cmds Commander
	if !o.noCommands {
		cmds = &cmdsvc.Client{NC: b.nc, Prefix: "ocserv", Key: kp, TTL: 30 * time.Second}
		b.startHost(ctx, pub, log)
	}
	b.cfg = DefaultConfig()
	b.cfg.Enabled, b.cfg.StateDir = true, b.dir
	if o.loginBurst > 0 {
		b.cfg.LoginBurst, b.cfg.LoginEvery = o.loginBurst, time.Hour
	}
	opts := Options{Config: b.cfg, Accounts: accts, Sessions: sessions, Ledger: b.store, Live: b.live,
		Commands: cmds, Audit: auditor, KeyPublic: pub, Prefix: "ocserv", Log: log}
	if o.policies {
		role := o.ledgerRole
		if role == "" {
			role = opauth.ReadWrite
		}
		b.startLedgerAPI(pub, role, log)
		opts.Policies = b.store
		opts.LedgerActions = &api.Client{NC: b.nc, Prefix: "ocserv", Key: kp, TTL: 30 * time.Second}
	}
	b.s, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.url = "http://" + ln.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); b.s.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return b
}

// startLedgerAPI runs the ledger's real query service (signed requests,
// trusted keys, nonces) with its policy endpoints on the bench's store,
// trusting the console's key with role. It has no policy engine (as on a
// standby instance): the console reads where users stand from the
// database, which is where the endpoints write.
func (b *bench) startLedgerAPI(consolePub string, role opauth.Role, log *slog.Logger) {
	t := b.t
	dir := t.TempDir()
	trusted := filepath.Join(dir, "ledger.keys")
	os.WriteFile(trusted, []byte(string(role)+" "+consolePub+" console\n"), 0o644)
	tr, err := opauth.LoadTrusted(trusted)
	if err != nil {
		t.Fatal(err)
	}
	nonces, err := opauth.OpenNonceCache(filepath.Join(dir, "nonces"), opauth.NonceLimits{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nonces.Close() })
	svc, err := api.Start(api.Options{NC: b.nc, Prefix: "ocserv", Store: b.store, Log: log, Build: "test",
		Verifier: &opauth.Verifier{Trusted: tr, Nonces: nonces, MaxSkew: 30 * time.Second, MaxValidity: 5 * time.Minute},
		Policy:   &api.PolicyHooks{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
}

// startHost runs the real command service for "vpn1" with a stand-in
// occtl that records what it was asked.
func (b *bench) startHost(ctx context.Context, consolePub string, log *slog.Logger) {
	t := b.t
	dir := t.TempDir()
	trusted := filepath.Join(dir, "trusted.keys")
	os.WriteFile(trusted, []byte("read-write "+consolePub+" console\n"), 0o644)
	tr, err := opauth.LoadTrusted(trusted)
	if err != nil {
		t.Fatal(err)
	}
	nonces, err := opauth.OpenNonceCache(filepath.Join(dir, "nonces"), opauth.NonceLimits{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nonces.Close() })
	if b.hostSp, err = spool.Open(filepath.Join(dir, "spool"), spool.Options{Fsync: true, LockWait: time.Second, Create: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.hostSp.Close() })
	b.occtl = filepath.Join(dir, "occtl.argv")
	script := `#!/bin/sh
[ "$1" = "-j" ] && shift
[ "$1" = "--version" ] && { echo "OpenConnect server control (occtl) version 1.1.6" >&2; exit 0; }
printf '%s\n' "$*" >> ` + b.occtl + `
case "$*" in
"disconnect user "*) echo "user '$3' was disconnected" ;;
*) echo "unexpected command" >&2; exit 1 ;;
esac
`
	occtl := filepath.Join(dir, "occtl")
	os.WriteFile(occtl, []byte(script), 0o755)
	xkp, _ := nkeys.CreateCurveKeys()
	svc, err := cmdsvc.Start(cmdsvc.Options{
		NC: b.nc, Prefix: "ocserv", ServerID: "vpn1",
		Verifier: &opauth.Verifier{Trusted: tr, Nonces: nonces, MaxSkew: 30 * time.Second, MaxValidity: 5 * time.Minute},
		XKey:     xkp, Occtl: &ocserv.Occtl{Path: occtl, Timeout: 5 * time.Second}, Spool: b.hostSp,
		RefusalAuditsPerMinute: 60, Log: log, Build: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
}

func (b *bench) gen(server string) *ledgertest.Gen {
	g, ok := b.gens[server]
	if !ok {
		g = ledgertest.NewGen(server, b.seq)
		b.gens[server] = g
	}
	return g
}

// feed applies messages to the ledger and publishes them on the events
// subjects, as the shipper and the ledger's consumer would.
func (b *bench) feed(msgs ...ledger.Message) {
	b.t.Helper()
	if _, err := b.store.Apply(context.Background(), msgs); err != nil {
		b.t.Fatal(err)
	}
	for _, m := range msgs {
		if err := b.nc.Publish(m.Subject, m.Data); err != nil {
			b.t.Fatal(err)
		}
	}
	b.nc.Flush()
}

// snapshot writes a server's users and status snapshots into the state
// bucket in the shipper's format (docs/livestate.md).
func (b *bench) snapshot(server string, at time.Time, rx, tx uint64, users ...livestate.UserItem) {
	b.t.Helper()
	put := func(kind string, items []json.RawMessage) {
		snap := livestate.Snapshot{V: 1, ServerID: server, Kind: kind, Time: at.UTC().Format(time.RFC3339Nano),
			SnapshotID: ledgertest.UID(), Part: 1, Parts: 1, Count: len(items), OcservVersion: "1.1.6", Items: items}
		if snap.Items == nil {
			snap.Items = []json.RawMessage{}
		}
		v, _ := json.Marshal(snap)
		if _, err := b.kv.Put(context.Background(), server+"."+kind, v); err != nil {
			b.t.Fatal(err)
		}
	}
	var items []json.RawMessage
	for _, u := range users {
		raw, _ := json.Marshal(u)
		items = append(items, raw)
	}
	put(livestate.KindUsers, items)
	st, _ := json.Marshal(livestate.StatusItem{Status: "online", Online: true, ActiveSessions: int64(len(users)),
		BytesInSinceStatsReset: rx, BytesOutSinceReset: tx, UptimeS: 3600})
	put(livestate.KindStatus, []json.RawMessage{st})
}

// waitLive waits until cond holds on the live model.
func (b *bench) waitLive(what string, cond func([]ServerLive) bool) {
	b.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond(b.live.Servers()) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.t.Fatalf("live state: %s did not happen within 10s", what)
}

func online(l []ServerLive, server, user string) bool {
	for _, s := range l {
		if s.ServerID != server {
			continue
		}
		for _, o := range s.Sessions {
			if o.Username == user {
				return true
			}
		}
	}
	return false
}

// client is a browser-like HTTP client with a cookie jar; redirects are
// not followed so tests see them.
type client struct {
	t   *testing.T
	b   *bench
	hc  *http.Client
	jar *cookiejar.Jar
}

func (b *bench) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: b.t, b: b, jar: jar, hc: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request as a same-origin browser would (Sec-Fetch-Site).
func (c *client) do(method, path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, c.b.url+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (c *client) get(path string) (*http.Response, string) { return c.do("GET", path, nil, nil) }

var (
	reLoginToken = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	reCSRFMeta   = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)
)

// login logs in and returns the response of the form post.
func (c *client) login(user, pw string) (*http.Response, string) {
	c.t.Helper()
	_, page := c.get("/login")
	m := reLoginToken.FindStringSubmatch(page)
	if m == nil {
		c.t.Fatalf("no token in the login form:\n%s", page)
	}
	return c.do("POST", "/login", url.Values{"csrf": {m[1]}, "username": {user}, "password": {pw}, "next": {"/"}}, nil)
}

func (c *client) mustLogin(user, pw string) {
	c.t.Helper()
	resp, body := c.login(user, pw)
	if resp.StatusCode != http.StatusSeeOther {
		c.t.Fatalf("login %s: %d\n%s", user, resp.StatusCode, body)
	}
}

// csrf is the session's token, read from a page.
func (c *client) csrf() string {
	c.t.Helper()
	_, page := c.get("/")
	m := reCSRFMeta.FindStringSubmatch(page)
	if m == nil {
		c.t.Fatalf("no csrf token on the overview:\n%s", page)
	}
	return m[1]
}

// hostAudits reads vpn1's audit events from its spool.
func (b *bench) hostAudits() []cmdsvc.Audit {
	return spoolAudits(b.t, b.hostSp)
}

func spoolAudits(t *testing.T, sp *spool.Spool) []cmdsvc.Audit {
	t.Helper()
	var out []cmdsvc.Audit
	chunks, err := sp.Chunks()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		f, err := sp.OpenChunk(c)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			t.Fatal(err)
		}
		data, _ := io.ReadAll(f)
		f.Close()
		for _, line := range strings.Split(string(data), "\n") {
			var ev events.Event
			if json.Unmarshal([]byte(line), &ev) != nil || ev.Audit == nil {
				continue
			}
			var a cmdsvc.Audit
			json.Unmarshal(*ev.Audit, &a)
			out = append(out, a)
		}
	}
	return out
}

// consoleAudits reads the console's audit events from the stream.
func (b *bench) consoleAudits(want func([]cmdsvc.Audit) bool) []cmdsvc.Audit {
	b.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var out []cmdsvc.Audit
	for time.Now().Before(deadline) {
		out = nil
		st, err := b.js.Stream(context.Background(), "OCSERV_EVENTS")
		if err != nil {
			b.t.Fatal(err)
		}
		cons, err := st.OrderedConsumer(context.Background(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{"ocserv.events.console.audit"}})
		if err != nil {
			b.t.Fatal(err)
		}
		batch, err := cons.FetchNoWait(1000)
		if err == nil {
			for m := range batch.Messages() {
				var ev events.Event
				json.Unmarshal(m.Data(), &ev)
				if ev.Audit != nil {
					var a cmdsvc.Audit
					json.Unmarshal(*ev.Audit, &a)
					out = append(out, a)
				}
			}
		}
		if want(out) {
			return out
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.t.Fatalf("console audits: condition not met within 10s; have %+v", out)
	return nil
}

func countAudits(l []cmdsvc.Audit, action, phase, actor string) int {
	n := 0
	for _, a := range l {
		if a.Action == action && (phase == "" || a.Phase == phase) && (actor == "" || a.Actor == actor) {
			n++
		}
	}
	return n
}

// seedFleet gives the bench two servers with users online and some
// history: vpn1 (alice, bob online; alice's earlier sessions), vpn2 (carol).
func (b *bench) seedFleet() {
	b.t.Helper()
	now := time.Now().UTC()
	g1, g2 := b.gen("vpn1"), b.gen("vpn2")
	// alice's history: two finished sessions yesterday and today.
	for i, d := range []time.Duration{26 * time.Hour, 3 * time.Hour} {
		uid := ledgertest.UID()
		at := now.Add(-d)
		b.feed(g1.Connect(uid, ledgertest.Conn{User: "alice", IPReal: "198.51.100.7", VPN4: fmt.Sprintf("192.168.250.%d", 60+i), Worker: 900 + i, Device: "vpns0"}, at),
			g1.Disconnect(uid, 5_000_000*uint64(i+1), 40_000_000*uint64(i+1), 1800, at.Add(30*time.Minute)))
	}
	aliceUID, bobUID, carolUID := ledgertest.UID(), ledgertest.UID(), ledgertest.UID()
	b.feed(
		g1.Connect(aliceUID, ledgertest.Conn{User: "alice", IPReal: "198.51.100.7", VPN4: "192.168.250.50", Worker: 9114, Device: "vpns0"}, now.Add(-20*time.Minute)),
		g1.Connect(bobUID, ledgertest.Conn{User: "bob", Group: "staff", IPReal: "203.0.113.9", VPN4: "192.168.250.51", Worker: 9115, Device: "vpns1"}, now.Add(-10*time.Minute)),
		g2.Connect(carolUID, ledgertest.Conn{User: "carol", Group: "staff", IPReal: "203.0.113.20", VPN4: "192.168.251.10", Worker: 4000, Device: "vpns0"}, now.Add(-5*time.Minute)),
	)
	in, out := uint64(12345678), uint64(98765432)
	b.snapshot("vpn1", now, 1_000_000, 2_000_000,
		livestate.UserItem{ID: 9114, Username: "alice", State: "connected", Device: "vpns0", RemoteIP: "198.51.100.7", IPv4: "192.168.250.50",
			ConnectedAt: now.Add(-20 * time.Minute).Format(time.RFC3339), BytesIn: &in, BytesOut: &out, SessionUID: aliceUID},
		livestate.UserItem{ID: 9115, Username: "bob", Groupname: "staff", State: "connected", Device: "vpns1", RemoteIP: "203.0.113.9", IPv4: "192.168.250.51",
			ConnectedAt: now.Add(-10 * time.Minute).Format(time.RFC3339), BytesIn: &in, BytesOut: &out, SessionUID: bobUID})
	b.snapshot("vpn2", now, 0, 0,
		livestate.UserItem{ID: 4000, Username: "carol", Groupname: "staff", State: "connected", Device: "vpns0", RemoteIP: "203.0.113.20", IPv4: "192.168.251.10",
			ConnectedAt: now.Add(-5 * time.Minute).Format(time.RFC3339), SessionUID: carolUID})
	b.waitLive("the seeded fleet", func(l []ServerLive) bool {
		return online(l, "vpn1", "alice") && online(l, "vpn1", "bob") && online(l, "vpn2", "carol")
	})
}
