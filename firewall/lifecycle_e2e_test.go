//go:build e2e

package firewall

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// unrelatedRuleset is someone else's firewall in the namespace: iptables
// rules and a chain in both families, and an nftables table. RemoveAll and
// every connect/disconnect must leave it exactly as it was.
func installUnrelated(t *testing.T, ns *netns) {
	t.Helper()
	for _, ipt := range []string{"iptables", "ip6tables"} {
		ns.must(t, ipt, "-N", "ADMIN-vpns1")
		ns.must(t, ipt, "-A", "ADMIN-vpns1", "-p", "tcp", "--dport", "25", "-j", "DROP")
		ns.must(t, ipt, "-A", "FORWARD", "-i", "vpns1", "-j", "ADMIN-vpns1")
		ns.must(t, ipt, "-A", "FORWARD", "-o", "eth9", "-m", "comment", "--comment", "admin rule", "-j", "ACCEPT")
		ns.must(t, ipt, "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
	}
	ns.must(t, "nft", "add", "table", "inet", "admin")
	ns.must(t, "nft", "add", "chain", "inet", "admin", "adminfwd", "{ type filter hook forward priority 5; policy accept; }")
	ns.must(t, "nft", "add", "rule", "inet", "admin", "adminfwd", "iifname", "vpns10", "tcp", "dport", "25", "drop")
	// A table named like upstream ocserv-fw's nftables table for the same
	// device: not ours.
	ns.must(t, "nft", "add", "table", "inet", "ocserv_vpns1")
}

func rulesetOf(t *testing.T, ns *netns) string {
	t.Helper()
	return ns.must(t, "nft", "list", "ruleset")
}

// othersOf lists everybody else's rules in ns: iptables-save of both
// families without our chains and jumps, and every nftables table that is
// neither ours nor iptables-nft's (those are the iptables-save part).
func othersOf(t *testing.T, ns *netns) string {
	t.Helper()
	var sb strings.Builder
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		for _, line := range strings.Split(cleanSave(ns.must(t, save)), "\n") {
			if !strings.Contains(line, ChainPrefix) && !strings.Contains(line, RouteChainPrefix) {
				sb.WriteString(line + "\n")
			}
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(ns.must(t, "nft", "list", "tables")), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || strings.HasPrefix(f[2], TablePrefix) || f[2] == "filter" {
			continue
		}
		sb.WriteString(ns.must(t, "nft", "list", "table", f[1], f[2]))
	}
	return sb.String()
}

// TestConcurrentLifecycle connects and disconnects several devices at once,
// vpns1 and vpns10..vpns19 among them, with each backend: in the end exactly
// the devices left connected have rules, vpns1's removal never touched
// vpns10's, nothing else in the namespace changed, and RemoveAll leaves
// nothing of ours.
func TestConcurrentLifecycle(t *testing.T) {
	requireRoot(t)
	devs := []string{"vpns1", "vpns10", "vpns11", "vpns19", "vpns2", "vpns100"}
	for _, kind := range []string{KindNftables, KindIptables} {
		t.Run(kind, func(t *testing.T) {
			ns := newNetns(t, "life")
			installUnrelated(t, ns)
			before := rulesetOf(t, ns)
			beforeOthers := othersOf(t, ns)
			if !strings.Contains(beforeOthers, "ADMIN-vpns1") || !strings.Contains(beforeOthers, "ocserv_vpns1") {
				t.Fatalf("the unrelated ruleset is not listed:\n%s", beforeOthers)
			}
			b, err := Open(kind)
			if err != nil {
				t.Fatal(err)
			}
			p := policyOf(t, testCases(t)[2].env) // allow-ports: the largest rule set
			const rounds = 4
			var wg sync.WaitGroup
			errs := make(chan error, len(devs)*rounds*2)
			for i, dev := range devs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- ns.do(func() error {
						ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
						defer cancel()
						for r := 0; r < rounds; r++ {
							if o := Connect(ctx, b, dev, testOwner, p); o.Action != ActionApplied {
								return fmt.Errorf("%s round %d: connect: %+v", dev, r, o)
							}
							// Odd devices stay connected after the last round.
							if r == rounds-1 && i%2 == 1 {
								break
							}
							if o := Disconnect(ctx, b, dev, testOwner); o.Action != ActionRemoved {
								return fmt.Errorf("%s round %d: disconnect: %+v", dev, r, o)
							}
						}
						return nil
					})
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			assertHostUntouched(t)
			listing := listOurs(t, ns)
			for i, dev := range devs {
				var has bool
				if kind == KindNftables {
					has = strings.Contains(listing, "table inet "+TablePrefix+dev+" {")
				} else {
					has = strings.Contains(listing, ":"+ChainPrefix+dev+" ")
				}
				if want := i%2 == 1; has != want {
					t.Errorf("%s: has rules %v, want %v:\n%s", dev, has, want, listing)
				}
			}
			// Exactness: removing vpns1 (connected or not) keeps vpns10's rules.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var o Outcome
			ns.do(func() error { o = Connect(ctx, b, "vpns1", testOwner, p); return nil })
			ns.do(func() error { o = Disconnect(ctx, b, "vpns1", testOwner); return nil })
			if o.Action != ActionRemoved {
				t.Fatalf("disconnect vpns1: %+v", o)
			}
			if after := listOurs(t, ns); after != listing {
				t.Errorf("connect+disconnect of vpns1 changed other devices' rules:\n%s\nbefore:\n%s", after, listing)
			}
			if got := othersOf(t, ns); got != beforeOthers {
				t.Errorf("the unrelated ruleset changed:\n%s\nwant:\n%s", got, beforeOthers)
			}
			var rerr error
			ns.do(func() error { rerr = b.RemoveAll(ctx); return nil })
			if rerr != nil {
				t.Fatal(rerr)
			}
			after := rulesetOf(t, ns)
			if after != before {
				t.Errorf("after RemoveAll the ruleset is:\n%s\nwant exactly the one before:\n%s", after, before)
			}
			// RemoveAll with nothing of ours left is a no-op, not an error.
			ns.do(func() error { rerr = b.RemoveAll(ctx); return nil })
			if rerr != nil {
				t.Errorf("second RemoveAll: %v", rerr)
			}
		})
	}
}

// TestOcservFwCleanupDefects shows, on Debian's script, the two defects
// items 5 and 6 of the package comment fix, so the claim stays checked:
// disconnecting vpns1 removes vpns10's rules, and --removeall leaves its
// chains behind.
func TestOcservFwCleanupDefects(t *testing.T) {
	requireRoot(t)
	ns := newNetns(t, "fwdef")
	env := testCases(t)[1].env
	with := func(dev string) map[string]string {
		m := map[string]string{}
		for k, v := range env {
			m[k] = v
		}
		m["DEVICE"] = dev
		return m
	}
	runOcservFw(t, ns, with("vpns10"), "connect")
	runOcservFw(t, ns, with("vpns1"), "disconnect")
	if out := ns.must(t, "iptables-save", "-t", "filter"); strings.Contains(out, "-i vpns10 ") {
		t.Errorf("ocserv-fw's vpns1 cleanup kept vpns10's rules; the documented defect is gone:\n%s", out)
	}
	runOcservFw(t, ns, with("vpns11"), "connect")
	if err := ns.do(func() error {
		out, err := execCombined(ocservFw, "--removeall")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if out := ns.must(t, "iptables-save", "-t", "filter"); !strings.Contains(out, ":FORWARD-ocserv-fw-vpns11") {
		t.Errorf("ocserv-fw --removeall removed its chains; the documented defect is gone:\n%s", out)
	}
}

// TestForwardDropPolicy runs the routes case behind FORWARD policies of
// DROP (both families): ocserv-fw lets IPv4 replies back but not IPv6 (no
// IPv6 conntrack rule, item 1); the iptables backend lets both back; with
// the nftables backend the host's DROP policy still decides (item 11).
func TestForwardDropPolicy(t *testing.T) {
	requireRoot(t)
	c := testCases(t)[1] // routes-v4v6
	p := policyOf(t, c.env)
	probes := []probe{{tRoute4, "tcp", 443}, {tRoute6, "tcp", 443}}
	want := map[string][]string{
		"ocserv-fw":  {pOK, pTimeout},
		KindIptables: {pOK, pOK},
		KindNftables: {pTimeout, pTimeout},
	}
	for impl, w := range want {
		t.Run(impl, func(t *testing.T) {
			tp := newTopo(t, "vpns7")
			tp.router.must(t, "iptables", "-P", "FORWARD", "DROP")
			tp.router.must(t, "ip6tables", "-P", "FORWARD", "DROP")
			if impl == "ocserv-fw" {
				runOcservFw(t, tp.router, c.env, "connect")
			} else {
				b, err := Open(impl)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				var o Outcome
				tp.router.do(func() error { o = Connect(ctx, b, tp.dev, testOwner, p); return nil })
				if o.Action != ActionApplied {
					t.Fatalf("connect: %+v", o)
				}
			}
			got := tp.probeAll(probes)
			for i, pr := range probes {
				if got[pr] != w[i] {
					t.Errorf("%v: got %s, want %s", pr, got[pr], w[i])
				}
			}
		})
	}
}
