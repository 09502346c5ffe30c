//go:build e2e

package firewall

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

var (
	ownerA = Owner{ID: 1001, UID: "0190aaaa-aaaa-7aaa-8aaa-aaaaaaaaaaaa"}
	ownerB = Owner{ID: 2002, UID: "0190bbbb-bbbb-7bbb-8bbb-bbbbbbbbbbbb"}
)

// nsBackend opens one backend and runs its calls inside ns.
type nsBackend struct {
	t  *testing.T
	ns *netns
	b  Backend
}

func openIn(t *testing.T, ns *netns, kind string) *nsBackend {
	t.Helper()
	var b Backend
	var err error
	ns.do(func() error { b, err = Open(kind); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return &nsBackend{t, ns, b}
}

func (n *nsBackend) connect(dev string, o Owner, p *events.Policy) Outcome {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out Outcome
	n.ns.do(func() error { out = Connect(ctx, n.b, dev, o, p); return nil })
	return out
}

func (n *nsBackend) disconnect(dev string, o Owner) Outcome {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out Outcome
	n.ns.do(func() error { out = Disconnect(ctx, n.b, dev, o); return nil })
	return out
}

func (n *nsBackend) call(fn func(context.Context, Backend) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	n.ns.do(func() error { err = fn(ctx, n.b); return nil })
	return err
}

// TestLateDisconnectKeepsNextSession: issue 11 defect 2, with each
// backend. ocserv gives vpns3 to session B before session A's disconnect
// has run (ocserv does not wait for it). A's late disconnect must leave
// B's restriction in place, say whose it is, and B's own disconnect then
// removes it. Without owners, A's disconnect removed B's rules and B ran
// unrestricted.
func TestLateDisconnectKeepsNextSession(t *testing.T) {
	requireRoot(t)
	pA := &events.Policy{RestrictToRoutes: true, Routes: []string{"10.1.0.0/16"}}
	pB := &events.Policy{RestrictToRoutes: true, Routes: []string{"10.2.0.0/16"}}
	for _, kind := range []string{KindNftables, KindIptables} {
		t.Run(kind, func(t *testing.T) {
			ns := newNetns(t, "own")
			b := openIn(t, ns, kind)
			if o := b.connect("vpns3", ownerA, pA); o.Action != ActionApplied {
				t.Fatalf("connect A: %+v", o)
			}
			if o := b.connect("vpns3", ownerB, pB); o.Action != ActionApplied {
				t.Fatalf("connect B on the same device: %+v", o)
			}
			withB := listOurs(t, ns)
			if !strings.Contains(withB, "10.2.0.0/16") || strings.Contains(withB, "10.1.0.0/16") {
				t.Fatalf("B's connect did not replace A's rules:\n%s", withB)
			}
			// A's late disconnect, with and without its session_uid (a
			// lost record: the ID decides).
			for _, late := range []Owner{ownerA, {ID: ownerA.ID}} {
				o := b.disconnect("vpns3", late)
				if o.Action != ActionNone || o.SupersededBy == nil || o.SupersededBy.ID != ownerB.ID || o.Refuse() {
					t.Errorf("late disconnect of %+v: %+v, want none, superseded by B", late, o)
				}
				if o.SupersededBy != nil && o.SupersededBy.UID != "" && o.SupersededBy.UID != ownerB.UID {
					t.Errorf("superseded by %+v, want B's session_uid", o.SupersededBy)
				}
				if got := listOurs(t, ns); got != withB {
					t.Errorf("A's late disconnect changed B's rules:\nbefore:\n%s\nafter:\n%s", withB, got)
				}
			}
			// The same ID with another session_uid (the PID reused) is not B.
			if o := b.disconnect("vpns3", Owner{ID: ownerB.ID, UID: ownerA.UID}); o.Action != ActionNone || o.SupersededBy == nil {
				t.Errorf("disconnect with B's ID but another session_uid: %+v", o)
			}
			if got := listOurs(t, ns); got != withB {
				t.Errorf("B's rules changed by a disconnect with a reused ID:\n%s", got)
			}
			if o := b.disconnect("vpns3", ownerB); o.Action != ActionRemoved {
				t.Fatalf("B's own disconnect: %+v", o)
			}
			if got := listOurs(t, ns); strings.Contains(got, "vpns3") {
				t.Errorf("B's disconnect left rules:\n%s", got)
			}
			// Nothing there any more: a disconnect finds nothing to remove.
			if o := b.disconnect("vpns3", ownerA); o.Action != ActionRemoved || o.Err != nil {
				t.Errorf("disconnect with nothing there: %+v", o)
			}
		})
	}
}

// legacyRules makes what an earlier release left for dev: the nftables
// table under the old name, or the iptables chains and jumps with the bare
// comment and no owner.
func legacyRules(t *testing.T, ns *netns, kind, dev string) {
	t.Helper()
	switch kind {
	case KindNftables:
		tb := LegacyTablePrefix + dev
		ns.must(t, "nft", "add", "table", "inet", tb)
		ns.must(t, "nft", "add", "chain", "inet", tb, "forward", "{ type filter hook forward priority filter - 10; policy accept; }")
		ns.must(t, "nft", "add", "rule", "inet", tb, "forward", "iifname", dev, "reject")
	case KindIptables:
		for _, ipt := range []string{"iptables", "ip6tables"} {
			ns.must(t, ipt, "-N", mainChain(dev))
			ns.must(t, ipt, "-N", routeChain(dev))
			ns.must(t, ipt, "-A", mainChain(dev), "-m", "comment", "--comment", Comment, "-j", "REJECT")
			ns.must(t, ipt, "-I", "FORWARD", "1", "-i", dev, "-m", "comment", "--comment", Comment, "-j", mainChain(dev))
		}
	}
}

func hasLegacy(t *testing.T, ns *netns, kind, dev string) bool {
	t.Helper()
	if kind == KindNftables {
		return strings.Contains(ns.must(t, "nft", "list", "tables"), LegacyTablePrefix+dev)
	}
	return strings.Contains(ns.must(t, "iptables-save", "-t", "filter"), "--comment "+Comment+" -j "+mainChain(dev))
}

// TestLegacyRulesRemoved: hosts upgraded from an earlier release, with
// sessions connected, still hold rules under the old names (nftables:
// "ocserv_telemetry_<dev>", which ocserv-fw 1.5.0 claims) or without an
// owner (iptables). A disconnect, a new session's connect (restricted or
// not) and --removeall all remove them.
func TestLegacyRulesRemoved(t *testing.T) {
	requireRoot(t)
	p := &events.Policy{RestrictToRoutes: true, Routes: []string{"10.1.0.0/16"}}
	for _, kind := range []string{KindNftables, KindIptables} {
		t.Run(kind, func(t *testing.T) {
			ns := newNetns(t, "legacy")
			b := openIn(t, ns, kind)
			steps := []struct {
				name string
				do   func() error
			}{
				{"disconnect of the pre-upgrade session", func() error {
					if o := b.disconnect("vpns4", ownerA); o.Action != ActionRemoved {
						return fmt.Errorf("%+v", o)
					}
					return nil
				}},
				{"connect of a restricted user", func() error {
					if o := b.connect("vpns4", ownerB, p); o.Action != ActionApplied {
						return fmt.Errorf("%+v", o)
					}
					return b.call(func(ctx context.Context, b Backend) error { return b.Remove(ctx, "vpns4", ownerB) })
				}},
				{"connect of an unrestricted user (leftover cleanup)", func() error {
					if o := b.connect("vpns4", ownerB, &events.Policy{}); o.Action != ActionNone || o.Err != nil {
						return fmt.Errorf("%+v", o)
					}
					return nil
				}},
				{"--removeall", func() error {
					return b.call(func(ctx context.Context, b Backend) error { return b.RemoveAll(ctx) })
				}},
			}
			for _, s := range steps {
				legacyRules(t, ns, kind, "vpns4")
				if !hasLegacy(t, ns, kind, "vpns4") {
					t.Fatalf("%s: the legacy rules did not go in", s.name)
				}
				if err := s.do(); err != nil {
					t.Errorf("%s: %v", s.name, err)
				}
				if hasLegacy(t, ns, kind, "vpns4") {
					t.Errorf("%s left the legacy rules:\n%s", s.name, listOurs(t, ns))
				}
				if strings.Contains(listOurs(t, ns), "vpns4") {
					t.Errorf("%s left rules of ours:\n%s", s.name, listOurs(t, ns))
				}
			}
		})
	}
}

// TestOcservFwLeavesOurRules: issue 12 defect 3. Every ocserv-fw Debian
// ships (testdata/ocserv-fw: 1.1.6's and 1.3.0's iptables scripts, 1.5.0's
// nftables script), run for real in the namespace: --removeall, and a
// disconnect of the same device name, while both our backends' rules are
// in place. Ours stay exactly as they were; the script's own rules go (so
// the script did run), and 1.5.0's --removeall deletes a table under our
// old name (the control: why the name changed).
func TestOcservFwLeavesOurRules(t *testing.T) {
	requireRoot(t)
	env := map[string]string{
		"OCSERV_RESTRICT_TO_ROUTES": "1", "OCSERV_ROUTES": "10.9.0.0/255.255.0.0 ", "OCSERV_ROUTES4": "10.9.0.0/255.255.0.0 ",
		"OCSERV_DNS4": "10.9.0.53 ", "OCSERV_DNS": "10.9.0.53 ",
	}
	p := &events.Policy{RestrictToRoutes: true, Routes: []string{"10.1.0.0/16"}}
	for _, script := range []string{"ocserv-fw-1.1.6-iptables", "ocserv-fw-1.3.0-iptables", "ocserv-fw-1.5.0-nftables"} {
		t.Run(script, func(t *testing.T) {
			path, err := filepath.Abs(filepath.Join("testdata", "ocserv-fw", script))
			if err != nil {
				t.Fatal(err)
			}
			ns := newNetns(t, "ocfw")
			ns.must(t, "ip", "tuntap", "add", "dev", "vpns8", "mode", "tun") // 1.5.0's iif needs a device
			ns.must(t, "ip", "tuntap", "add", "dev", "vpns9", "mode", "tun")
			nft, ipt := openIn(t, ns, KindNftables), openIn(t, ns, KindIptables)
			if o := nft.connect("vpns1", ownerA, p); o.Action != ActionApplied {
				t.Fatalf("nftables connect: %+v", o)
			}
			if o := ipt.connect("vpns2", ownerB, p); o.Action != ActionApplied {
				t.Fatalf("iptables connect: %+v", o)
			}
			ours := oursOnly(t, ns)
			run := func(reason, dev string, args ...string) {
				t.Helper()
				err := ns.do(func() error {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{path}, args...)...)
					cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "REASON=" + reason, "DEVICE=" + dev}
					for k, v := range env {
						cmd.Env = append(cmd.Env, k+"="+v)
					}
					out, err := cmd.CombinedOutput()
					if err != nil {
						return fmt.Errorf("%s %s %v: %v: %s", script, reason, args, err, out)
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			// The script's own session on another device, so there is
			// something of its own for --removeall to remove.
			run("connect", "vpns9")
			theirs := theirRules(t, ns)
			if theirs == "" {
				t.Fatalf("%s installed nothing for vpns9", script)
			}
			if strings.Contains(script, "nftables") {
				legacyRules(t, ns, KindNftables, "vpns8")
			}
			// Its disconnect for the devices our rules are on, then
			// --removeall.
			run("disconnect", "vpns1")
			run("disconnect", "vpns2")
			run("", "", "--removeall")
			if got := oursOnly(t, ns); got != ours {
				t.Errorf("%s changed our rules:\nbefore:\n%s\nafter:\n%s", script, ours, got)
			}
			if strings.Contains(script, "nftables") {
				if left := theirRules(t, ns); left != "" {
					t.Errorf("%s --removeall left its own table (did it run?):\n%s", script, left)
				}
				if hasLegacy(t, ns, KindNftables, "vpns8") {
					t.Errorf("%s --removeall kept a table under our old name: the control does not show why the name changed", script)
				}
			} else if left := theirRules(t, ns); strings.Contains(left, "--comment ocserv-fw") {
				t.Errorf("%s --removeall left its tagged rules (did it run?):\n%s", script, left)
			}
			if err := errors.Join(
				nft.call(func(ctx context.Context, b Backend) error { return b.Remove(ctx, "vpns1", ownerA) }),
				ipt.call(func(ctx context.Context, b Backend) error { return b.Remove(ctx, "vpns2", ownerB) }),
			); err != nil {
				t.Error(err)
			}
		})
	}
}

// theirRules lists what ocserv-fw made in ns: tables named ocserv_* and
// iptables lines naming ocserv-fw.
func theirRules(t *testing.T, ns *netns) string {
	t.Helper()
	var sb strings.Builder
	for _, line := range strings.Split(ns.must(t, "nft", "list", "tables"), "\n") {
		if f := strings.Fields(line); len(f) == 3 && strings.HasPrefix(f[2], "ocserv_") && !strings.HasPrefix(f[2], LegacyTablePrefix) {
			sb.WriteString(line + "\n")
		}
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		for _, line := range strings.Split(ns.must(t, save, "-t", "filter"), "\n") {
			if strings.Contains(line, "ocserv-fw") {
				sb.WriteString(line + "\n")
			}
		}
	}
	return sb.String()
}

// oursOnly is listOurs without the lines of ocserv-fw's own rules.
func oursOnly(t *testing.T, ns *netns) string {
	t.Helper()
	var sb strings.Builder
	for _, line := range strings.Split(listOurs(t, ns), "\n") {
		if !strings.Contains(line, "ocserv-fw") {
			sb.WriteString(line + "\n")
		}
	}
	return sb.String()
}

// TestRemoveAllBothFlavours: --removeall removes our chains
// and jumps from both iptables flavours, legacy (x_tables) and nf_tables,
// in both families: a host that switched the iptables alternative since
// our rules went in has them in the other one. Others' chains and jumps,
// in both flavours, stay exactly as they were.
func TestRemoveAllBothFlavours(t *testing.T) {
	requireRoot(t)
	for _, tool := range []string{"iptables-legacy", "iptables-nft", "ip6tables-legacy", "ip6tables-nft"} {
		if _, err := lookTool(tool); err != nil {
			t.Fatalf("%s is needed (Debian package iptables): %v", tool, err)
		}
	}
	ns := newNetns(t, "flav")
	flavours := []string{"iptables-legacy", "iptables-nft", "ip6tables-legacy", "ip6tables-nft"}
	for i, ipt := range flavours {
		dev := fmt.Sprintf("vpns%d", i)
		ns.must(t, ipt, "-N", mainChain(dev))
		ns.must(t, ipt, "-N", routeChain(dev))
		ns.must(t, ipt, "-A", mainChain(dev), "-m", "comment", "--comment", Comment, "-j", routeChain(dev))
		ns.must(t, ipt, "-A", "FORWARD", "-i", dev, "-m", "comment", "--comment", jumpComment(Owner{ID: 10 + i, UID: ownerA.UID}), "-j", mainChain(dev))
		ns.must(t, ipt, "-A", "FORWARD", "-o", dev, "-m", "comment", "--comment", Comment, "-j", mainChain(dev)) // an earlier release's
		ns.must(t, ipt, "-N", "ADMIN-"+dev)
		ns.must(t, ipt, "-A", "FORWARD", "-i", dev, "-j", "ADMIN-"+dev)
	}
	save := func() map[string]string {
		m := map[string]string{}
		for _, ipt := range flavours {
			m[ipt] = cleanSave(ns.must(t, ipt+"-save", "-t", "filter"))
		}
		return m
	}
	before := save()
	for ipt, s := range before {
		if !strings.Contains(s, ChainPrefix) {
			t.Fatalf("%s holds none of ours before --removeall:\n%s", ipt, s)
		}
	}
	b := openIn(t, ns, KindIptables)
	if err := b.call(func(ctx context.Context, b Backend) error { return b.RemoveAll(ctx) }); err != nil {
		t.Fatal(err)
	}
	for ipt, s := range save() {
		if strings.Contains(s, ChainPrefix) || strings.Contains(s, RouteChainPrefix) || strings.Contains(s, Comment) {
			t.Errorf("%s still holds rules of ours:\n%s", ipt, s)
		}
		var want strings.Builder
		for _, line := range strings.Split(before[ipt], "\n") {
			if line != "" && !strings.Contains(line, ChainPrefix) && !strings.Contains(line, RouteChainPrefix) {
				want.WriteString(line + "\n")
			}
		}
		if s != want.String() {
			t.Errorf("%s: others' rules changed:\nwant:\n%s\ngot:\n%s", ipt, want.String(), s)
		}
	}
}
