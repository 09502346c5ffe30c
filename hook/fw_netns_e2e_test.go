//go:build e2e

package hook_test

// The hook as ocserv's fw script (--fw), run as a whole process inside a
// network namespace of the test's own, with a tun device named like
// ocserv's tun devices. Nothing here touches the host namespace's
// firewall: every rule command runs through `ip netns exec`, and each test
// checks at the end that the host ruleset holds nothing of ours.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/firewall"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/envfile"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/hooktest"
)

// fwNS is a network namespace with one tun device, removed when the test
// ends (passed or failed).
type fwNS struct {
	name string
	dev  string
}

func newFwNS(t *testing.T, dev string) *fwNS {
	t.Helper()
	needRoot(t)
	for _, tool := range []string{"ip", "nft", "iptables-save", "ip6tables-save", "iptables", "unshare", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: %v", tool, err)
		}
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	ns := &fwNS{name: "octh-" + hex.EncodeToString(b), dev: dev}
	if out, err := exec.Command("ip", "netns", "add", ns.name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	// Cleanups run last-in first-out: the namespace is deleted first, then
	// the host namespace is checked.
	t.Cleanup(func() { hostHasNothingOfOurs(t) })
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns.name, err, out)
		}
	})
	ns.must(t, "ip", "link", "set", "lo", "up")
	// A tun device, as ocserv makes (this kernel has no dummy module).
	ns.must(t, "ip", "tuntap", "add", "dev", dev, "mode", "tun")
	ns.must(t, "ip", "link", "set", dev, "up")
	return ns
}

// hostHasNothingOfOurs reads (never changes) the host namespace's rulesets.
func hostHasNothingOfOurs(t *testing.T) {
	for _, argv := range [][]string{{"iptables-save", "-t", "filter"}, {"ip6tables-save", "-t", "filter"}, {"nft", "list", "tables"}} {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			t.Errorf("%v: %v: %s", argv, err, out)
			continue
		}
		for _, s := range []string{firewall.ChainPrefix, firewall.RouteChainPrefix, firewall.TablePrefix, firewall.LegacyTablePrefix, firewall.Comment} {
			if strings.Contains(string(out), s) {
				t.Errorf("the host namespace holds %q after the test:\n%s", s, out)
			}
		}
	}
}

func (n *fwNS) exec(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.name}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), errors.Join(err, errors.New(strings.Join(args, " ")+": "+string(out)))
	}
	return string(out), nil
}

func (n *fwNS) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := n.exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ours lists what the hook made in the namespace: nftables tables with
// our prefix (with their rules) and iptables lines naming our chains or
// comment, both families.
func (n *fwNS) ours(t *testing.T) string {
	t.Helper()
	var sb strings.Builder
	for _, line := range strings.Split(n.must(t, "nft", "list", "tables"), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && strings.HasPrefix(f[2], firewall.TablePrefix) {
			sb.WriteString(n.must(t, "nft", "list", "table", f[1], f[2]))
		}
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		for _, line := range strings.Split(n.must(t, save, "-t", "filter"), "\n") {
			if strings.Contains(line, firewall.ChainPrefix) || strings.Contains(line, firewall.RouteChainPrefix) ||
				strings.Contains(line, firewall.Comment) {
				sb.WriteString(save + ": " + line + "\n")
			}
		}
	}
	return sb.String()
}

// others is everything in the namespace that is not ours, comparable
// before and after: iptables-save of both families without counters and
// without our lines, and the other nftables tables.
func (n *fwNS) others(t *testing.T) string {
	t.Helper()
	var sb strings.Builder
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		for _, line := range strings.Split(n.must(t, save, "-t", "filter"), "\n") {
			if strings.HasPrefix(line, "#") || strings.Contains(line, firewall.ChainPrefix) ||
				strings.Contains(line, firewall.RouteChainPrefix) || strings.Contains(line, firewall.Comment) {
				continue
			}
			if i := strings.Index(line, " ["); strings.HasPrefix(line, ":") && i > 0 {
				line = line[:i] // policy counters
			}
			sb.WriteString(save + ": " + line + "\n")
		}
	}
	for _, line := range strings.Split(n.must(t, "nft", "list", "tables"), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && !strings.HasPrefix(f[2], firewall.TablePrefix) && f[2] != "filter" {
			sb.WriteString(n.must(t, "nft", "list", "table", f[1], f[2]))
		}
	}
	return sb.String()
}

// fwRun is one hook process and the events it added to the spool.
type fwRun struct {
	hooktest.Result
	events []events.Event
}

// run executes argv (the hook binary and its arguments, possibly behind
// wrappers) inside the namespace with exactly env, bounded.
func (n *fwNS) run(t *testing.T, sb *hooktest.Sandbox, env map[string]string, prefix []string, args ...string) fwRun {
	t.Helper()
	before := len(sb.Events(t))
	argv := append([]string{"netns", "exec", n.name}, prefix...)
	argv = append(argv, sb.Bin, "--config", sb.Config)
	argv = append(argv, args...)
	return runCounted(t, sb, before, env, "ip", argv...)
}

func runCounted(t *testing.T, sb *hooktest.Sandbox, before int, env map[string]string, name string, argv ...string) fwRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, argv...)
	cmd.Env = envfile.List(env)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	start := time.Now()
	err := cmd.Run()
	r := fwRun{Result: hooktest.Result{Stderr: stderr.String(), Elapsed: time.Since(start)}}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s %v: still running after 30s: %s", name, argv, stderr.String())
	case errors.As(err, &exit):
		r.Code = exit.ExitCode()
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.Signal = ws.Signal()
		}
	case err != nil:
		t.Fatalf("%s %v: %v", name, argv, err)
	}
	all := sb.Events(t)
	r.events = all[before:]
	return r
}

// only returns the single event the run added, failing otherwise.
func (r fwRun) only(t *testing.T) events.Event {
	t.Helper()
	if len(r.events) != 1 {
		t.Fatalf("the run added %d events, want exactly 1 (exit %d, stderr %q): %+v", len(r.events), r.Code, r.Stderr, r.events)
	}
	return r.events[0]
}

// restrictedEnv is the captured connect of a restricted user on dev, with
// IPv6 routes, a DNS server and allowed ports added.
func restrictedEnv(t *testing.T, reason, dev string) map[string]string {
	t.Helper()
	env := refEnv(t, "connect")
	env["REASON"] = reason
	env["DEVICE"] = dev
	env["OCSERV_ROUTES6"] = "2001:db8:10::/64 "
	env["OCSERV_ROUTES"] = env["OCSERV_ROUTES4"] + env["OCSERV_ROUTES6"]
	env["OCSERV_ALLOW_PORTS"] = "tcp 443 udp 53 tcp 80 icmp all "
	if reason == "disconnect" {
		env["STATS_BYTES_IN"], env["STATS_BYTES_OUT"], env["STATS_DURATION"] = "100", "200", "3"
	}
	return env
}

func fwSandbox(t *testing.T, backend string) *hooktest.Sandbox {
	t.Helper()
	// Generous budgets: these tests are about what is applied, not about
	// timing, and a loaded machine must not turn them into budget tests.
	return hooktest.NewSandbox(t, "FIREWALL=on\nFIREWALL_BACKEND="+backend+"\nHOOK_BUDGET=5s\nHOOK_FIREWALL_BUDGET=3s\n")
}

func wantFirewall(t *testing.T, e events.Event, action, backend string) {
	t.Helper()
	if e.Firewall == nil {
		t.Fatalf("%s event has no firewall object", e.Type)
	}
	f := e.Firewall
	if f.Action != action || f.Backend != backend || f.Mode != "on" {
		t.Errorf("%s event: firewall = %+v, want action %q backend %q mode on", e.Type, *f, action, backend)
	}
	if f.Micros <= 0 {
		t.Errorf("%s event: firewall.elapsed_us = %d, want > 0", e.Type, f.Micros)
	}
}

func wantAdmitted(t *testing.T, e events.Event, admitted bool) {
	t.Helper()
	if e.Admitted == nil || *e.Admitted != admitted {
		t.Errorf("%s event: admitted = %v, want %v (refusal %q)", e.Type, e.Admitted, admitted, e.Refusal)
	}
	if admitted && e.Refusal != "" {
		t.Errorf("%s event: admitted with refusal %q", e.Type, e.Refusal)
	}
	if !admitted && e.Refusal == "" {
		t.Errorf("%s event: refused without a refusal reason", e.Type)
	}
}

// TestFwConnectDisconnect: a restricted user's connect installs our rules
// for exactly that device (and the event says "applied" with the backend
// used), disconnect removes them ("removed"), with each backend and with
// auto (which must pick nftables on this kernel).
func TestFwConnectDisconnect(t *testing.T) {
	for _, tc := range []struct{ config, backend string }{
		{"nftables", "nftables"}, {"iptables", "iptables"}, {"auto", "nftables"},
	} {
		t.Run(tc.config, func(t *testing.T) {
			ns := newFwNS(t, "vpns7")
			sb := fwSandbox(t, tc.config)
			r := ns.run(t, sb, restrictedEnv(t, "connect", ns.dev), nil, "--fw")
			if r.Code != 0 {
				t.Fatalf("connect: exit %d: %s", r.Code, r.Stderr)
			}
			ce := r.only(t)
			wantFirewall(t, ce, "applied", tc.backend)
			wantAdmitted(t, ce, true)
			if ce.Hook.Chained != nil {
				t.Errorf("next_script_status = %d without OCSERV_NEXT_SCRIPT", *ce.Hook.Chained)
			}
			ours := ns.ours(t)
			switch tc.backend {
			case "nftables":
				if !strings.Contains(ours, "table inet "+firewall.TablePrefix+"vpns7") {
					t.Errorf("no nftables table for vpns7 after connect:\n%s", ours)
				}
				// The policy really went in: the allowed ports and the route.
				for _, want := range []string{`iifname "vpns7"`, "10.10.10.0/24", "2001:db8:10::/64", "dport 443"} {
					if !strings.Contains(ours, want) {
						t.Errorf("our table lacks %q:\n%s", want, ours)
					}
				}
				if strings.Contains(ours, "iptables-save") {
					t.Errorf("the nftables backend left iptables rules:\n%s", ours)
				}
			case "iptables":
				for _, want := range []string{"iptables-save: :OCTEL-vpns7", "ip6tables-save: :OCTEL-vpns7", "-A FORWARD -i vpns7", "10.10.10.0/24", "2001:db8:10::/64"} {
					if !strings.Contains(ours, want) {
						t.Errorf("our iptables rules lack %q:\n%s", want, ours)
					}
				}
				if strings.Contains(ours, "table inet") {
					t.Errorf("the iptables backend left an nftables table:\n%s", ours)
				}
			}

			r = ns.run(t, sb, restrictedEnv(t, "disconnect", ns.dev), nil, "--fw")
			if r.Code != 0 {
				t.Fatalf("disconnect: exit %d: %s", r.Code, r.Stderr)
			}
			de := r.only(t)
			wantFirewall(t, de, "removed", tc.backend)
			if de.SessionUID != ce.SessionUID {
				t.Errorf("disconnect session_uid %q, connect %q", de.SessionUID, ce.SessionUID)
			}
			if de.Stats == nil || de.Stats.BytesIn != 100 {
				t.Errorf("disconnect stats %+v", de.Stats)
			}
			if left := ns.ours(t); left != "" {
				t.Errorf("rules of ours left after disconnect:\n%s", left)
			}
		})
	}
}

// TestFwInvalidPolicyRejectsAll: a policy with an entry that does not
// parse gets the fail-closed reject-all rules, the login goes ahead (the
// user is in, but can reach nothing), and the event says why.
func TestFwInvalidPolicyRejectsAll(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			ns := newFwNS(t, "vpns3")
			sb := fwSandbox(t, backend)
			env := restrictedEnv(t, "connect", ns.dev)
			env["OCSERV_ROUTES4"] = "10.10.10.0/255.255.255.0 10.99.0.0/not-a-mask "
			env["OCSERV_ROUTES"] = env["OCSERV_ROUTES4"] + env["OCSERV_ROUTES6"]
			r := ns.run(t, sb, env, nil, "--fw")
			if r.Code != 0 {
				t.Fatalf("exit %d: %s", r.Code, r.Stderr)
			}
			e := r.only(t)
			wantFirewall(t, e, "reject-all", backend)
			wantAdmitted(t, e, true)
			if e.Policy == nil || !e.Policy.Invalid {
				t.Errorf("policy.invalid not set: %+v", e.Policy)
			}
			if e.Firewall.Error == "" {
				t.Errorf("reject-all without firewall.error")
			}
			ours := ns.ours(t)
			if ours == "" {
				t.Fatalf("reject-all left no rules")
			}
			// Reject-all holds no accept for the routes: nothing of the
			// policy went in.
			if strings.Contains(ours, "10.10.10.0/24") || strings.Contains(ours, "dport 443") || strings.Contains(ours, "--dport 443") {
				t.Errorf("reject-all rules carry parts of the invalid policy:\n%s", ours)
			}
			if !strings.Contains(ours, "reject") && !strings.Contains(ours, "REJECT") {
				t.Errorf("no reject in the fail-closed rules:\n%s", ours)
			}
			r = ns.run(t, sb, restrictedEnv(t, "disconnect", ns.dev), nil, "--fw")
			if r.Code != 0 || ns.ours(t) != "" {
				t.Errorf("disconnect after reject-all: exit %d, left:\n%s", r.Code, ns.ours(t))
			}
		})
	}
}

// brokenFirewall returns the argv prefix that makes the backend unable to
// change anything, so that neither the rules nor reject-all can go in:
//   - nftables: the hook runs without CAP_NET_ADMIN (netlink says EPERM);
//   - iptables: /bin/false is bind-mounted over iptables-restore (and the
//     multi-call binary it links to) in a private mount namespace that
//     only this one hook process lives in.
func brokenFirewall(t *testing.T, backend string, ns *fwNS) (name string, argv []string) {
	t.Helper()
	switch backend {
	case "nftables":
		return "ip", []string{"netns", "exec", ns.name, "setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--"}
	case "iptables":
		target, err := filepath.EvalSymlinks("/usr/sbin/iptables-restore")
		if err != nil {
			t.Fatal(err)
		}
		script := `mount --bind /bin/false "$1" && shift && exec "$@"`
		return "unshare", []string{"--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh", target, "ip", "netns", "exec", ns.name}
	}
	t.Fatalf("backend %q", backend)
	return "", nil
}

// TestFwBackendFailureRefuses: when neither the rules nor reject-all can
// be applied, the hook refuses the login (exit 1), records admitted=false
// with the reason, and does not run OCSERV_NEXT_SCRIPT (as ocserv-fw's
// set -e would not).
func TestFwBackendFailureRefuses(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			ns := newFwNS(t, "vpns4")
			sb := fwSandbox(t, backend)
			marker := filepath.Join(t.TempDir(), "next-ran")
			next := filepath.Join(t.TempDir(), "next.sh")
			if err := os.WriteFile(next, []byte("#!/bin/sh\ntouch '"+marker+"'\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			env := restrictedEnv(t, "connect", ns.dev)
			env["OCSERV_NEXT_SCRIPT"] = next
			name, prefix := brokenFirewall(t, backend, ns)
			before := len(sb.Events(t))
			r := runCounted(t, sb, before, env, name, append(prefix, sb.Bin, "--config", sb.Config, "--fw")...)
			if r.Code != 1 {
				t.Fatalf("exit %d, want 1 (refused): %s", r.Code, r.Stderr)
			}
			e := r.only(t)
			wantFirewall(t, e, "failed", backend)
			wantAdmitted(t, e, false)
			if !strings.Contains(e.Refusal, "firewall") || e.Firewall.Error == "" {
				t.Errorf("refusal %q, firewall.error %q: want the firewall named as the reason", e.Refusal, e.Firewall.Error)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Errorf("OCSERV_NEXT_SCRIPT ran although the login was refused")
			}
			if e.Hook.Chained != nil {
				t.Errorf("next_script_status %d recorded although it must not have run", *e.Hook.Chained)
			}
			if left := ns.ours(t); left != "" {
				t.Errorf("a failed apply left rules:\n%s", left)
			}
			// The control: the very same run without the breakage applies
			// the rules, so the refusal above came from the broken backend.
			r = ns.run(t, sb, env, nil, "--fw")
			if r.Code != 0 {
				t.Fatalf("control run: exit %d: %s", r.Code, r.Stderr)
			}
			wantFirewall(t, r.only(t), "applied", backend)
			if _, err := os.Stat(marker); err != nil {
				t.Errorf("control run: OCSERV_NEXT_SCRIPT did not run: %v", err)
			}
			ns.run(t, sb, restrictedEnv(t, "disconnect", ns.dev), nil, "--fw")
		})
	}
}

// TestFwNextScriptVerdict: the operator's OCSERV_NEXT_SCRIPT keeps its
// verdict. Exiting 3 refuses the login with status 3, recorded with the
// reason; and since ocserv runs no disconnect for a refused login, the
// rules applied for it are removed again.
func TestFwNextScriptVerdict(t *testing.T) {
	ns := newFwNS(t, "vpns5")
	sb := fwSandbox(t, "nftables")
	dir := t.TempDir()
	next := filepath.Join(dir, "next.sh")
	// It also records what it saw: ocserv's variables, run through /bin/sh.
	// ocserv-fw unsets OCSERV_NEXT_SCRIPT before running it; so does the hook.
	seen := filepath.Join(dir, "seen")
	if err := os.WriteFile(next, []byte("echo \"$REASON $USERNAME $DEVICE ${OCSERV_NEXT_SCRIPT-unset} $OCSERV_TELEMETRY_CHAINED\" > '"+seen+"'\nexit 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := restrictedEnv(t, "connect", ns.dev)
	env["OCSERV_NEXT_SCRIPT"] = next // not executable: ocserv-fw runs it with /bin/sh too
	r := ns.run(t, sb, env, nil, "--fw")
	if r.Code != 3 {
		t.Fatalf("exit %d, want the next script's 3: %s", r.Code, r.Stderr)
	}
	e := r.only(t)
	wantAdmitted(t, e, false)
	if e.Hook.Chained == nil || *e.Hook.Chained != 3 {
		t.Errorf("next_script_status = %v, want 3", e.Hook.Chained)
	}
	if !strings.Contains(e.Refusal, "next script") {
		t.Errorf("refusal %q does not name the next script", e.Refusal)
	}
	if b, err := os.ReadFile(seen); err != nil || strings.TrimSpace(string(b)) != "connect alice vpns5 unset 1" {
		t.Errorf("the next script saw %q (%v), want ocserv's environment without OCSERV_NEXT_SCRIPT (as ocserv-fw runs it) and the chained mark", b, err)
	}
	if left := ns.ours(t); left != "" {
		t.Errorf("rules of a refused login were left behind (ocserv runs no disconnect for it):\n%s", left)
	}

	// Exit 0 admits, and its status is recorded too.
	if err := os.WriteFile(next, []byte("exit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = ns.run(t, sb, env, nil, "--fw")
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Stderr)
	}
	e = r.only(t)
	wantAdmitted(t, e, true)
	wantFirewall(t, e, "applied", "nftables")
	if e.Hook.Chained == nil || *e.Hook.Chained != 0 {
		t.Errorf("next_script_status = %v, want 0", e.Hook.Chained)
	}
	ns.run(t, sb, restrictedEnv(t, "disconnect", ns.dev), nil, "--fw")
}

// TestFwChainedToOwnWrapper: installed as the fw script, the hook finds its
// own /bin/sh wrapper as OCSERV_NEXT_SCRIPT (ocserv passes the configured
// connect-script). The inner run must record nothing: one event per
// connect and per disconnect.
func TestFwChainedToOwnWrapper(t *testing.T) {
	ns := newFwNS(t, "vpns6")
	sb := fwSandbox(t, "iptables")
	wrapper := filepath.Join(t.TempDir(), "ocserv-telemetry-hook")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nexec '"+sb.Bin+"' --config '"+sb.Config+"' \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, reason := range []string{"connect", "disconnect"} {
		env := restrictedEnv(t, reason, ns.dev)
		env["OCSERV_NEXT_SCRIPT"] = wrapper
		r := ns.run(t, sb, env, nil, "--fw")
		if r.Code != 0 {
			t.Fatalf("%s: exit %d: %s", reason, r.Code, r.Stderr)
		}
		e := r.only(t) // exactly one event, not two
		if string(e.Type) != reason {
			t.Errorf("event type %q, want %q", e.Type, reason)
		}
		if e.Hook.Chained == nil || *e.Hook.Chained != 0 {
			t.Errorf("%s: next_script_status = %v, want 0", reason, e.Hook.Chained)
		}
	}
	// The control: the same wrapper run on its own (as ocserv runs it for
	// unrestricted users) does record an event, so the single event above
	// is the chained-run guard at work and not a wrapper that never ran.
	r := ns.run(t, sb, refEnv(t, "host-update"), nil)
	if len(r.events) != 1 {
		t.Errorf("the wrapper's hook alone recorded %d events", len(r.events))
	}
	if total := len(sb.Events(t)); total != 3 {
		t.Errorf("spool holds %d events, want 3", total)
	}
}

// TestFwRemoveAll: --removeall deletes what both backends made, for every
// device, and leaves an unrelated nftables table, iptables chain and rules
// (some named after the same devices) exactly as they were.
func TestFwRemoveAll(t *testing.T) {
	ns := newFwNS(t, "vpns1")
	ns.must(t, "ip", "tuntap", "add", "dev", "vpns10", "mode", "tun")
	for _, ipt := range []string{"iptables", "ip6tables"} {
		ns.must(t, ipt, "-N", "ADMIN-vpns1")
		ns.must(t, ipt, "-A", "ADMIN-vpns1", "-p", "tcp", "--dport", "25", "-j", "DROP")
		ns.must(t, ipt, "-A", "FORWARD", "-i", "vpns1", "-j", "ADMIN-vpns1")
		ns.must(t, ipt, "-A", "FORWARD", "-o", "vpns10", "-m", "comment", "--comment", "ocserv-fw", "-j", "ACCEPT")
	}
	ns.must(t, "nft", "add", "table", "inet", "admin")
	ns.must(t, "nft", "add", "chain", "inet", "admin", "adminfwd", "{ type filter hook forward priority 5; policy accept; }")
	ns.must(t, "nft", "add", "rule", "inet", "admin", "adminfwd", "iifname", "vpns1", "tcp", "dport", "25", "drop")
	ns.must(t, "nft", "add", "table", "inet", "ocserv_vpns1") // upstream ocserv-fw's name: not ours
	before := ns.others(t)
	for _, want := range []string{"ADMIN-vpns1", "table inet admin", "ocserv_vpns1", "--comment ocserv-fw"} {
		if !strings.Contains(before, want) {
			t.Fatalf("the unrelated ruleset lacks %q:\n%s", want, before)
		}
	}

	nft, ipt := fwSandbox(t, "nftables"), fwSandbox(t, "iptables")
	// A host that switched backends: one device's rules from each.
	for _, c := range []struct {
		sb           *hooktest.Sandbox
		dev, backend string
	}{{nft, "vpns1", "nftables"}, {ipt, "vpns10", "iptables"}} {
		r := ns.run(t, c.sb, restrictedEnv(t, "connect", c.dev), nil, "--fw")
		if r.Code != 0 {
			t.Fatalf("connect %s: exit %d: %s", c.dev, r.Code, r.Stderr)
		}
		wantFirewall(t, r.only(t), "applied", c.backend)
	}
	ours := ns.ours(t)
	if !strings.Contains(ours, firewall.TablePrefix+"vpns1") || !strings.Contains(ours, "OCTEL-vpns10") {
		t.Fatalf("both backends' rules should be there before --removeall:\n%s", ours)
	}
	r := ns.run(t, nft, map[string]string{"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, nil, "--removeall")
	if r.Code != 0 {
		t.Fatalf("--removeall: exit %d: %s", r.Code, r.Stderr)
	}
	if len(r.events) != 0 {
		t.Errorf("--removeall recorded %d events", len(r.events))
	}
	if left := ns.ours(t); left != "" {
		t.Errorf("--removeall left rules of ours:\n%s", left)
	}
	if after := ns.others(t); after != before {
		t.Errorf("--removeall changed others' rules:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestFwNotAsFwScriptAddsNothing: mode (b). With FIREWALL=on but run as a
// plain connect script (ocserv-fw in charge: it ran us through
// OCSERV_NEXT_SCRIPT), the hook records the event and adds no rule; the
// same holds with FIREWALL=off.
func TestFwNotAsFwScriptAddsNothing(t *testing.T) {
	ns := newFwNS(t, "vpns2")
	for _, mode := range []string{"on", "off"} {
		sb := hooktest.NewSandbox(t, "FIREWALL="+mode+"\nFIREWALL_BACKEND=nftables\n")
		for _, reason := range []string{"connect", "disconnect"} {
			r := ns.run(t, sb, restrictedEnv(t, reason, ns.dev), nil)
			if r.Code != 0 {
				t.Fatalf("FIREWALL=%s %s: exit %d: %s", mode, reason, r.Code, r.Stderr)
			}
			e := r.only(t)
			if e.Firewall == nil || e.Firewall.Action != "none" || e.Firewall.Backend != "" || e.Firewall.Mode != mode {
				t.Errorf("FIREWALL=%s %s: firewall = %+v, want action none, no backend", mode, reason, e.Firewall)
			}
			if reason == "connect" {
				wantAdmitted(t, e, true)
				if mode == "on" && !strings.Contains(r.Stderr, "fw script") {
					t.Errorf("FIREWALL=on as a plain connect script for a restricted user: no warning in %q", r.Stderr)
				}
			}
			if left := ns.ours(t); left != "" {
				t.Errorf("FIREWALL=%s %s without --fw added rules:\n%s", mode, reason, left)
			}
		}
	}
}

// TestFwLateDisconnectKeepsNextSession: issue 11 defect 2 through the hook
// binary, with each backend. Session A (ID 1001) connects on vpns3; ocserv
// gives vpns3 to session B (ID 2002) before A's disconnect has run; A's
// late disconnect (its session_uid found in the spool's sessions/ record)
// must leave B's rules, and its event must name B's session.
func TestFwLateDisconnectKeepsNextSession(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			ns := newFwNS(t, "vpns3")
			sb := fwSandbox(t, backend)
			env := func(reason, id, route string) map[string]string {
				e := restrictedEnv(t, reason, ns.dev)
				e["ID"] = id
				e["OCSERV_ROUTES4"] = route + " "
				e["OCSERV_ROUTES"] = route + " "
				return e
			}
			ca := ns.run(t, sb, env("connect", "1001", "10.1.0.0/16"), nil, "--fw").only(t)
			cb := ns.run(t, sb, env("connect", "2002", "10.2.0.0/16"), nil, "--fw").only(t)
			wantFirewall(t, cb, "applied", backend)
			withB := ns.ours(t)
			if !strings.Contains(withB, "10.2.0.0/16") || strings.Contains(withB, "10.1.0.0/16") {
				t.Fatalf("B's connect did not take the device over:\n%s", withB)
			}
			r := ns.run(t, sb, env("disconnect", "1001", "10.1.0.0/16"), nil, "--fw")
			da := r.only(t)
			if da.SessionUID != ca.SessionUID {
				t.Errorf("A's disconnect has session_uid %s, its connect %s", da.SessionUID, ca.SessionUID)
			}
			f := da.Firewall
			if f == nil || f.Action != "none" || f.SupersededBy == nil || f.SupersededBy.ID != 2002 || f.SupersededBy.SessionUID != cb.SessionUID {
				t.Errorf("A's late disconnect: firewall = %+v, want none, superseded_by {2002 %s}", f, cb.SessionUID)
			}
			if got := ns.ours(t); got != withB {
				t.Errorf("A's late disconnect changed B's rules:\nbefore:\n%s\nafter:\n%s", withB, got)
			}
			db := ns.run(t, sb, env("disconnect", "2002", "10.2.0.0/16"), nil, "--fw").only(t)
			wantFirewall(t, db, "removed", backend)
			if left := ns.ours(t); left != "" {
				t.Errorf("B's disconnect left rules:\n%s", left)
			}
		})
	}
}
