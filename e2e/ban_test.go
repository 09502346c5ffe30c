//go:build e2e

package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
)

// TestRouterBanAfterWrongPasswords runs a client behind a router, outside
// ocserv's local subnets (ocserv does not enforce bans on a neighbour),
// and checks that the hook records the routed login with the client's
// real address, that wrong passwords and the resulting ban never reach the
// hook, and that the ban really blocks the correct password.
func TestRouterBanAfterWrongPasswords(t *testing.T) {
	testbed.RequireRoot(t)
	// Each wrong password costs 10 ban points by default; 20 bans after
	// the second one.
	b := testbed.New(t, testbed.Options{Router: true, MaxBanScore: 20, BanResetTime: 300, BanTime: 300})

	c, err := b.Connect("carol", b.Password("carol"))
	if err != nil {
		t.Fatalf("routed login: %v", err)
	}
	evs := b.WaitEvents(testbed.Count(testbed.Match{Type: events.Connect, Username: "carol"}, 1), eventWait)
	ce := one(t, evs, testbed.Match{Type: events.Connect, Username: "carol"})
	if ce.Session.IPReal != c.RealIP() {
		t.Errorf("routed connect: session.ip_real = %q, want the client's %q", ce.Session.IPReal, c.RealIP())
	}
	if ce.Session.IPRealLocal != c.ServerAddr() {
		t.Errorf("routed connect: session.ip_real_local = %q, want the server address %q", ce.Session.IPRealLocal, c.ServerAddr())
	}
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}
	b.WaitEvents(testbed.Count(testbed.Match{Type: events.Disconnect, Username: "carol"}, 1), eventWait)

	last := c
	for i := 0; i < 3; i++ {
		w, err := b.Connect("carol", "wrong-password", testbed.ConnectOptions{From: last, Timeout: 20 * time.Second})
		if err == nil {
			t.Fatalf("login with a wrong password succeeded")
		}
		last = w
		if !w.Exited() {
			t.Fatalf("openconnect still running after a refused login: %v", err)
		}
	}
	deadline := time.Now().Add(eventWait)
	for {
		ips, err := b.OcctlBannedIPs()
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(ips, c.RealIP()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("occtl show ip bans lists %q, not the client %s, after 3 wrong passwords", ips, c.RealIP())
		}
		time.Sleep(100 * time.Millisecond)
	}
	banned, err := b.Connect("carol", b.Password("carol"), testbed.ConnectOptions{From: last, Timeout: 20 * time.Second})
	if err == nil {
		t.Fatalf("banned address logged in with the right password")
	}
	// A ban closes the connection before any authentication.
	if n := banned.PasswordPrompts(); n != 0 {
		t.Errorf("banned client was asked for a password %d times: the refusal was not the ban\n%s", n, banned.Output())
	}

	// Failed and banned logins never got as far as the connect script.
	evs, err = b.Events()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(testbed.Filter(evs, testbed.Match{Type: events.Connect})); n != 1 {
		t.Errorf("%d connect events, want only the first, successful one:\n%s", n, testbed.Summarize(evs))
	}
}
