//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocpasswd"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
	"github.com/ocserv-telemetry/ocserv-telemetry/userconf"
)

// fleet is a bed's ocserv with the real command service in front of it
// (occtl, ocpasswd and per-user config of that ocserv), on an embedded
// NATS server, and the real bin/ctl with an operator key the service
// trusts read-write.
type fleet struct {
	t      *testing.T
	b      *testbed.Bed
	srv    *server.Server
	ctlBin string
	ctlCfg string
}

func startFleet(t *testing.T, srv *server.Server, b *testbed.Bed) *fleet {
	t.Helper()
	hook, err := testbed.HookBinary()
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, b: b, srv: srv, ctlBin: filepath.Join(filepath.Dir(hook), "ctl")}
	dir := t.TempDir()
	seedFile := filepath.Join(dir, "operator.nk")
	f.ctlCfg = filepath.Join(dir, "ctl.env")
	os.WriteFile(f.ctlCfg, []byte("NATS_URL="+srv.ClientURL()+"\nOPERATOR_KEY="+seedFile+"\nCTL_TIMEOUT=20s\n"), 0o600)
	// ctl keygen makes the key and prints the trusted-file line.
	line, _ := f.ctlOK("keygen", "--name", "e2e-operator")
	trusted := filepath.Join(dir, "operators.keys")
	os.WriteFile(trusted, []byte(line), 0o644)

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sp, err := spool.Open(b.SpoolDir(), spool.Options{Fsync: true, LockWait: 2 * time.Second, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	tr, err := opauth.LoadTrusted(trusted)
	if err != nil {
		t.Fatal(err)
	}
	nonces, err := opauth.OpenNonceCache(filepath.Join(dir, "nonces"), opauth.NonceLimits{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nonces.Close() })
	xkp, _ := nkeys.CreateCurveKeys()
	ocpasswdBin, err := b.OcpasswdBinary()
	if err != nil {
		t.Fatal(err)
	}
	extra := cmdsvc.UserActions(&ocpasswd.Passwd{File: b.PasswdFile(), Binary: ocpasswdBin})
	if d := b.PerUserDir(); d != "" {
		extra = append(extra, cmdsvc.ConfigActions(&userconf.Store{UserDir: d, BackupDir: filepath.Join(dir, "backup")})...)
	}
	svc, err := cmdsvc.Start(cmdsvc.Options{
		NC: nc, Prefix: "ocserv", ServerID: b.ServerID(),
		Verifier: &opauth.Verifier{Trusted: tr, Nonces: nonces, MaxSkew: 30 * time.Second, MaxValidity: 5 * time.Minute},
		XKey:     xkp, Occtl: bedOcctl(t, b), Spool: sp, RefusalAuditsPerMinute: 60,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Build: "e2e", Extra: extra,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	return f
}

// ctl runs bin/ctl without a terminal and returns stdout, stderr and the
// exit code.
func (f *fleet) ctl(stdin string, args ...string) (string, string, int) {
	f.t.Helper()
	return (&ctlRun{t: f.t, bin: f.ctlBin, cfg: f.ctlCfg}).input(stdin, args...)
}

func (f *fleet) ctlOK(args ...string) (string, string) {
	f.t.Helper()
	out, errs, code := f.ctl("", args...)
	if code != 0 {
		f.t.Fatalf("ctl %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errs)
	}
	return out, errs
}

type gathered struct {
	Servers []struct {
		ServerID string             `json:"server_id"`
		OK       bool               `json:"ok"`
		Result   json.RawMessage    `json:"result"`
		Error    *cmdsvc.ReplyError `json:"error"`
	} `json:"servers"`
}

func (f *fleet) users() []ocserv.User {
	f.t.Helper()
	out, _ := f.ctlOK("users", "--all", "--json")
	var g gathered
	if err := json.Unmarshal([]byte(out), &g); err != nil || len(g.Servers) != 1 || !g.Servers[0].OK {
		f.t.Fatalf("ctl users --json: %v\n%s", err, out)
	}
	var us []ocserv.User
	if err := json.Unmarshal(g.Servers[0].Result, &us); err != nil {
		f.t.Fatal(err)
	}
	return us
}

func hasUser(us []ocserv.User, name string) bool {
	return slices.ContainsFunc(us, func(u ocserv.User) bool { return u.Username == name })
}

// ctl users lists real clients; ctl kick ends a session and the client's
// cookie reconnect (and any fresh login) is refused by the hook until ctl
// unkick; ctl user add lets a new user log in; a per-user route set with
// ctl config applies at that user's next login, and an invalid value is
// refused before anything is written. The audit events reach the stream
// through the real shipper and ctl tail shows them.
func TestCtlCommandsOnLiveServer(t *testing.T) {
	testbed.RequireRoot(t)
	srv := natstest.Run(t)
	b := testbed.New(t, testbed.Options{PerUserDir: true, AgentEnv: []string{"NATS_URL=" + srv.ClientURL()}})
	f := startFleet(t, srv, b)
	startShipper(t, b)

	alice, err := b.Connect("alice", b.Password("alice"))
	if err != nil {
		t.Fatal(err)
	}
	bob, err := b.Connect("bob", b.Password("bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Disconnect()

	// servers and users.
	out, _ := f.ctlOK("servers")
	if !strings.Contains(out, b.ServerID()) {
		t.Fatalf("ctl servers:\n%s", out)
	}
	us := f.users()
	for _, c := range []*testbed.Client{alice, bob} {
		i := slices.IndexFunc(us, func(u ocserv.User) bool { return u.Username == c.User() })
		if i < 0 || us[i].RemoteIP.String() != c.RealIP() || us[i].IPv4.String() != c.TunnelIP() {
			t.Fatalf("ctl users does not show %s from %s with %s: %+v", c.User(), c.RealIP(), c.TunnelIP(), us)
		}
	}
	out, _ = f.ctlOK("users", "--server", b.ServerID())
	if !strings.Contains(out, "alice") || !strings.Contains(out, "bob") || !strings.Contains(out, "REMOTE IP") {
		t.Errorf("ctl users table:\n%s", out)
	}

	// Without a terminal, a write needs --force.
	if _, errs, code := f.ctl("", "kick", "alice", "--server", b.ServerID()); code != 2 || !strings.Contains(errs, "--force") {
		t.Fatalf("kick without --force: exit %d, %s", code, errs)
	}

	// kick: the session ends and does not come back.
	kickedAt := time.Now()
	loginsAtKick := alice.Logins()
	f.ctlOK("kick", "alice", "--server", b.ServerID(), "--reason", "e2e kick", "--force")
	deadline := time.Now().Add(eventWait)
	for hasUser(f.users(), "alice") {
		if time.Now().After(deadline) {
			t.Fatal("alice still connected after ctl kick")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !alice.Exited() {
		// The client's cookie reconnect (SIGUSR2), refused by the hook.
		if err := alice.Roam(); err == nil {
			t.Fatal("the kicked client resumed its session with its cookie")
		}
	}
	if c, err := b.Connect("alice", b.Password("alice"), testbed.ConnectOptions{Timeout: 20 * time.Second}); err == nil {
		c.Disconnect()
		t.Fatal("a kicked user logged in with the password")
	}
	evs := b.WaitEvents(func(evs []events.Event) bool {
		for _, e := range evs {
			if e.Type == events.Connect && e.Session != nil && e.Session.Username == "alice" && e.Admitted != nil && !*e.Admitted {
				return true
			}
		}
		return false
	}, eventWait)
	for _, e := range testbed.Filter(evs, testbed.Match{Type: events.Connect, Username: "alice"}) {
		tm, _ := time.Parse(time.RFC3339Nano, e.Time)
		if tm.After(kickedAt) && (e.Admitted == nil || *e.Admitted || !strings.HasPrefix(e.Refusal, "kicked by an operator: e2e kick")) {
			t.Errorf("connect of alice after the kick: admitted=%v refusal=%q", e.Admitted, e.Refusal)
		}
	}
	// Once the client has ended, its output is final: no tunnel came up
	// after the kick, and ocserv lists no session of alice.
	alice.Disconnect()
	if n := alice.Logins(); n != loginsAtKick {
		t.Fatalf("alice's client established %d tunnels after the kick", n-loginsAtKick)
	}
	if hasUser(f.users(), "alice") {
		t.Fatal("alice came back after the kick")
	}

	// unkick lets her back.
	f.ctlOK("unkick", "alice", "--server", b.ServerID(), "--force")
	again, err := b.Connect("alice", b.Password("alice"))
	if err != nil {
		t.Fatalf("login after ctl unkick: %v", err)
	}
	again.Disconnect()

	// The kick's audit events went through the spool and the shipper:
	// ctl tail finds them in the stream.
	out, _ = f.ctlOK("tail", "--server", b.ServerID(), "--type", "audit", "--user", "alice", "--since", "10m", "-n", "3", "--json")
	var phases []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e events.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Audit == nil {
			t.Fatalf("ctl tail line %q: %v", l, err)
		}
		var a cmdsvc.Audit
		json.Unmarshal(*e.Audit, &a)
		phases = append(phases, a.Action+"/"+a.Phase)
	}
	if want := []string{"kick/accepted", "kick/done", "unkick/accepted"}; !slices.Equal(phases, want) {
		t.Errorf("ctl tail audit events %q, want %q", phases, want)
	}

	// user add: the password travels sealed; the new user logs in.
	if _, errs, code := f.ctl("dave-secret-4\n", "user", "add", "dave", "--group", "staff", "--password-stdin", "--force", "--server", b.ServerID()); code != 0 {
		t.Fatalf("ctl user add: exit %d: %s", code, errs)
	}
	dave, err := b.Connect("dave", "dave-secret-4")
	if err != nil {
		t.Fatalf("login of the user added with ctl: %v", err)
	}
	routesOf := func(n int) []string {
		evs := b.WaitEvents(testbed.Count(testbed.Match{Type: events.Connect, Username: "dave"}, n), eventWait)
		cs := testbed.Filter(evs, testbed.Match{Type: events.Connect, Username: "dave"})
		return cs[n-1].Policy.Routes
	}
	if r := routesOf(1); slices.Contains(r, "10.30.0.0/16") {
		t.Fatalf("dave has the route before it was set: %q", r)
	}

	// A per-user route applies at the next login, not to the session up.
	f.ctlOK("config", "set", "--user", "dave", "route", "10.30.0.0/255.255.0.0", "--force", "--server", b.ServerID())
	file := filepath.Join(b.PerUserDir(), "dave")
	before, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// An invalid value is refused before anything is written.
	if out, errs, code := f.ctl("", "config", "set", "--user", "dave", "route", "10.30.0.0/33", "--force", "--server", b.ServerID()); code != 1 || !strings.Contains(out+errs, "invalid_argument") {
		t.Fatalf("invalid route: exit %d: %s", code, errs)
	}
	if _, errs, code := f.ctl("", "config", "set", "--user", "dave", "shell-command", "x", "--force", "--server", b.ServerID()); code != 1 {
		t.Fatalf("key outside the whitelist: exit %d: %s", code, errs)
	}
	after, _ := os.ReadFile(file)
	if !bytes.Equal(before, after) {
		t.Fatalf("a refused change touched the file:\n%s\n---\n%s", before, after)
	}
	dave.Disconnect()
	dave, err = b.Connect("dave", "dave-secret-4")
	if err != nil {
		t.Fatalf("dave's next login: %v", err)
	}
	defer dave.Disconnect()
	if r := routesOf(2); !slices.Contains(r, "10.30.0.0/16") {
		t.Errorf("dave's next login has routes %q, want 10.30.0.0/16 among them", r)
	}
}

// unban lifts a real ban: wrong passwords from a client behind a router
// (ocserv does not enforce bans on local-subnet clients) get its address
// banned; ctl bans shows it; ctl unban lifts it and the right password
// logs in from the same address.
func TestCtlUnbanLiftsRealBan(t *testing.T) {
	testbed.RequireRoot(t)
	srv := natstest.Run(t)
	b := testbed.New(t, testbed.Options{Router: true, MaxBanScore: 20, BanResetTime: 300, BanTime: 300})
	f := startFleet(t, srv, b)

	c, err := b.Connect("carol", b.Password("carol"))
	if err != nil {
		t.Fatal(err)
	}
	c.Disconnect()
	last := c
	for i := 0; i < 3; i++ {
		w, err := b.Connect("carol", "wrong-password", testbed.ConnectOptions{From: last, Timeout: 20 * time.Second})
		if err == nil {
			t.Fatal("login with a wrong password succeeded")
		}
		last = w
	}
	ip := c.RealIP()
	deadline := time.Now().Add(eventWait)
	for {
		out, _ := f.ctlOK("bans", "--server", b.ServerID())
		if strings.Contains(out, ip) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ctl bans does not list %s:\n%s", ip, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	banned, err := b.Connect("carol", b.Password("carol"), testbed.ConnectOptions{From: last, Timeout: 20 * time.Second})
	if err == nil {
		t.Fatal("the banned address logged in: the test is not testing a ban")
	}
	f.ctlOK("unban", ip, "--server", b.ServerID(), "--force")
	ok, err := b.Connect("carol", b.Password("carol"), testbed.ConnectOptions{From: banned, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatalf("login after ctl unban: %v", err)
	}
	ok.Disconnect()
	if ips, _ := b.OcctlBannedIPs(); slices.Contains(ips, ip) {
		t.Errorf("occtl still lists %s as banned", ip)
	}
}

// ctl terminate on the version's real occtl: from 1.4.2 (1.5.0 here) it
// ends the session and invalidates its cookie, so the client's cookie
// reconnect is refused by ocserv itself (no kick list involved) while a
// fresh login with the password still works; before (1.1.6, 1.3.0) the
// command service refuses it as unsupported, naming the version, and the
// session stays up.
func TestCtlTerminate(t *testing.T) {
	testbed.RequireRoot(t)
	srv := natstest.Run(t)
	b := testbed.New(t, testbed.Options{})
	f := startFleet(t, srv, b)
	bob, err := b.Connect("bob", b.Password("bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Disconnect()

	out, errs, code := f.ctl("", "terminate", "--user", "bob", "--server", b.ServerID(), "--force")
	if !b.Version().HasTerminate() {
		if code == 0 || !strings.Contains(out+errs, "unsupported") || !strings.Contains(out+errs, b.Version().String()) {
			t.Fatalf("terminate on ocserv %s: exit %d, want a refusal naming the version:\n%s\n%s", b.Version(), code, out, errs)
		}
		if !hasUser(f.users(), "bob") {
			t.Fatalf("the refused terminate ended bob's session")
		}
		return
	}
	if code != 0 {
		t.Fatalf("terminate on ocserv %s: exit %d\n%s\n%s", b.Version(), code, out, errs)
	}
	deadline := time.Now().Add(eventWait)
	for hasUser(f.users(), "bob") {
		if time.Now().After(deadline) {
			t.Fatal("bob still connected after ctl terminate")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !bob.Exited() {
		if err := bob.Roam(); err == nil {
			t.Fatal("the terminated client resumed its session with its cookie")
		}
	}
	// ocserv refused the cookie, not the hook: no refused connect event.
	evs, err := b.Events()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range testbed.Filter(evs, testbed.Match{Type: events.Connect, Username: "bob"}) {
		if e.Admitted != nil && !*e.Admitted {
			t.Errorf("the hook refused bob (%q); the cookie should have been refused by ocserv", e.Refusal)
		}
	}
	again, err := b.Connect("bob", b.Password("bob"))
	if err != nil {
		t.Fatalf("a fresh login after terminate: %v", err)
	}
	again.Disconnect()
}
