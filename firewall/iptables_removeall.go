package firewall

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// RemoveAll deletes every jump to our chains and the chains themselves, in
// both families and in each iptables flavour the host has (legacy and
// nf_tables: a host that switched the iptables alternative since our rules
// went in still has them in the other one), and nothing else.
//
// This is go-iptables' job, not iptables-restore's: no atomicity is needed
// (jumps go before their chains, and a half-done run is finished by the
// next), and it is an operator's command, not a login's. go-iptables runs
// each command without a context or a bound on its wait (a stuck helper
// would hold its caller), so the run is bounded here from outside: when ctx
// ends RemoveAll returns, saying so, and leaves the commands still running
// to finish on their own. The hook's own paths never use it for that
// reason (runChild bounds every helper they start).
func (b *iptBackend) RemoveAll(ctx context.Context) error {
	// The namespace is the caller's thread's, found here: the goroutine
	// below may run on any thread.
	join, err := callerNetns()
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		if join != nil {
			defer join.Close()
		}
		done <- b.eachIn(join, func(f *iptFamily) error { return f.removeAllFlavours() })
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("iptables: remove all: %w (commands still running were left to finish)", ctx.Err())
	}
}

// flavour is one iptables implementation on the host.
type flavour struct {
	name string // "legacy", "nf_tables", or "" for the host's default iptables
	path string
}

// flavours lists the family's iptables flavours that can hold rules of
// ours. The legacy one counts only when its filter table is loaded in this
// network namespace (listing it would otherwise load the kernel modules,
// a change to the host for nothing).
func (f *iptFamily) flavours() []flavour {
	var out []flavour
	if p, err := lookTool(f.pre + "-legacy"); err == nil && legacyFilterLoaded(f.v) {
		out = append(out, flavour{"legacy", p})
	}
	if p, err := lookTool(f.pre + "-nft"); err == nil {
		out = append(out, flavour{"nf_tables", p})
	}
	if len(out) == 0 {
		if p, err := lookTool(f.pre); err == nil {
			out = append(out, flavour{"", p})
		}
	}
	return out
}

// legacyFilterLoaded reports whether the legacy (x_tables) filter table of
// the family exists in the calling thread's network namespace.
func legacyFilterLoaded(v int) bool {
	name := "/proc/thread-self/net/ip_tables_names"
	if v == 6 {
		name = "/proc/thread-self/net/ip6_tables_names"
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return false
	}
	for _, t := range strings.Fields(string(b)) {
		if t == iptablesSaveTable {
			return true
		}
	}
	return false
}

func (f *iptFamily) removeAllFlavours() error {
	fl := f.flavours()
	if len(fl) == 0 {
		return fmt.Errorf("%s: no iptables command found", f.pre)
	}
	var errs []error
	for _, x := range fl {
		if err := f.removeAllWith(x.path); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", f.pre, x.name, err))
		}
	}
	return errors.Join(errs...)
}

// removeAllWith removes everything of ours with one iptables command:
// first every rule outside our chains that jumps to one of them, then our
// chains.
func (f *iptFamily) removeAllWith(path string) error {
	proto := iptables.ProtocolIPv4
	if f.v == 6 {
		proto = iptables.ProtocolIPv6
	}
	ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Path(path), iptables.Timeout(5))
	if err != nil {
		return err
	}
	chains, err := ipt.ListChains(iptablesSaveTable)
	if err != nil {
		return err
	}
	var ours []string
	for _, c := range chains {
		if isOurChain(c) {
			ours = append(ours, c)
			continue
		}
		rules, err := ipt.List(iptablesSaveTable, c)
		if err != nil {
			return err
		}
		for _, r := range rules {
			spec, ok := jumpToOurs(r, c)
			if !ok {
				continue
			}
			if err := ipt.Delete(iptablesSaveTable, c, spec...); err != nil {
				return fmt.Errorf("delete %q: %w", r, err)
			}
		}
	}
	for _, c := range ours {
		if err := ipt.ClearAndDeleteChain(iptablesSaveTable, c); err != nil {
			return err
		}
	}
	return nil
}

// jumpToOurs returns the rule spec of an "-A chain …" line (as iptables -S
// prints it) that jumps or goes to one of our chains.
func jumpToOurs(line, chain string) ([]string, bool) {
	toks := strings.Fields(line)
	if len(toks) < 2 || toks[0] != "-A" || toks[1] != chain {
		return nil, false
	}
	spec := toks[2:]
	for i := range spec {
		spec[i] = unquote(spec[i]) // go-iptables passes each word as one argument
	}
	for i := 0; i+1 < len(spec); i++ {
		if (spec[i] == "-j" || spec[i] == "-g") && isOurChain(spec[i+1]) {
			return spec, true
		}
	}
	return nil, false
}
