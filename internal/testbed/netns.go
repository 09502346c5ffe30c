package testbed

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns add` bind-mounts named namespaces.
const netnsDir = "/run/netns"

// etcNetnsDir holds per-namespace overrides of /etc files: `ip netns exec`
// bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf, which is
// what keeps vpnc-script from rewriting the host's resolver configuration.
const etcNetnsDir = "/etc/netns"

// namePrefix starts every namespace the test bed creates, so stale ones
// from a crashed run can be recognised (and nothing else is ever touched).
const namePrefix = "octs-"

// staleAge is how old an octs-* namespace must be before a new bed deletes
// it. Far longer than any suite run (make e2e times out after 40 minutes),
// so a concurrent run's namespaces are never taken for leftovers.
const staleAge = 90 * time.Minute

// runCmd runs argv (no shell) with a hard timeout and returns its combined
// output. Every external command of the bed goes through here or through
// startProc, so no wait is unbounded.
func runCmd(timeout time.Duration, argv ...string) ([]byte, error) {
	return runCmdIn(timeout, nil, argv...)
}

// runCmdIn is runCmd with stdin.
func runCmdIn(timeout time.Duration, stdin io.Reader, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = stdin
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return out, fmt.Errorf("%s: timed out after %s: %s", strings.Join(argv, " "), timeout, strings.TrimSpace(string(out)))
	}
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// ip runs one iproute2 command.
func ip(args ...string) error {
	_, err := runCmd(10*time.Second, append([]string{"ip"}, args...)...)
	return err
}

// addNetns creates a named namespace with its loopback up.
func addNetns(name string) error {
	if err := ip("netns", "add", name); err != nil {
		return err
	}
	return ip("-n", name, "link", "set", "lo", "up")
}

// delNetns kills whatever still runs in the namespace, then deletes it
// (which also destroys its veth ends and tun devices) and its /etc/netns
// overrides.
func delNetns(name string) error {
	killNetnsPids(name)
	var firstErr error
	if _, err := os.Stat(filepath.Join(netnsDir, name)); err == nil {
		// The kernel may need a moment to drop the last reference after
		// the processes died; retry a few times, bounded.
		for i := 0; i < 10; i++ {
			if firstErr = ip("netns", "del", name); firstErr == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := os.RemoveAll(filepath.Join(etcNetnsDir, name)); err != nil && firstErr == nil {
		firstErr = err
	}
	return firstErr
}

// killNetnsPids SIGKILLs every process in the namespace.
func killNetnsPids(name string) {
	out, err := runCmd(5*time.Second, "ip", "netns", "pids", name)
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// cleanStale deletes octs-* namespaces left by runs that crashed long ago
// (older than staleAge). Best effort: a leftover must not break this run,
// and the bed's own names are random anyway.
func cleanStale(logf func(string, ...any)) {
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), namePrefix) {
			continue
		}
		info, err := e.Info()
		if err != nil || time.Since(info.ModTime()) < staleAge {
			continue
		}
		if err := delNetns(e.Name()); err != nil {
			logf("testbed: stale namespace %s: %v", e.Name(), err)
		} else {
			logf("testbed: deleted stale namespace %s", e.Name())
		}
	}
}

// vethPair joins two namespaces with a veth pair and gives each end an
// address (CIDR notation).
func vethPair(nsA, ifA, addrA, nsB, ifB, addrB string) error {
	// Created in namespace A with the peer directly in B, so no device
	// ever appears in the host namespace (and a crash leaves nothing there).
	if err := ip("-n", nsA, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", nsB); err != nil {
		return err
	}
	for _, s := range [][3]string{{nsA, ifA, addrA}, {nsB, ifB, addrB}} {
		if err := ip("-n", s[0], "addr", "add", s[2], "dev", s[1]); err != nil {
			return err
		}
		if err := ip("-n", s[0], "link", "set", s[1], "up"); err != nil {
			return err
		}
	}
	return nil
}

// inNetns runs fn on an OS thread switched into the named namespace.
// Sockets keep the namespace they were created in, so a listener or a
// connection made inside fn can be used from any goroutine afterwards.
// fn runs on its own goroutine: if the thread cannot be switched back, the
// goroutine exits still locked and the runtime discards the thread instead
// of reusing it in the wrong namespace.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join(netnsDir, name))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open netns %s: %w", name, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			errc <- fmt.Errorf("leave netns %s: %w", name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
