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
// "OCTELR-<dev>" (its route checks), and two jumps in FORWARD whose comment
// names the owning session ("ocserv-telemetry:id=<ID>:uid=<session_uid>");
// the rules inside the chains carry the bare comment. Every ocserv-fw
// iptables script (1.1.6 to 1.5.0) claims only rules whose comment is
// "ocserv-fw" and chains named "INPUT-ocserv-fw*" or
// "FORWARD-ocserv-fw-<dev>", so neither ever removes the other's rules
// (names_test.go checks each version's patterns), and no device name can
// make one prefix look like the other.
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
	pre     string // "iptables" or "ip6tables"
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
		b.fams = append(b.fams, &iptFamily{v: f.v, pre: f.pre, restore: restore, save: save})
	}
	return b, nil
}

func (*iptBackend) Name() string { return KindIptables }

func (b *iptBackend) Apply(ctx context.Context, dev string, owner Owner, p *events.Policy) error {
	pl, err := buildPlan(dev, p)
	if err != nil {
		return err
	}
	return b.each(func(f *iptFamily) error { return f.install(ctx, pl, owner) })
}

func (b *iptBackend) RejectAll(ctx context.Context, dev string, owner Owner) error {
	pl, err := rejectPlan(dev)
	if err != nil {
		return err
	}
	return b.each(func(f *iptFamily) error { return f.install(ctx, pl, owner) })
}

// Remove removes owner's rules for dev. The two families are separate
// tables and each is checked on its own; when either is another session's
// the answer is that NotOwnerError (once, not once per family). A family
// whose rules were owner's has been cleaned either way.
func (b *iptBackend) Remove(ctx context.Context, dev string, owner Owner) error {
	if err := ValidDevice(dev); err != nil {
		return err
	}
	if owner.ID <= 0 {
		return errNoOwner
	}
	err := b.each(func(f *iptFamily) error { return f.remove(ctx, dev, &owner) })
	var notOwner *NotOwnerError
	if errors.As(err, &notOwner) {
		return notOwner
	}
	return err
}

func (b *iptBackend) Clear(ctx context.Context, dev string) error {
	if err := ValidDevice(dev); err != nil {
		return err
	}
	return b.each(func(f *iptFamily) error { return f.remove(ctx, dev, nil) })
}

// Close is there for OpenHeld's callers: the iptables backend holds
// nothing between calls (each change is an iptables-restore that has
// exited when the call returns).
func (*iptBackend) Close() error { return nil }

// each runs fn for IPv4 and IPv6 at the same time: the two families are
// separate tables (and separate restore transactions) anyway, and running
// both processes in parallel halves the time the hook waits.
//
// A process inherits the network namespace of the thread that starts it.
// The backend works in the namespace of the calling thread (as the
// nftables backend's socket does), so a helper goroutine whose thread is
// in another namespace (the caller switched its own locked thread) joins
// the caller's first.
func (b *iptBackend) each(fn func(*iptFamily) error) error {
	caller, err := callerNetns()
	if err != nil {
		return err
	}
	defer caller.Close()
	errs := make([]error, len(b.fams))
	var wg sync.WaitGroup
	for i, f := range b.fams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			moved, err := joinNetns(caller)
			if !moved {
				// Else never unlocked: the thread ends with this goroutine
				// rather than going back to the pool in a foreign namespace.
				runtime.UnlockOSThread()
			}
			if err != nil {
				errs[i] = err
				return
			}
			errs[i] = fn(f)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// callerNetns opens the calling thread's network namespace. Threads in the
// pool are all in the namespace the process started in (a thread switched
// into another one is never returned to it), but the caller's own locked
// thread may have been switched: so the helpers compare their thread with
// the caller's, not with the process's (no record made at start-up, which
// would cost every hook run a /proc lookup).
func callerNetns() (*os.File, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("read the caller's network namespace: %w", err)
	}
	return f, nil
}

// joinNetns moves the calling goroutine's locked thread into ns unless it
// is there already, and says whether it moved. In the hook nothing
// switches, so no setns is ever needed there (it would need
// CAP_SYS_ADMIN).
func joinNetns(ns *os.File) (bool, error) {
	var want, here unix.Stat_t
	if err := unix.Fstat(int(ns.Fd()), &want); err != nil {
		return false, fmt.Errorf("read the caller's network namespace: %w", err)
	}
	if err := unix.Stat("/proc/thread-self/ns/net", &here); err != nil {
		return false, fmt.Errorf("read this thread's network namespace: %w", err)
	}
	if here.Ino == want.Ino && here.Dev == want.Dev {
		return false, nil
	}
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		return false, fmt.Errorf("join the caller's network namespace: %w", err) // setns changed nothing
	}
	return true, nil
}

func mainChain(dev string) string  { return ChainPrefix + dev }
func routeChain(dev string) string { return RouteChainPrefix + dev }

// jumpComment is the comment of the FORWARD jumps: Comment and the owner,
// without spaces or quotes, so iptables-save prints it as one word that
// iptables-restore reads back unchanged.
func jumpComment(owner Owner) string {
	c := Comment + ":id=" + strconv.Itoa(owner.ID)
	if owner.UID != "" {
		c += ":uid=" + owner.UID
	}
	return c
}

// parseJumpComment reads the owner from a jump's comment; legacy is true
// for the bare Comment of releases that recorded no owner.
func parseJumpComment(c string) (owner Owner, legacy, ok bool) {
	if c == Comment {
		return Owner{}, true, true
	}
	rest, found := strings.CutPrefix(c, Comment+":id=")
	if !found {
		return Owner{}, false, false
	}
	id, uid, hasUID := strings.Cut(rest, ":uid=")
	n, err := strconv.Atoi(id)
	if err != nil || n <= 0 || (hasUID && uid == "") {
		return Owner{}, false, false
	}
	return Owner{ID: n, UID: uid}, false, true
}

// jumpSpecs are the two FORWARD rules that send the device's traffic to its
// chain, without the leading -A/-I/-D. Inserted at the top of FORWARD, so
// the device's policy is decided before the host's own FORWARD rules.
func jumpSpecs(dev string, owner Owner) []string {
	tail := " -m comment --comment " + jumpComment(owner) + " -j " + mainChain(dev)
	return []string{"-i " + dev + tail, "-o " + dev + tail}
}

// body renders the chains' rules (the chains exist and are empty) and
// the FORWARD jumps, for this family.
func (f *iptFamily) body(pl *plan, owner Owner) string {
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
	js := jumpSpecs(pl.dev, owner)
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
// detected without listing first. Then the table is listed and whatever is
// ours for the device (whoever owns it) is cleared in the same transaction
// as the new rules go in; that is retried when something changed between
// the listing and the transaction (a late disconnect removing its own
// rules at that moment, say).
func (f *iptFamily) install(ctx context.Context, pl *plan, owner Owner) error {
	mc, rc := mainChain(pl.dev), routeChain(pl.dev)
	body := f.body(pl, owner)
	errFresh := f.run(ctx, "-N "+mc+"\n-N "+rc+"\n"+body)
	if errFresh == nil || ctx.Err() != nil {
		return errFresh
	}
	var err error
	for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
		var sv *saved
		if sv, err = f.list(ctx, func(c string) bool { return c == mc || c == rc }); err != nil {
			return err
		}
		var pre strings.Builder
		pre.WriteString(sv.deletions(nil))
		for _, c := range []string{mc, rc} {
			if sv.chains[c] {
				pre.WriteString("-F " + c + "\n")
			} else {
				pre.WriteString("-N " + c + "\n")
			}
		}
		if err = f.run(ctx, pre.String()+body); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%w (first attempt: %v)", err, errFresh)
}

// remove deletes the device's jumps and chains in one transaction, if the
// jumps are owner's (owner nil: whoever's). With the owner's session_uid
// known the common case is one process: the jumps are deleted by their
// exact text, comment included, which fails the whole transaction when the
// rules are another session's. Otherwise the table is listed and exactly
// what is there is removed, still by exact text, so a change in between
// fails the transaction rather than removing someone else's rules.
func (f *iptFamily) remove(ctx context.Context, dev string, owner *Owner) error {
	mc, rc := mainChain(dev), routeChain(dev)
	chains := "-F " + mc + "\n-X " + mc + "\n-F " + rc + "\n-X " + rc + "\n"
	var errKnown error
	if owner != nil && owner.UID != "" {
		js := jumpSpecs(dev, *owner)
		errKnown = f.run(ctx, "-D "+iptForwardChain+" "+js[0]+"\n-D "+iptForwardChain+" "+js[1]+"\n"+chains)
		if errKnown == nil || ctx.Err() != nil {
			return errKnown
		}
	}
	sv, err := f.list(ctx, func(c string) bool { return c == mc || c == rc })
	if err != nil {
		return err
	}
	if owner != nil {
		for _, j := range sv.jumps {
			if !j.legacy && !owner.matches(j.owner) {
				return &NotOwnerError{Dev: dev, Current: j.owner}
			}
		}
	}
	script := sv.deletions(nil)
	for _, c := range []string{mc, rc} {
		if sv.chains[c] {
			script += "-F " + c + "\n"
		}
	}
	for _, c := range []string{mc, rc} {
		if sv.chains[c] {
			script += "-X " + c + "\n"
		}
	}
	if script == "" {
		return nil // nothing of ours for this device
	}
	if err := f.run(ctx, script); err != nil {
		if errKnown != nil {
			return fmt.Errorf("%w (by owner: %v)", err, errKnown)
		}
		return err
	}
	return nil
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

// saved is what iptables-save shows of chains selected by a test: the
// rules outside them that jump to them, and which of them exist.
type saved struct {
	jumps  []savedJump
	chains map[string]bool
}

type savedJump struct {
	rule   string // as iptables-save printed it, without "-A "
	owner  Owner
	legacy bool // the bare comment of a release that recorded no owner
}

// deletions returns "-D" lines for the jumps keep does not keep (nil: all).
func (sv *saved) deletions(keep func(savedJump) bool) string {
	var del strings.Builder
	for _, j := range sv.jumps {
		if keep == nil || !keep(j) {
			// iptables-save prints rules in the syntax restore reads.
			del.WriteString("-D " + j.rule + "\n")
		}
	}
	return del.String()
}

// unquote undoes the double quotes iptables-save and iptables -S put
// around a word with characters other than letters, digits and a few
// others (our owner comments: ':' and '='). Our words never hold spaces,
// quotes or backslashes, so nothing else needs undoing.
func unquote(tok string) string {
	if len(tok) >= 2 && tok[0] == '"' && tok[len(tok)-1] == '"' {
		return tok[1 : len(tok)-1]
	}
	return tok
}

// list reads iptables-save's filter table (one process, bounded like every
// helper: see runChild).
func (f *iptFamily) list(ctx context.Context, ours func(string) bool) (*saved, error) {
	out, err := runChild(ctx, nil, f.save, "-t", iptablesSaveTable)
	if err != nil {
		return nil, err
	}
	return parseSave(string(out), ours), nil
}

// parseSave does the work of list on iptables-save output.
func parseSave(out string, ours func(string) bool) *saved {
	sv := &saved{chains: map[string]bool{}}
	for _, line := range strings.Split(out, "\n") {
		if name, ok := strings.CutPrefix(line, ":"); ok {
			name, _, _ = strings.Cut(name, " ")
			if ours(name) {
				sv.chains[name] = true
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
				j := savedJump{rule: rest}
				for k := 1; k+1 < len(toks); k++ {
					if toks[k] == "--comment" {
						j.owner, j.legacy, _ = parseJumpComment(unquote(toks[k+1]))
					}
				}
				sv.jumps = append(sv.jumps, j)
				break
			}
		}
	}
	return sv
}

// run feeds one transaction to iptables-restore --noflush on stdin (argv,
// no shell; nothing else in the table is touched).
func (f *iptFamily) run(ctx context.Context, script string) error {
	return runRestore(ctx, f.restore, script)
}

// runRestore feeds one transaction of the filter table to restore, an
// iptables-restore (of any flavour or family).
func runRestore(ctx context.Context, restore, script string) error {
	_, err := runChild(ctx, strings.NewReader("*filter\n"+script+"COMMIT\n"), restore, "-w", iptWaitSeconds, "--noflush")
	return err
}
