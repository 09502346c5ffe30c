//go:build e2e

package firewall

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/rules golden files from what the kernel lists")

// listOurs returns what the kernel holds for our rules in ns, in a stable
// text form: the nft table(s) of ours, and iptables-save's filter table for
// both families without counters or the dump's header lines.
func listOurs(t testing.TB, ns *netns) string {
	t.Helper()
	var sb strings.Builder
	out := ns.must(t, "nft", "list", "tables")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) == 3 && strings.HasPrefix(f[2], TablePrefix) {
			sb.WriteString(ns.must(t, "nft", "list", "table", f[1], f[2]))
		}
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		sb.WriteString("# " + save + "\n")
		sb.WriteString(cleanSave(ns.must(t, save, "-t", "filter")))
	}
	return sb.String()
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

func cleanSave(s string) string {
	var sb strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sb.WriteString(counters.ReplaceAllString(line, "[0:0]") + "\n")
	}
	return sb.String()
}

// TestRulesInstalled applies every test case with each backend in a fresh
// namespace and compares what the kernel then lists with the reviewed
// golden files; disconnect must bring the listing back to the empty state.
func TestRulesInstalled(t *testing.T) {
	requireRoot(t)
	for _, kind := range []string{KindNftables, KindIptables} {
		b, err := Open(kind)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range testCases(t) {
			t.Run(kind+"/"+c.name, func(t *testing.T) {
				ns := newNetns(t, "rules")
				empty := listOurs(t, ns)
				p := policyOf(t, c.env)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				var out Outcome
				if err := ns.do(func() error { out = Connect(ctx, b, "vpns7", testOwner, p); return nil }); err != nil {
					t.Fatal(err)
				}
				if out.Action != ActionApplied || out.Err != nil {
					t.Fatalf("connect: %+v", out)
				}
				assertHostUntouched(t)
				got := listOurs(t, ns)
				golden(t, filepath.Join("testdata", "rules", c.name+"."+kind+".txt"), got)
				if err := ns.do(func() error { out = Disconnect(ctx, b, "vpns7", testOwner); return nil }); err != nil {
					t.Fatal(err)
				}
				if out.Action != ActionRemoved {
					t.Fatalf("disconnect: %+v", out)
				}
				if after := listOurs(t, ns); after != empty {
					t.Errorf("after disconnect:\n%s\nwant the empty state:\n%s", after, empty)
				}
			})
		}
	}
}

func golden(t testing.TB, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it, then review it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs; kernel lists:\n%s\nwant:\n%s", path, got, want)
	}
}
