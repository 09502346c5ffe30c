//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/firewall"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
)

// disconnectEnv rebuilds the environment ocserv gave a disconnect script
// from that disconnect's recorded event: the session's variables, its
// policy, its counters.
func disconnectEnv(e events.Event) []string {
	s, p := e.Session, e.Policy
	env := []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "REASON=disconnect",
		"ID=" + strconv.Itoa(s.ID), "DEVICE=" + s.Device, "USERNAME=" + s.Username, "GROUPNAME=" + s.Groupname,
		"VHOST=" + s.VHost, "IP_REAL=" + s.IPReal, "IP_REAL_LOCAL=" + s.IPRealLocal,
		"IP_LOCAL=" + s.IPLocal, "IP_REMOTE=" + s.IPRemote,
	}
	if p != nil {
		if p.RestrictToRoutes {
			env = append(env, "OCSERV_RESTRICT_TO_ROUTES=1")
		}
		env = append(env, "OCSERV_ROUTES="+strings.Join(p.Routes, " ")+" ", "OCSERV_NO_ROUTES="+strings.Join(p.NoRoutes, " ")+" ",
			"OCSERV_DNS="+strings.Join(p.DNS, " ")+" ")
	}
	if st := e.Stats; st != nil {
		env = append(env, "STATS_BYTES_IN="+strconv.FormatUint(st.BytesIn, 10), "STATS_BYTES_OUT="+strconv.FormatUint(st.BytesOut, 10))
	}
	return env
}

// TestFirewallLateDisconnect: issue 11 defect 2 with a real ocserv and
// real clients, in mode (c) with each backend. ocserv does not wait for a
// disconnect script, and gives a freed vpnsN to the next session: a
// disconnect that runs late, after the next session's connect on the same
// device, used to remove that session's rules and let it run unrestricted.
// Made deterministic here: alice connects and leaves, bob connects and gets
// her device, then alice's disconnect runs again, late, through the same
// fw script ocserv runs, with the environment rebuilt from her recorded
// disconnect event. Bob must stay restricted, and that late disconnect's
// event must say the device belongs to bob's session now.
func TestFirewallLateDisconnect(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			b := newModeBed(t, testbed.Options{
				RestrictToRoutes: true, HookAsFwScript: true, FirewallBackend: backend,
				PerUser: map[string][]string{"bob": {`restrict-user-to-ports = "tcp(80), icmp()"`}},
			})
			alice, err := b.Connect("alice", b.Password("alice"))
			if err != nil {
				t.Fatal(err)
			}
			oa := deviceOf(t, b, "alice")
			if err := alice.Disconnect(); err != nil {
				t.Fatal(err)
			}
			evs := b.WaitEvents(testbed.Count(testbed.Match{Type: events.Disconnect, Username: "alice"}, 1), eventWait)
			aliceGone := one(t, evs, testbed.Match{Type: events.Disconnect, Username: "alice"})

			bob, err := b.Connect("bob", b.Password("bob"))
			if err != nil {
				t.Fatal(err)
			}
			ob := deviceOf(t, b, "bob")
			if ob.Device != oa.Device {
				t.Fatalf("bob got %s, alice had %s: the kernel gives the lowest free vpnsN, so the device should have been reused", ob.Device, oa.Device)
			}
			tunnelEverything(t, bob)
			mustReject(t, bob, testbed.TargetOutsideIP, 80) // restricted before the late disconnect
			evs = b.WaitEvents(testbed.Count(testbed.Match{Type: events.Connect, Username: "bob"}, 1), eventWait)
			bobConnect := one(t, evs, testbed.Match{Type: events.Connect, Username: "bob"})
			before := ruleset(t, b)

			// Alice's disconnect, late: the fw script ocserv runs (the bed's
			// wrapper), in the server namespace, with her environment.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "ip", "netns", "exec", b.ServerNS(), "/bin/sh", b.ScriptPath(), "--fw")
			cmd.Env = disconnectEnv(aliceGone)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("alice's late disconnect: %v: %s", err, out.String())
			}
			evs = b.WaitEvents(testbed.Count(testbed.Match{Type: events.Disconnect, Username: "alice"}, 2), eventWait)
			late := testbed.Filter(evs, testbed.Match{Type: events.Disconnect, Username: "alice"})
			if len(late) != 2 {
				t.Fatalf("%d disconnect events for alice, want 2:\n%s", len(late), testbed.Summarize(evs))
			}
			f := late[1].Firewall
			if f == nil || f.Action != "none" || f.SupersededBy == nil || f.SupersededBy.ID != ob.ID || f.SupersededBy.SessionUID != bobConnect.SessionUID {
				t.Errorf("late disconnect: firewall = %+v, want action none, superseded_by bob's session (id %d, %s)", f, ob.ID, bobConnect.SessionUID)
			}
			if after := ruleset(t, b); after != before {
				t.Errorf("alice's late disconnect changed the ruleset:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			// Bob is still restricted, and still reaches what he may.
			mustReject(t, bob, testbed.TargetOutsideIP, 80)
			mustReject(t, bob, testbed.TargetRouteIP, 443)
			mustPass(t, bob, testbed.TargetRouteIP, 80)

			if err := bob.Disconnect(); err != nil {
				t.Fatal(err)
			}
			evs = b.WaitEvents(testbed.Count(testbed.Match{Type: events.Disconnect, Username: "bob"}, 1), eventWait)
			if de := one(t, evs, testbed.Match{Type: events.Disconnect, Username: "bob"}); de.Firewall == nil || de.Firewall.Action != "removed" {
				t.Errorf("bob's disconnect: firewall = %+v, want removed", de.Firewall)
			}
			if rs := ruleset(t, b); strings.Contains(rs, firewall.TablePrefix+ob.Device) || strings.Contains(rs, firewall.ChainPrefix+ob.Device+" ") {
				t.Errorf("bob's rules left after his disconnect:\n%s", rs)
			}
		})
	}
}
