package firewall

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

// Names of what the iptables backend makes, in the filter table of both
// families: chain "OCTEL-<dev>" (traffic from and to the device), chain
// "OCTELR-<dev>" (its route checks), and two jumps in FORWARD tagged with
// the comment. The prefixes differ from ocserv-fw's ("FORWARD-ocserv-fw-",
// comment "ocserv-fw"), so neither ever removes the other's rules, and no
// device name can make one prefix look like the other.
const (
	ChainPrefix       = "OCTEL-"
	RouteChainPrefix  = "OCTELR-"
	Comment           = "ocserv-telemetry"
	iptWaitSeconds    = "5" // -w: how long iptables-legacy waits for the xtables lock
	iptForwardChain   = "FORWARD"
	iptablesSaveTable = "filter"
)

type iptBackend struct {
	fams []*iptFamily
}

type iptFamily struct {
	v       int    // 4 or 6
	restore string // iptables-restore / ip6tables-restore
	save    string // iptables-save / ip6tables-save
}

// sbinDirs are searched too: ocserv runs scripts with a PATH that may lack
// the sbin directories (ocserv-fw prepends them for the same reason).
var sbinDirs = []string{"/usr/sbin", "/sbin"}

func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range sbinDirs {
		if p, err := exec.LookPath(d + "/" + name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

func newIptables() (*iptBackend, error) {
	b := &iptBackend{}
	for _, f := range []struct {
		v   int
		pre string
	}{{4, "iptables"}, {6, "ip6tables"}} {
		restore, err := lookTool(f.pre + "-restore")
		if err != nil {
			return nil, err
		}
		save, err := lookTool(f.pre + "-save")
		if err != nil {
			return nil, err
		}
		b.fams = append(b.fams, &iptFamily{v: f.v, restore: restore, save: save})
	}
	return b, nil
}

func (*iptBackend) Name() string { return KindIptables }

func (b *iptBackend) Apply(ctx context.Context, dev string, p *events.Policy) error {
	pl, err := buildPlan(dev, p)
	if err != nil {
		return err
	}
	return b.each(func(f *iptFamily) error { return f.install(ctx, pl) })
}

func (b *iptBackend) RejectAll(ctx context.Context, dev string) error {
	pl, err := rejectPlan(dev)
	if err != nil {
		return err
	}
	return b.each(func(f *iptFamily) error { return f.install(ctx, pl) })
}

func (b *iptBackend) Remove(ctx context.Context, dev string) error {
	if err := ValidDevice(dev); err != nil {
		return err
	}
	return b.each(func(f *iptFamily) error { return f.remove(ctx, dev) })
}

func (b *iptBackend) RemoveAll(ctx context.Context) error {
	return b.each(func(f *iptFamily) error { return f.removeAll(ctx) })
}

// each runs fn for IPv4 and IPv6 at the same time: the two families are
// separate tables (and separate restore transactions) anyway, and running
// both processes in parallel halves the time the hook waits.
//
// A process inherits the network namespace of the thread that starts it.
// The backend works in the namespace of the calling thread (as the
// nftables backend's socket does), so when that is not the process's
// namespace the helper goroutines join it first.
func (b *iptBackend) each(fn func(*iptFamily) error) error {
	join, err := callerNetns()
	if err != nil {
		return err
	}
	if join != nil {
		defer join.Close()
	}
	errs := make([]error, len(b.fams))
	var wg sync.WaitGroup
	for i, f := range b.fams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if join != nil {
				// Never unlocked: the thread ends with this goroutine rather
				// than going back to the pool in a foreign namespace.
				runtime.LockOSThread()
				if err := unix.Setns(int(join.Fd()), unix.CLONE_NEWNET); err != nil {
					errs[i] = fmt.Errorf("join the caller's network namespace: %w", err)
					return
				}
			}
			errs[i] = fn(f)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// callerNetns returns the calling thread's network namespace when it
// differs from the one the process started in (a caller that switched its
// locked thread into another namespace), else nil. It compares with the
// namespace recorded at start-up, not with /proc/self (the main thread),
// because the main thread itself may be the one a caller switched. In the
// hook nothing switches, so no setns is ever needed there (it would need
// CAP_SYS_ADMIN).
func callerNetns() (*os.File, error) {
	if startNetns.err != nil {
		return nil, startNetns.err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var thread unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &thread); err != nil {
		return nil, err
	}
	if thread.Ino == startNetns.st.Ino && thread.Dev == startNetns.st.Dev {
		return nil, nil
	}
	return os.Open("/proc/thread-self/ns/net")
}

// startNetns is the network namespace the process started in. Package
// initialisation runs on the main goroutine, locked to the main thread,
// before any code could have switched a thread.
var startNetns = func() (s struct {
	st  unix.Stat_t
	err error
}) {
	s.err = unix.Stat("/proc/thread-self/ns/net", &s.st)
	return s
}()

func mainChain(dev string) string  { return ChainPrefix + dev }
func routeChain(dev string) string { return RouteChainPrefix + dev }

// jumpSpecs are the two FORWARD rules that send the device's traffic to its
// chain, without the leading -A/-I/-D. Inserted at the top of FORWARD, so
// the device's policy is decided before the host's own FORWARD rules.
func jumpSpecs(dev string) []string {
	tail := " -m comment --comment " + Comment + " -j " + mainChain(dev)
	return []string{"-i " + dev + tail, "-o " + dev + tail}
}

// body renders the chains' rules (the chains exist and are empty) and
// the FORWARD jumps, for this family.
func (f *iptFamily) body(pl *plan) string {
	var sb strings.Builder
	mc, rc := mainChain(pl.dev), routeChain(pl.dev)
	tag := " -m comment --comment " + Comment
	if pl.reject {
		sb.WriteString("-A " + mc + tag + " -j REJECT\n")
	} else {
		// Return traffic to the device (both families: ocserv-fw 1.1.6 has
		// no IPv6 rule), then anything else not from the device goes back
		// to FORWARD: only the device's own traffic is ours to judge.
		sb.WriteString("-A " + mc + " -o " + pl.dev + " -m conntrack --ctstate RELATED,ESTABLISHED" + tag + " -j ACCEPT\n")
		sb.WriteString("-A " + mc + " ! -i " + pl.dev + tag + " -j RETURN\n")
		for _, r := range pl.user {
			if s, ok := iptRule(f.v, r, rc); ok {
				sb.WriteString("-A " + mc + " " + s + "\n")
			}
		}
		for _, r := range pl.routes {
			if s, ok := iptRule(f.v, r, rc); ok {
				sb.WriteString("-A " + rc + " " + s + "\n")
			}
		}
	}
	// -I 1 twice: the -o jump ends up second, the -i jump first.
	js := jumpSpecs(pl.dev)
	sb.WriteString("-I " + iptForwardChain + " 1 " + js[1] + "\n")
	sb.WriteString("-I " + iptForwardChain + " 1 " + js[0] + "\n")
	return sb.String()
}

// iptRule renders one plan rule for family v; false when the rule is for
// the other family.
func iptRule(v int, r rule, routes string) (string, bool) {
	if r.family != 0 && r.family != v {
		return "", false
	}
	var a []string
	if r.dst.IsValid() {
		a = append(a, "-d", r.dst.String())
	}
	switch r.proto {
	case "":
	case "icmpv6":
		a = append(a, "-p", "ipv6-icmp")
		if r.icmp6 >= 0 {
			a = append(a, "-m", "icmp6", "--icmpv6-type", strconv.Itoa(r.icmp6))
		}
	default:
		a = append(a, "-p", r.proto)
	}
	if r.port != 0 {
		a = append(a, "--dport", strconv.Itoa(r.port))
	}
	if r.ctNew {
		a = append(a, "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED")
	}
	a = append(a, "-m", "comment", "--comment", Comment, "-j")
	switch r.v {
	case vAccept:
		a = append(a, "ACCEPT")
	case vReject:
		a = append(a, "REJECT")
	case vRoutes:
		a = append(a, routes)
	}
	return strings.Join(a, " "), true
}

// install puts the plan in place in one restore transaction. The common
// case costs one process: "-N" fails the whole transaction (changing
// nothing) when the chain already exists, which is how a leftover is
// detected without listing first. Then the known layout is replaced, and
// only if that fails too (someone edited our rules) is the table listed and
// whatever is ours for the device cleared in the same transaction.
func (f *iptFamily) install(ctx context.Context, pl *plan) error {
	mc, rc := mainChain(pl.dev), routeChain(pl.dev)
	body := f.body(pl)
	fresh := "-N " + mc + "\n-N " + rc + "\n" + body
	errFresh := f.run(ctx, fresh)
	if errFresh == nil {
		return nil
	}
	if ctx.Err() != nil {
		return errFresh
	}
	js := jumpSpecs(pl.dev)
	replace := "-D " + iptForwardChain + " " + js[0] + "\n-D " + iptForwardChain + " " + js[1] + "\n" +
		"-F " + mc + "\n-F " + rc + "\n" + body
	if f.run(ctx, replace) == nil {
		return nil
	}
	cleanup, exists, err := f.cleanupFor(ctx, pl.dev)
	if err != nil {
		return err
	}
	var pre strings.Builder
	pre.WriteString(cleanup)
	for _, c := range []string{mc, rc} {
		if exists[c] {
			pre.WriteString("-F " + c + "\n")
		} else {
			pre.WriteString("-N " + c + "\n")
		}
	}
	if err := f.run(ctx, pre.String()+body); err != nil {
		return fmt.Errorf("%w (first attempt: %v)", err, errFresh)
	}
	return nil
}

// remove deletes the device's jumps and chains in one transaction; when
// that fails (nothing there, or a layout someone changed) it lists and
// removes exactly what is ours for this device.
func (f *iptFamily) remove(ctx context.Context, dev string) error {
	mc, rc := mainChain(dev), routeChain(dev)
	js := jumpSpecs(dev)
	known := "-D " + iptForwardChain + " " + js[0] + "\n-D " + iptForwardChain + " " + js[1] + "\n" +
		"-F " + mc + "\n-X " + mc + "\n-F " + rc + "\n-X " + rc + "\n"
	errKnown := f.run(ctx, known)
	if errKnown == nil || ctx.Err() != nil {
		return errKnown
	}
	cleanup, exists, err := f.cleanupFor(ctx, dev)
	if err != nil {
		return err
	}
	script := cleanup
	for _, c := range []string{mc, rc} {
		if exists[c] {
			script += "-F " + c + "\n"
		}
	}
	for _, c := range []string{mc, rc} {
		if exists[c] {
			script += "-X " + c + "\n"
		}
	}
	if script == "" {
		return nil // nothing of ours for this device
	}
	return f.run(ctx, script)
}

// cleanupFor lists the filter table and returns "-D" lines for every rule
// that jumps to the device's chains (compared as whole tokens, so vpns1's
// cleanup never matches vpns10's chains), and which of its chains exist.
func (f *iptFamily) cleanupFor(ctx context.Context, dev string) (string, map[string]bool, error) {
	mine := map[string]bool{mainChain(dev): true, routeChain(dev): true}
	return f.cleanup(ctx, func(chain string) bool { return mine[chain] })
}

func (f *iptFamily) removeAll(ctx context.Context) error {
	cleanup, exists, err := f.cleanup(ctx, isOurChain)
	if err != nil {
		return err
	}
	script := cleanup
	for c := range exists {
		script += "-F " + c + "\n"
	}
	for c := range exists {
		script += "-X " + c + "\n"
	}
	if script == "" {
		return nil
	}
	return f.run(ctx, script)
}

// isOurChain reports whether a chain name is one this backend makes.
func isOurChain(c string) bool {
	for _, p := range []string{ChainPrefix, RouteChainPrefix} {
		if d, ok := strings.CutPrefix(c, p); ok && ValidDevice(d) == nil {
			return true
		}
	}
	return false
}

// cleanup reads iptables-save's filter table (one process, and it honours
// ctx, which go-iptables' listing calls do not) and returns "-D" lines for
// the rules outside our chains that jump to a chain selected by ours, plus
// the selected chains that exist.
func (f *iptFamily) cleanup(ctx context.Context, ours func(string) bool) (string, map[string]bool, error) {
	out, err := runChild(ctx, nil, f.save, "-t", iptablesSaveTable)
	if err != nil {
		return "", nil, err
	}
	return parseSave(string(out), ours)
}

// parseSave does the work of cleanup on iptables-save output.
func parseSave(out string, ours func(string) bool) (string, map[string]bool, error) {
	exists := map[string]bool{}
	var del strings.Builder
	for _, line := range strings.Split(out, "\n") {
		if name, ok := strings.CutPrefix(line, ":"); ok {
			name, _, _ = strings.Cut(name, " ")
			if ours(name) {
				exists[name] = true
			}
			continue
		}
		rest, ok := strings.CutPrefix(line, "-A ")
		if !ok {
			continue
		}
		toks := strings.Fields(rest)
		if len(toks) == 0 || ours(toks[0]) {
			continue // rules inside our chains go with the chain
		}
		for i := 1; i+1 < len(toks); i++ {
			if (toks[i] == "-j" || toks[i] == "-g") && ours(toks[i+1]) {
				// iptables-save prints rules in the syntax restore reads.
				del.WriteString("-D " + rest + "\n")
				break
			}
		}
	}
	return del.String(), exists, nil
}

// run feeds one transaction to iptables-restore --noflush on stdin (argv,
// no shell; nothing else in the table is touched).
func (f *iptFamily) run(ctx context.Context, script string) error {
	_, err := runChild(ctx, strings.NewReader("*filter\n"+script+"COMMIT\n"), f.restore, "-w", iptWaitSeconds, "--noflush")
	return err
}
