//go:build e2e

package e2e

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
)

// bedOcctl returns an ocserv.Occtl for the bed: its version's occtl runs
// inside the server namespace (it reads the tun devices' counters through
// netlink) and the bed's root, against the bed's occtl socket.
func bedOcctl(t *testing.T, b *testbed.Bed) *ocserv.Occtl {
	t.Helper()
	return &ocserv.Occtl{
		Socket:   b.OcctlSocket(),
		Launcher: b.Launcher(),
		Timeout:  15 * time.Second,
		// The time zone occtl prints local times in: the bed root's.
		Location: b.Location(),
		OnNote:   func(cmd string, n ocserv.Note) { t.Logf("%s: %v", cmd, n) },
	}
}

// TestOcctlParserOnLiveServer reads every show command from a real ocserv
// 1.1.x with two real openconnect clients connected and checks what the
// parser returns against what the clients themselves report, the testbed's
// independent reading, and ocserv's pid file.
func TestOcctlParserOnLiveServer(t *testing.T) {
	testbed.RequireRoot(t)
	// A low ban score makes one wrong password visible in show ip bans.
	b := testbed.New(t, testbed.Options{MaxBanScore: 10, BanResetTime: 300, BanTime: 300})
	o := bedOcctl(t, b)
	ctx := context.Background()

	before := time.Now()
	clients := map[string]*testbed.Client{}
	for _, u := range []string{"alice", "bob"} {
		c, err := b.Connect(u, b.Password(u))
		if err != nil {
			t.Fatal(err)
		}
		clients[u] = c
	}

	v, err := o.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ov, err := o.OcservVersion(ctx, "")
	if err != nil || ov != v {
		t.Errorf("ocserv --version %v (%v), occtl --version %v: the pair must match", ov, err, v)
	}
	t.Logf("ocserv/occtl %v", v)

	users, err := o.ShowUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 {
		t.Fatalf("show users: %d entries, want 2: %+v", len(users), users)
	}
	byName := map[string]ocserv.User{}
	for _, u := range users {
		byName[u.Username] = u
	}
	for name, c := range clients {
		u, ok := byName[name]
		if !ok {
			t.Fatalf("show users has no %s: %+v", name, users)
		}
		if u.RemoteIP != netip.MustParseAddr(c.RealIP()) {
			t.Errorf("%s: Remote IP %v, client's address %s", name, u.RemoteIP, c.RealIP())
		}
		if u.IPv4 != netip.MustParseAddr(c.TunnelIP()) {
			t.Errorf("%s: IPv4 %v, client configured %s", name, u.IPv4, c.TunnelIP())
		}
		if u.PTPIPv4 != netip.MustParseAddr(testbed.TunnelServerIP) {
			t.Errorf("%s: P-t-P IPv4 %v, want %s", name, u.PTPIPv4, testbed.TunnelServerIP)
		}
		if u.LocalDeviceIP != netip.MustParseAddr(c.ServerAddr()) {
			t.Errorf("%s: Local Device IP %v, client connected to %s", name, u.LocalDeviceIP, c.ServerAddr())
		}
		if u.Groupname != b.Group(name) || u.State != "connected" || !strings.HasPrefix(u.Device, "vpns") || u.VHost != "default" {
			t.Errorf("%s: group %q state %q device %q vhost %q", name, u.Groupname, u.State, u.Device, u.VHost)
		}
		if !u.HasCounters || u.Session == "" || !strings.HasPrefix(u.FullSession, u.Session) || u.MTU <= 0 || u.DPD <= 0 {
			t.Errorf("%s: counters %v session %q/%q MTU %d DPD %s", name, u.HasCounters, u.Session, u.FullSession, u.MTU, u.DPD)
		}
		if !u.IPv6.IsValid() || !netip.MustParsePrefix(testbed.TunnelNetwork6).Contains(u.IPv6) {
			t.Errorf("%s: IPv6 %v outside %s", name, u.IPv6, testbed.TunnelNetwork6)
		}
		if len(u.Routes) != 1 || u.Routes[0] != testbed.PushedRoute || len(u.DNS) == 0 || u.DNS[0] != testbed.PushedDNS {
			t.Errorf("%s: routes %v DNS %v", name, u.Routes, u.DNS)
		}
		// Coarse times are the minute the session started in: within the
		// minute before the test started and now.
		if u.ConnectedAt.Before(before.Add(-time.Minute)) || u.ConnectedAt.After(time.Now()) {
			t.Errorf("%s: connected at %v (coarse %v), test started %v", name, u.ConnectedAt, u.ConnectedAtCoarse, before)
		}
		if u.ConnectedAtCoarse == v.HasRawConnectedAt() {
			t.Errorf("%s: ConnectedAtCoarse %v on %v", name, u.ConnectedAtCoarse, v)
		}
	}

	// The testbed reads the same output with its own small parser.
	tb, err := b.OcctlUsers()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range tb {
		u := byName[x.Username]
		if u.ID != x.ID || u.Device != x.Device || u.IPv4.String() != x.IPv4 || u.IPv6.String() != x.IPv6 {
			t.Errorf("testbed reads %+v, ocserv package %+v", x, u)
		}
	}

	st, err := o.ShowStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pidText, err := os.ReadFile(filepath.Join(b.Dir(), "ocserv.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if !st.Online || st.ServerPID != pid || st.SecModPID <= 0 || st.SecModPID == pid || st.ActiveSessions != 2 {
		t.Errorf("show status: %+v; pid file says %d", st, pid)
	}
	if st.UpSince.After(time.Now()) || st.UpSince.Before(before.Add(-5*time.Minute)) {
		t.Errorf("show status: up since %v", st.UpSince)
	}

	alice := byName["alice"]
	got, found, err := o.ShowID(ctx, alice.ID)
	if err != nil || !found || got.Username != "alice" || got.Device != alice.Device || got.IPv4 != alice.IPv4 {
		t.Errorf("show id %d: %+v found=%v %v", alice.ID, got, found, err)
	}
	us, found, err := o.ShowUser(ctx, "bob")
	if err != nil || !found || len(us) != 1 || us[0].ID != byName["bob"].ID {
		t.Errorf("show user bob: %+v found=%v %v", us, found, err)
	}
	us, found, err = o.ShowUser(ctx, "nosuch")
	if err != nil || found || len(us) != 0 {
		t.Errorf("show user nosuch: %+v found=%v %v; want not found", us, found, err)
	}

	// show sessions all is invalid JSON on 1.1.6 (trailing commas).
	sessions, err := o.ShowSessions(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	for name, u := range byName {
		var s *ocserv.Session
		for i := range sessions {
			if sessions[i].Session == u.Session {
				s = &sessions[i]
			}
		}
		if s == nil {
			t.Errorf("show sessions all: no session %q of %s in %+v", u.Session, name, sessions)
			continue
		}
		if s.Username != name || s.FullSession != u.FullSession || s.RemoteIP != u.RemoteIP || !s.InUse {
			t.Errorf("%s's session: %+v", name, s)
		}
		one, found, err := o.ShowSession(ctx, u.Session)
		if err != nil || !found || one.FullSession != u.FullSession {
			t.Errorf("show session %s: %+v found=%v %v", u.Session, one, found, err)
		}
	}
	valid, err := o.ShowSessions(ctx, true)
	if err != nil || len(valid) < 2 {
		t.Errorf("show sessions valid: %d, %v", len(valid), err)
	}

	// show iroutes is one object for all users on 1.1.6.
	ir, err := o.ShowIRoutes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ir) != 2 {
		t.Fatalf("show iroutes: %d entries, want 2: %+v", len(ir), ir)
	}
	for _, r := range ir {
		u := byName[r.Username]
		if r.ID != u.ID || r.Device != u.Device || r.IP != u.IPv4 || len(r.IRoutes) != 0 {
			t.Errorf("iroute %+v does not match user %+v", r, u)
		}
	}

	bans, err := o.ShowIPBans(ctx)
	if err != nil || len(bans) != 0 {
		t.Errorf("show ip bans before any failure: %+v %v", bans, err)
	}

	// One wrong password from a third client: its address gets points
	// (10 for a wrong password, 1 per login, so the two users' addresses are
	// listed too) and, with max-ban-score 10, a ban entry (1.1.6 lists it
	// even though it does not enforce a ban against a neighbour).
	w, err := b.Connect("carol", "wrong-password", testbed.ConnectOptions{Timeout: 20 * time.Second})
	if err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	wrongIP := netip.MustParseAddr(w.RealIP())
	deadline := time.Now().Add(eventWait)
	for {
		points, err := o.ShowIPBanPoints(ctx)
		if err != nil {
			t.Fatal(err)
		}
		score := map[netip.Addr]int64{}
		for _, p := range points {
			score[p.IP] = p.Score
		}
		if score[wrongIP] >= 10 {
			for name, c := range clients {
				if score[netip.MustParseAddr(c.RealIP())] < 1 {
					t.Errorf("show ip ban points %+v: no points for %s's login from %s", points, name, c.RealIP())
				}
			}
			if len(points) != 3 {
				t.Errorf("show ip ban points: %d entries, want 3: %+v", len(points), points)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("show ip ban points %+v: want %v with ≥ 10 points", points, wrongIP)
		}
		time.Sleep(100 * time.Millisecond)
	}
	bans, err = o.ShowIPBans(ctx)
	if err != nil || len(bans) != 1 || bans[0].IP != wrongIP || bans[0].Since.Before(before) {
		t.Errorf("show ip bans: %+v %v; want %v", bans, err, wrongIP)
	}
	if _, err := o.UnbanIP(ctx, wrongIP); err != nil {
		t.Errorf("unban ip %v: %v", wrongIP, err)
	}
	// ocserv keeps an unbanned entry, score and expiry zeroed, until
	// ban-reset-time passes (300s here): unbanning it again finds it.
	rep, err := o.UnbanIP(ctx, wrongIP)
	if err != nil || !strings.Contains(string(rep.Stdout), "was unbanned") {
		t.Errorf("second unban ip %v: %q %v; want found and unbanned again", wrongIP, rep.Stdout, err)
	}
	never := netip.MustParseAddr("192.0.2.1")
	if _, err := o.UnbanIP(ctx, never); !errors.Is(err, ocserv.ErrNotFound) {
		t.Errorf("unban ip %v (never seen): %v, want ErrNotFound", never, err)
	} else {
		t.Logf("as expected: %v", err)
	}
	if bans, err = o.ShowIPBans(ctx); err != nil || len(bans) != 0 {
		t.Errorf("show ip bans after unban: %+v %v", bans, err)
	}

	// Plain-text commands and their exits.
	if _, err := o.DisconnectUser(ctx, "nosuch"); !errors.Is(err, ocserv.ErrNotFound) {
		t.Errorf("disconnect user nosuch: %v, want ErrNotFound", err)
	} else {
		t.Logf("as expected: %v", err)
	}
	if _, err := o.TerminateUser(ctx, "alice"); v.HasTerminate() != (err == nil) || (!v.HasTerminate() && !errors.Is(err, ocserv.ErrUnsupported)) {
		t.Errorf("terminate user on %v: %v", v, err)
	}
	if _, err := o.Reload(ctx); err != nil {
		t.Errorf("reload: %v", err)
	}

	// Disconnecting bob's worker by ID ends that ID (his client comes back
	// with its cookie under a new one): show id then reports not found.
	bob := byName["bob"]
	rep, err = o.DisconnectID(ctx, bob.ID)
	if err != nil {
		t.Fatalf("disconnect id %d: %v (%+v)", bob.ID, err, rep)
	}
	deadline = time.Now().Add(eventWait)
	for {
		_, found, err := o.ShowID(ctx, bob.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("show id %d still found after disconnect", bob.ID)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
