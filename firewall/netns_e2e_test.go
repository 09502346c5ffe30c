//go:build e2e

package firewall

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// These helpers keep every root test inside network namespaces the test
// made itself: nothing here may touch the host's own ruleset.

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes network namespaces and firewall rules (run: go test -tags e2e -count=1 -p 1 ./firewall/...)")
	}
	for _, tool := range []string{"ip", "nft", "iptables-save", "ip6tables-save", "iptables-restore", "ping"} {
		if _, err := lookTool(tool); err != nil {
			t.Fatalf("%s is needed: %v", tool, err)
		}
	}
	t.Cleanup(func() { assertHostUntouched(t) })
}

// assertHostUntouched reads (never changes) the host namespace's rulesets:
// a test that leaked a rule of ours there has a namespace bug.
func assertHostUntouched(t testing.TB) {
	for _, args := range [][]string{{"iptables-save", "-t", "filter"}, {"ip6tables-save", "-t", "filter"}, {"nft", "list", "tables"}} {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Errorf("%v: %v: %s", args, err, out)
			continue
		}
		if strings.Contains(string(out), ChainPrefix) || strings.Contains(string(out), RouteChainPrefix) ||
			strings.Contains(string(out), TablePrefix) || strings.Contains(string(out), "ocserv-fw") {
			t.Errorf("the host namespace holds firewall rules of a test:\n%s", out)
		}
	}
}

type netns struct {
	name string
}

func randSuffix() string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// newNetns makes a namespace with a unique name, removed when the test ends
// (failed or not). Loopback is brought up.
func newNetns(t testing.TB, role string) *netns {
	t.Helper()
	n := &netns{name: "octel-" + role + "-" + randSuffix()}
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", n.name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.name, err, out)
		}
	})
	n.must(t, "ip", "link", "set", "lo", "up")
	return n
}

// exec runs a command inside the namespace (ip netns exec, bounded).
func (n *netns) exec(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (n *netns) must(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// do runs fn on an OS thread switched into the namespace, so netlink
// sockets it opens and processes it starts belong to the namespace. The
// thread is switched back afterwards; if that fails the thread stays
// locked and dies with its goroutine instead of returning to the pool in
// the wrong namespace.
func (n *netns) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + n.name)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.name, err)
			return
		}
		// Make sure we are really there before doing anything.
		var want, got syscall.Stat_t
		if err := syscall.Fstat(int(target.Fd()), &want); err != nil {
			errc <- err
			return
		}
		if err := syscall.Stat("/proc/thread-self/ns/net", &got); err != nil || got.Ino != want.Ino {
			errc <- fmt.Errorf("thread is not in namespace %s after setns (%v)", n.name, err)
			return
		}
		err = fn()
		if rerr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); rerr != nil {
			errc <- fmt.Errorf("%v; and switching back: %v", err, rerr)
			return // thread stays locked: it exits with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// execCombined runs a command (bounded) on the calling thread.
func execCombined(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

// testOwner is the session the e2e tests' rules are made for.
var testOwner = Owner{ID: 4242, UID: "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee"}
