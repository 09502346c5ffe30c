package firewall

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// RemoveAll deletes every jump to our chains and the chains themselves, in
// both families and in each iptables flavour the host has (legacy and
// nf_tables: a host that switched the iptables alternative since our rules
// went in still has them in the other one), and nothing else.
//
// Like every other change this backend makes, it is one
// "iptables-restore --noflush" transaction per family and flavour, built
// from what iptables-save lists, under runChild's bounds: a stuck helper
// is killed when ctx ends, and nothing is left running. (go-iptables did
// this job until it was found to cost every login: its package-level
// regexp, and the unicode tables regexp needs, are compiled when the hook
// starts, whether or not the run touches iptables; docs/benchmarks.md.)
func (b *iptBackend) RemoveAll(ctx context.Context) error {
	return b.each(func(f *iptFamily) error { return f.removeAllFlavours(ctx) })
}

// flavour is one iptables implementation on the host: its save and
// restore commands.
type flavour struct {
	name          string // "legacy", "nf_tables", or "" for the host's default iptables
	save, restore string
}

// flavours lists the family's iptables flavours that can hold rules of
// ours. The legacy one counts only when its filter table is loaded in this
// network namespace (listing it would otherwise load the kernel modules,
// a change to the host for nothing).
func (f *iptFamily) flavours() []flavour {
	var out []flavour
	look := func(name, infix string) {
		save, err := lookTool(f.pre + infix + "-save")
		if err != nil {
			return
		}
		restore, err := lookTool(f.pre + infix + "-restore")
		if err != nil {
			return
		}
		out = append(out, flavour{name, save, restore})
	}
	if legacyFilterLoaded(f.v) {
		look("legacy", "-legacy")
	}
	look("nf_tables", "-nft")
	if len(out) == 0 {
		out = append(out, flavour{"", f.save, f.restore})
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

func (f *iptFamily) removeAllFlavours(ctx context.Context) error {
	var errs []error
	for _, x := range f.flavours() {
		if err := f.removeAllWith(ctx, x); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", f.pre, x.name, err))
		}
	}
	return errors.Join(errs...)
}

// removeAllWith removes everything of ours from one flavour's filter table
// in one transaction: every rule outside our chains that jumps to one of
// them, then our chains, flushed before any is deleted (one may jump to
// another). The rules are deleted by their exact text, so when the table
// changed between the listing and the transaction (a disconnect removing
// its own rules at that moment, say), the transaction fails whole and is
// tried again on a new listing.
func (f *iptFamily) removeAllWith(ctx context.Context, x flavour) error {
	var err error
	for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
		var out []byte
		if out, err = runChild(ctx, nil, x.save, "-t", iptablesSaveTable); err != nil {
			return err
		}
		script := removeAllScript(string(out))
		if script == "" {
			return nil // nothing of ours in this flavour
		}
		if err = runRestore(ctx, x.restore, script); err == nil {
			return nil
		}
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// removeAllScript is the transaction that removes everything of ours from
// a filter table iptables-save printed: "-D" for each jump to one of our
// chains from outside them (by its exact text, comment quoting included),
// then "-F" for each of our chains, then "-X" ("" when nothing is ours).
func removeAllScript(save string) string {
	sv := parseSave(save, isOurChain)
	chains := make([]string, 0, len(sv.chains))
	for c := range sv.chains {
		chains = append(chains, c)
	}
	sort.Strings(chains)
	var sb strings.Builder
	sb.WriteString(sv.deletions(nil))
	for _, op := range []string{"-F ", "-X "} {
		for _, c := range chains {
			sb.WriteString(op + c + "\n")
		}
	}
	return sb.String()
}
