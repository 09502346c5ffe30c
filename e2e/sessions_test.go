//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
)

// statsSlack bounds how far a disconnect event's byte counters may exceed
// occtl's last quiet reading: between that reading and the end of the
// worker the test sends nothing, but the kernels still exchange a few
// small IPv6 control packets (48-byte MLD/ND seen on 1.1.6) over the
// tunnel. It is far below the traffic each test sends, so stale, swapped
// or zero counters cannot pass.
const statsSlack = 1024

// eventWait bounds every wait for the hook's events: ocserv runs the
// scripts within milliseconds of the login or logout they report.
const eventWait = 15 * time.Second

// one returns the single event matching m, failing the test when there
// are none or several.
func one(t *testing.T, evs []events.Event, m testbed.Match) events.Event {
	t.Helper()
	got := testbed.Filter(evs, m)
	if len(got) != 1 {
		t.Fatalf("want exactly one %s event for user %q id %d, got %d:\n%s", m.Type, m.Username, m.ID, len(got), testbed.Summarize(evs))
	}
	return got[0]
}

// checkSession compares an event's session with what occtl and the client
// itself report for the same session.
func checkSession(t *testing.T, b *testbed.Bed, e events.Event, c *testbed.Client, o testbed.OcctlUser) {
	t.Helper()
	where := fmt.Sprintf("%s event seq %d of %s", e.Type, e.Seq, c.User())
	if e.V != events.SchemaVersion {
		t.Errorf("%s: v = %d, want %d", where, e.V, events.SchemaVersion)
	}
	if e.ServerID != b.ServerID() {
		t.Errorf("%s: server_id = %q, want %q", where, e.ServerID, b.ServerID())
	}
	if e.EventID == "" || e.SessionUID == "" {
		t.Errorf("%s: event_id %q / session_uid %q must be set", where, e.EventID, e.SessionUID)
	}
	s := e.Session
	if s == nil {
		t.Fatalf("%s: no session object", where)
	}
	checks := []struct{ field, got, want string }{
		{"session.username", s.Username, c.User()},
		{"session.groupname", s.Groupname, b.Group(c.User())},
		{"session.device", s.Device, o.Device},
		{"session.ip_real", s.IPReal, c.RealIP()},
		{"session.ip_real (occtl Remote IP)", s.IPReal, o.RemoteIP},
		{"session.ip_remote", s.IPRemote, c.TunnelIP()},
		{"session.ip_remote (occtl IPv4)", s.IPRemote, o.IPv4},
		{"session.ip_local", s.IPLocal, testbed.TunnelServerIP},
		{"session.ipv6_remote (occtl IPv6)", s.IPv6Remote, o.IPv6},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s: %s = %q, want %q", where, ck.field, ck.got, ck.want)
		}
	}
	if s.ID != o.ID {
		t.Errorf("%s: session.id = %d, want occtl's %d", where, s.ID, o.ID)
	}
	if !strings.HasPrefix(s.Device, "vpns") {
		t.Errorf("%s: session.device = %q, want a vpns* device", where, s.Device)
	}
}

// checkStats compares a disconnect event's counters with occtl's last
// quiet reading of the same worker and with the traffic the test sent.
func checkStats(t *testing.T, e events.Event, last testbed.OcctlUser, sent uint64) {
	t.Helper()
	if e.Stats == nil {
		t.Fatalf("disconnect of %d has no stats", last.ID)
	}
	in, out := e.Stats.BytesIn, e.Stats.BytesOut
	if in < last.RX || in > last.RX+statsSlack {
		t.Errorf("disconnect of %d: stats.bytes_in = %d, occtl RX before disconnect was %d (allowed %d..%d)", last.ID, in, last.RX, last.RX, last.RX+statsSlack)
	}
	if out < last.TX || out > last.TX+statsSlack {
		t.Errorf("disconnect of %d: stats.bytes_out = %d, occtl TX before disconnect was %d (allowed %d..%d)", last.ID, out, last.TX, last.TX, last.TX+statsSlack)
	}
	// The test's stream goes client → server, so bytes_in carries it.
	if in < sent {
		t.Errorf("disconnect of %d: stats.bytes_in = %d, but the client sent %d through the tunnel", last.ID, in, sent)
	}
	if out >= in {
		t.Errorf("disconnect of %d: stats.bytes_out %d >= bytes_in %d for an upload-only session: in/out swapped?", last.ID, out, in)
	}
	if e.Stats.DurationS == nil {
		t.Errorf("disconnect of %d: stats.duration_s missing (ocserv knew the connect time)", last.ID)
	}
}

// passwordLogins counts password authentications in ocserv's log; sec-mod
// logs this line (at -d 1) for each password check, never for a cookie.
func passwordLogins(b *testbed.Bed) int {
	return strings.Count(b.OcservLog(), "using 'plain' authentication to authenticate user")
}

// TestSessionsRoamAndDisconnect logs three users in through real
// openconnect clients, roams one with its cookie, and logs everybody out,
// checking every connect, host-update and disconnect event the hook wrote
// against occtl and the clients.
func TestSessionsRoamAndDisconnect(t *testing.T) {
	testbed.RequireRoot(t)
	b := testbed.New(t, testbed.Options{VPNCScript: true})

	users := []string{"alice", "bob", "carol"}
	// Different upload sizes per user, so a hook that mixed up sessions
	// would report another user's counters.
	upload := map[string]int{"alice": 96 << 10, "bob": 256 << 10, "carol": 160 << 10}
	clients := map[string]*testbed.Client{}
	for _, u := range users {
		c, err := b.Connect(u, b.Password(u))
		if err != nil {
			t.Fatal(err)
		}
		clients[u] = c
	}
	if n := passwordLogins(b); n != len(users) {
		t.Fatalf("ocserv logged %d password logins for %d users", n, len(users))
	}

	occ := map[string]testbed.OcctlUser{}
	list, err := b.OcctlUsers()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range list {
		occ[o.Username] = o
	}
	if len(occ) != len(users) {
		t.Fatalf("occtl show users lists %d users, want %d: %+v", len(occ), len(users), list)
	}

	// Connect and host-update (ocserv 1.1.6 fires host-update-script once
	// per session, right after connect) for each user.
	var preds []func([]events.Event) bool
	for _, u := range users {
		preds = append(preds,
			testbed.Count(testbed.Match{Type: events.Connect, Username: u}, 1),
			testbed.Count(testbed.Match{Type: events.HostUpdate, Username: u}, 1))
	}
	evs := b.WaitEvents(testbed.All(preds...), eventWait)
	uid := map[int]string{} // session.id → session_uid of its connect
	for _, u := range users {
		o := occ[u]
		ce := one(t, evs, testbed.Match{Type: events.Connect, Username: u})
		checkSession(t, b, ce, clients[u], o)
		if ce.Admitted == nil || !*ce.Admitted {
			t.Errorf("connect of %s: admitted = %v, want true (the login succeeded)", u, ce.Admitted)
		}
		he := one(t, evs, testbed.Match{Type: events.HostUpdate, ID: o.ID})
		checkSession(t, b, he, clients[u], o)
		if he.SessionUID != ce.SessionUID {
			t.Errorf("host-update of %s: session_uid %q differs from its connect's %q", u, he.SessionUID, ce.SessionUID)
		}
		if he.Seq <= ce.Seq {
			t.Errorf("host-update of %s: seq %d not after its connect's %d", u, he.Seq, ce.Seq)
		}
		uid[o.ID] = ce.SessionUID
	}

	// ICMP through a tunnel reaches ocserv's end of it (the vpnc-script
	// configured the client's routes).
	if err := clients["carol"].Ping(3, 56); err != nil {
		t.Fatalf("ping through carol's tunnel: %v", err)
	}

	// Roam alice: openconnect reconnects with its cookie. ocserv ends the
	// old worker (disconnect event with that worker's ID) and starts a new
	// one (connect event with a new ID) without asking for a password.
	alice := clients["alice"]
	if err := alice.SendTraffic(upload["alice"]); err != nil {
		t.Fatal(err)
	}
	oldID := occ["alice"].ID
	beforeRoam, err := b.QuietCounters(oldID, 300*time.Millisecond, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Roam(); err != nil {
		t.Fatal(err)
	}
	evs = b.WaitEvents(testbed.All(
		testbed.Count(testbed.Match{Type: events.Disconnect, ID: oldID}, 1),
		testbed.Count(testbed.Match{Type: events.Connect, Username: "alice"}, 2),
	), eventWait)
	if n := passwordLogins(b); n != len(users) {
		t.Errorf("roaming alice cost a password login: ocserv logged %d password logins for %d users", n, len(users))
	}
	if n := alice.PasswordPrompts(); n != 1 {
		t.Errorf("openconnect was asked for a password %d times, want 1 (roaming reuses the cookie)", n)
	}
	de := one(t, evs, testbed.Match{Type: events.Disconnect, ID: oldID})
	checkSession(t, b, de, alice, beforeRoam)
	checkStats(t, de, beforeRoam, uint64(upload["alice"]))
	if de.SessionUID != uid[oldID] {
		t.Errorf("roam disconnect of alice: session_uid %q, its connect had %q", de.SessionUID, uid[oldID])
	}
	aliceNew, err := b.OcctlUsers()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range aliceNew {
		if o.Username == "alice" {
			occ["alice"] = o
		}
	}
	newID := occ["alice"].ID
	if newID == oldID {
		t.Fatalf("occtl still shows alice under worker %d after roaming", oldID)
	}
	var roamed []events.Event
	for _, e := range testbed.Filter(evs, testbed.Match{Type: events.Connect, Username: "alice"}) {
		if e.Session.ID != oldID {
			roamed = append(roamed, e)
		}
	}
	if len(roamed) != 1 {
		t.Fatalf("want one connect of alice after roaming, got %d:\n%s", len(roamed), testbed.Summarize(evs))
	}
	checkSession(t, b, roamed[0], alice, occ["alice"])
	if roamed[0].Session.ID != newID {
		t.Errorf("connect after roaming: session.id = %d, occtl shows alice as %d", roamed[0].Session.ID, newID)
	}
	if roamed[0].SessionUID == uid[oldID] {
		t.Errorf("connect after roaming reused session_uid %q of the ended worker %d", roamed[0].SessionUID, oldID)
	}
	uid[newID] = roamed[0].SessionUID

	// Everybody uploads, then logs out right after a quiet occtl reading;
	// each disconnect event must carry that worker's final counters.
	for _, u := range users {
		c := clients[u]
		o := occ[u]
		if err := c.SendTraffic(upload[u]); err != nil {
			t.Fatal(err)
		}
		last, err := b.QuietCounters(o.ID, 300*time.Millisecond, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Disconnect(); err != nil {
			t.Fatal(err)
		}
		evs = b.WaitEvents(testbed.Count(testbed.Match{Type: events.Disconnect, ID: o.ID}, 1), eventWait)
		de := one(t, evs, testbed.Match{Type: events.Disconnect, ID: o.ID})
		checkSession(t, b, de, c, last)
		checkStats(t, de, last, uint64(upload[u]))
		if de.SessionUID != uid[o.ID] {
			t.Errorf("disconnect of %s: session_uid %q, its connect had %q", u, de.SessionUID, uid[o.ID])
		}
	}

	left, err := b.OcctlUsers()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("occtl still lists sessions after every client logged out: %+v", left)
	}
	// Four sessions (three logins, one roam): exactly one connect,
	// host-update and disconnect each, nothing else from the hook.
	evs, err = b.Events()
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range events.HookTypes {
		if n := len(testbed.Filter(evs, testbed.Match{Type: typ})); n != 4 {
			t.Errorf("%d %s events, want 4:\n%s", n, typ, testbed.Summarize(evs))
		}
	}
	t.Logf("events:\n%s", testbed.Summarize(evs))
	seen := map[uint64]bool{}
	for _, e := range evs {
		if e.Seq != 0 && seen[e.Seq] {
			t.Errorf("seq %d appears twice in the spool", e.Seq)
		}
		seen[e.Seq] = true
	}
}
