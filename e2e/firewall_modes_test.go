//go:build e2e

package e2e

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/firewall"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
)

// The three firewall modes (docs/firewall.md) with a real ocserv 1.1.6 and
// real openconnect clients whose traffic goes through the tunnel to a
// target namespace behind the server:
//
//	(a) nothing restricted: the wrapper is the connect script;
//	(b) restrict-user-to-routes with Debian's ocserv-fw in charge;
//	(c) the hook bind-mounted over /usr/bin/ocserv-fw (private mount
//	    namespace of the bed's ocserv only), applying the rules itself.

const dialWait = 3 * time.Second

// hostClean fails when the host namespace holds rules of ours or of
// ocserv-fw, or the host's /usr/bin/ocserv-fw was replaced: everything the
// tests do must stay in their namespaces.
func hostClean(t *testing.T) {
	t.Helper()
	for _, argv := range [][]string{{"iptables-save", "-t", "filter"}, {"ip6tables-save", "-t", "filter"}, {"nft", "list", "tables"}} {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			t.Errorf("%v: %v: %s", argv, err, out)
			continue
		}
		for _, s := range []string{firewall.ChainPrefix, firewall.RouteChainPrefix, firewall.TablePrefix, firewall.LegacyTablePrefix, firewall.Comment} {
			if strings.Contains(string(out), s) {
				t.Errorf("the host namespace holds %q:\n%s", s, out)
			}
		}
		if testbed.HasOcservFw(string(out)) {
			t.Errorf("the host namespace holds ocserv-fw's rules:\n%s", out)
		}
	}
	if err := testbed.CheckHostFwScript(); err != nil {
		t.Error(err)
	}
}

// newModeBed starts a bed and registers the host check to run after the
// bed's own cleanup (cleanups run last-in first-out).
func newModeBed(t *testing.T, o testbed.Options) *testbed.Bed {
	t.Helper()
	testbed.RequireRoot(t)
	t.Cleanup(func() { hostClean(t) })
	o.Target, o.VPNCScript = true, true
	return testbed.New(t, o)
}

// tunnelEverything routes the no-route and the outside network into the
// client's tunnel, so a restricted user really tries them.
func tunnelEverything(t *testing.T, c *testbed.Client) {
	t.Helper()
	// vpnc-script adds the pushed route a moment after the address the
	// bed waits for; wait for it too (bounded), so a dial cannot race it.
	dev, err := c.TunDevice()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := exec.Command("ip", "-n", c.NS(), "route", "show", "10.10.10.0/24").CombinedOutput()
		if err == nil && strings.Contains(string(out), "dev "+dev) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the pushed route 10.10.10.0/24 via %s never appeared: %v %s", c.User(), dev, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, cidr := range []string{"10.10.10.128/25", testbed.TargetOutsideNet} {
		if err := c.RouteViaTunnel(cidr); err != nil {
			t.Fatal(err)
		}
	}
}

func mustPass(t *testing.T, c *testbed.Client, addr string, port int) {
	t.Helper()
	var err error
	for try := 0; try < 3; try++ { // the first SYN may wait for ARP
		if err = c.Dial(addr, port, dialWait); err == nil {
			return
		}
	}
	t.Errorf("%s: TCP %s:%d through the tunnel: %v, want it to pass", c.User(), addr, port, err)
}

func mustReject(t *testing.T, c *testbed.Client, addr string, port int) {
	t.Helper()
	err := c.Dial(addr, port, dialWait)
	if !errors.Is(err, testbed.ErrRejected) {
		t.Errorf("%s: TCP %s:%d through the tunnel: %v, want it rejected (port unreachable)", c.User(), addr, port, err)
	}
}

func ruleset(t *testing.T, b *testbed.Bed) string {
	t.Helper()
	rs, err := b.InServerNSRuleset()
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func hasOurs(rs string) bool {
	return strings.Contains(rs, firewall.TablePrefix) || strings.Contains(rs, firewall.ChainPrefix) ||
		strings.Contains(rs, firewall.RouteChainPrefix) || strings.Contains(rs, firewall.Comment)
}

func deviceOf(t *testing.T, b *testbed.Bed, user string) testbed.OcctlUser {
	t.Helper()
	us, err := b.OcctlUsers()
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		if u.Username == user {
			return u
		}
	}
	t.Fatalf("occtl does not list %s: %+v", user, us)
	return testbed.OcctlUser{}
}

// TestFirewallModeA: no restriction configured. The user reaches every
// target address through the tunnel (the control for the rejections in
// the other modes: the routing works and the target answers), the event is
// recorded, and nobody installed rules.
func TestFirewallModeA(t *testing.T) {
	b := newModeBed(t, testbed.Options{})
	c, err := b.Connect("alice", b.Password("alice"))
	if err != nil {
		t.Fatal(err)
	}
	tunnelEverything(t, c)
	for _, a := range []string{testbed.TargetRouteIP, testbed.TargetNoRouteIP, testbed.TargetOutsideIP} {
		mustPass(t, c, a, 443)
	}
	evs := b.WaitEvents(testbed.Count(testbed.Match{Type: events.Connect, Username: "alice"}, 1), eventWait)
	ce := one(t, evs, testbed.Match{Type: events.Connect, Username: "alice"})
	if ce.Firewall == nil || ce.Firewall.Action != "none" || ce.Firewall.Mode != "off" {
		t.Errorf("firewall = %+v, want mode off, action none", ce.Firewall)
	}
	if ce.Policy == nil || ce.Policy.Restricted() {
		t.Errorf("policy = %+v, want unrestricted", ce.Policy)
	}
	if rs := ruleset(t, b); hasOurs(rs) || testbed.HasOcservFw(rs) {
		t.Errorf("rules in the server namespace of an unrestricted bed:\n%s", rs)
	}
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}
	b.WaitEvents(testbed.Count(testbed.Match{Type: events.Disconnect, Username: "alice"}, 1), eventWait)
}

// TestFirewallModeB: restrict-user-to-routes with Debian's ocserv-fw in
// charge. Its rules restrict the user, the hook (run through
// OCSERV_NEXT_SCRIPT) records one event per ocserv event and adds nothing.
func TestFirewallModeB(t *testing.T) {
	b := newModeBed(t, testbed.Options{RestrictToRoutes: true})
	c, err := b.Connect("bob", b.Password("bob"))
	if err != nil {
		t.Fatal(err)
	}
	o := deviceOf(t, b, "bob")
	rs := ruleset(t, b)
	if !strings.Contains(rs, b.OcservFwMark(o.Device)) {
		t.Errorf("no %q of ocserv %s's ocserv-fw (%s) for %s:\n%s", b.OcservFwMark(o.Device), b.Version(), b.Release().FwBackend, o.Device, rs)
	}
	if hasOurs(rs) {
		t.Errorf("the hook added rules on top of ocserv-fw's:\n%s", rs)
	}
	tunnelEverything(t, c)
	mustPass(t, c, testbed.TargetRouteIP, 443)
	mustReject(t, c, testbed.TargetNoRouteIP, 443)
	mustReject(t, c, testbed.TargetOutsideIP, 443)

	evs := b.WaitEvents(testbed.Count(testbed.Match{Type: events.Connect, Username: "bob"}, 1), eventWait)
	ce := one(t, evs, testbed.Match{Type: events.Connect, Username: "bob"})
	if ce.Firewall == nil || ce.Firewall.Action != "none" || ce.Firewall.Backend != "" {
		t.Errorf("firewall = %+v, want action none (the rules are ocserv-fw's)", ce.Firewall)
	}
	if ce.Admitted == nil || !*ce.Admitted || ce.Hook.Chained != nil {
		t.Errorf("admitted %v, next_script_status %v: want admitted, no next script of ours", ce.Admitted, ce.Hook.Chained)
	}
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}
	evs = b.WaitEvents(testbed.Count(testbed.Match{Type: events.Disconnect, Username: "bob"}, 1), eventWait)
	one(t, evs, testbed.Match{Type: events.Disconnect, Username: "bob"})
	if n := len(testbed.Filter(evs, testbed.Match{Type: events.Connect})); n != 1 {
		t.Errorf("%d connect events for one login", n)
	}
}

// TestFirewallModeC: the hook is ocserv's fw script. It applies each
// restricted user's policy itself (ocserv-fw never runs), chains the
// configured connect script (its own wrapper, which records nothing), and
// records one event with the firewall outcome. Real tunnel traffic is
// allowed or rejected as the policy says; disconnect removes the rules.
// alice is restricted to the routes; bob also to ports tcp 80 and 8080
// (per-user restrict-user-to-ports).
func TestFirewallModeC(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			b := newModeBed(t, testbed.Options{
				RestrictToRoutes: true, HookAsFwScript: true, FirewallBackend: backend,
				PerUser: map[string][]string{"bob": {`restrict-user-to-ports = "tcp(80), tcp(8080), icmp()"`}},
			})
			alice, err := b.Connect("alice", b.Password("alice"))
			if err != nil {
				t.Fatal(err)
			}
			bob, err := b.Connect("bob", b.Password("bob"))
			if err != nil {
				t.Fatal(err)
			}
			oa, ob := deviceOf(t, b, "alice"), deviceOf(t, b, "bob")
			rs := ruleset(t, b)
			if testbed.HasOcservFw(rs) {
				t.Errorf("ocserv-fw ran although the hook is ocserv's fw script:\n%s", rs)
			}
			for _, dev := range []string{oa.Device, ob.Device} {
				want := firewall.TablePrefix + dev
				if backend == "iptables" {
					want = ":" + firewall.ChainPrefix + dev + " "
				}
				if !strings.Contains(rs, want) {
					t.Errorf("no %q for %s in the server namespace:\n%s", want, dev, rs)
				}
			}

			tunnelEverything(t, alice)
			tunnelEverything(t, bob)
			mustPass(t, alice, testbed.TargetRouteIP, 443)
			mustReject(t, alice, testbed.TargetNoRouteIP, 443)
			mustReject(t, alice, testbed.TargetOutsideIP, 443)
			mustPass(t, bob, testbed.TargetRouteIP, 80)
			mustPass(t, bob, testbed.TargetRouteIP, 8080)
			mustReject(t, bob, testbed.TargetRouteIP, 443) // not an allowed port
			mustReject(t, bob, testbed.TargetNoRouteIP, 80)
			mustReject(t, bob, testbed.TargetOutsideIP, 80)

			evs := b.WaitEvents(testbed.Count(testbed.Match{Type: events.Connect}, 2), eventWait)
			for _, u := range []testbed.OcctlUser{oa, ob} {
				ce := one(t, evs, testbed.Match{Type: events.Connect, Username: u.Username})
				f := ce.Firewall
				if f == nil || f.Action != "applied" || f.Backend != backend || f.Mode != "on" || f.Micros <= 0 {
					t.Errorf("%s connect: firewall = %+v, want applied by %s in mode on", u.Username, f, backend)
				}
				if ce.Admitted == nil || !*ce.Admitted || ce.Refusal != "" {
					t.Errorf("%s connect: admitted %v refusal %q", u.Username, ce.Admitted, ce.Refusal)
				}
				if ce.Hook == nil || ce.Hook.Chained == nil || *ce.Hook.Chained != 0 {
					t.Errorf("%s connect: next_script_status %v, want 0 (ocserv passed the wrapper as OCSERV_NEXT_SCRIPT)", u.Username, ce.Hook)
				}
				if ce.Session == nil || ce.Session.Device != u.Device || ce.Session.ID != u.ID {
					t.Errorf("%s connect: session %+v, occtl says %+v", u.Username, ce.Session, u)
				}
			}
			bobConnect := one(t, evs, testbed.Match{Type: events.Connect, Username: "bob"})
			if p := bobConnect.Policy; p == nil || len(p.AllowPorts) != 3 || !p.RestrictToRoutes {
				t.Errorf("bob's policy %+v, want restrict_to_routes and three allowed ports", p)
			}

			if err := alice.Disconnect(); err != nil {
				t.Fatal(err)
			}
			evs = b.WaitEvents(testbed.Count(testbed.Match{Type: events.Disconnect, Username: "alice"}, 1), eventWait)
			de := one(t, evs, testbed.Match{Type: events.Disconnect, Username: "alice"})
			if de.Firewall == nil || de.Firewall.Action != "removed" || de.Firewall.Backend != backend {
				t.Errorf("alice disconnect: firewall = %+v, want removed", de.Firewall)
			}
			rs = ruleset(t, b)
			if strings.Contains(rs, firewall.TablePrefix+oa.Device+" ") || strings.Contains(rs, firewall.ChainPrefix+oa.Device+" ") {
				t.Errorf("alice's rules (%s) are left after her disconnect:\n%s", oa.Device, rs)
			}
			if !hasOurs(rs) {
				t.Errorf("bob's rules went with alice's disconnect:\n%s", rs)
			}
			mustReject(t, bob, testbed.TargetOutsideIP, 80) // bob is still restricted

			if err := bob.Disconnect(); err != nil {
				t.Fatal(err)
			}
			evs = b.WaitEvents(testbed.Count(testbed.Match{Type: events.Disconnect, Username: "bob"}, 1), eventWait)
			if rs := ruleset(t, b); hasOurs(rs) {
				t.Errorf("rules of ours left after every user disconnected:\n%s", rs)
			}
			for _, typ := range []events.Type{events.Connect, events.Disconnect} {
				if n := len(testbed.Filter(evs, testbed.Match{Type: typ})); n != 2 {
					t.Errorf("%d %s events for two sessions, want 2 (one per ocserv event):\n%s", n, typ, testbed.Summarize(evs))
				}
			}
		})
	}
}

// TestFwScriptEnvironment shows, on the version's real ocserv, whether
// OCSERV_FW_SCRIPT in ocserv's environment chooses the fw script (the
// drop-in way of mode c): ocserv is started with it naming the hook's fw
// wrapper and nothing else changed. A version that reads it (1.5.0) runs
// the hook, which applies the rules; one that does not (1.1.6, 1.3.0:
// the path is compiled in, docs/firewall.md) runs its own ocserv-fw, and
// the hook, run by ocserv-fw as the next script, can only record that
// nothing was applied: the defect install.sh had on 1.3.0, which is why it
// diverts the path there.
func TestFwScriptEnvironment(t *testing.T) {
	b := newModeBed(t, testbed.Options{RestrictToRoutes: true, HookAsFwScript: true, FwScriptByEnv: true})
	c, err := b.Connect("alice", b.Password("alice"))
	if err != nil {
		t.Fatal(err)
	}
	o := deviceOf(t, b, "alice")
	evs := b.WaitEvents(testbed.Count(testbed.Match{Type: events.Connect, Username: "alice"}, 1), eventWait)
	ce := one(t, evs, testbed.Match{Type: events.Connect, Username: "alice"})
	rs := ruleset(t, b)
	rel := b.Release()
	if rel.FwScriptEnv {
		if ce.Firewall == nil || ce.Firewall.Mode != "on" || ce.Firewall.Action != "applied" {
			t.Errorf("ocserv %s reads OCSERV_FW_SCRIPT: firewall %+v, want mode on, action applied", rel.Version, ce.Firewall)
		}
		if testbed.HasOcservFw(rs) || !hasOurs(rs) {
			t.Errorf("ocserv %s: want our rules and none of ocserv-fw's:\n%s", rel.Version, rs)
		}
	} else {
		if ce.Firewall == nil || ce.Firewall.Mode != "on" || ce.Firewall.Action != "none" {
			t.Errorf("ocserv %s ignores OCSERV_FW_SCRIPT: firewall %+v, want mode on, action none", rel.Version, ce.Firewall)
		}
		if !strings.Contains(rs, b.OcservFwMark(o.Device)) || hasOurs(rs) {
			t.Errorf("ocserv %s: want %s's %q and none of ours:\n%s", rel.Version, rel.FwScript, b.OcservFwMark(o.Device), rs)
		}
	}
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}
	b.WaitEvents(testbed.Count(testbed.Match{Type: events.Disconnect, Username: "alice"}, 1), eventWait)
}
