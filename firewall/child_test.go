package firewall

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

// fakeTool writes an executable shell script standing in for
// iptables-restore; it records the pid of the grandchild it leaves behind.
func fakeTool(t *testing.T, body string) (path, pidfile string) {
	t.Helper()
	dir := t.TempDir()
	path, pidfile = filepath.Join(dir, "iptables-restore"), filepath.Join(dir, "grandchild.pid")
	script := "#!/bin/sh\nPIDFILE='" + pidfile + "'\n" + body
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, pidfile
}

// gone waits (bounded, on a condition) until the process recorded in
// pidfile no longer exists or is a zombie, and reports whether it did.
func gone(t *testing.T, pidfile string) bool {
	t.Helper()
	var pid int
	for deadline := time.Now().Add(5 * time.Second); ; {
		b, err := os.ReadFile(pidfile)
		if pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fake tool never wrote its grandchild's pid")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true
		}
		if f := strings.Fields(string(stat)); len(f) > 2 && f[2] == "Z" {
			return true
		}
	}
	unix.Kill(pid, unix.SIGKILL) // do not leave it behind when the test fails
	return false
}

// TestChildWaitBounded: issue 11 defect 8. A helper (iptables-restore)
// whose descendants hold its output pipes open, or that hangs itself, must
// not hold the caller past its context: every wait on a child is bounded,
// and nothing of the helper's process group is left running. Without
// WaitDelay and the group kill, each case here waits the full 30 s of the
// grandchild's sleep.
func TestChildWaitBounded(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		wantErr    bool
	}{
		// Exits 0 at once, but a background child keeps stdout/stderr.
		{"exits, grandchild holds the pipes", "sleep 30 &\necho $! > \"$PIDFILE\"\nexit 0\n", false},
		// Never exits, and its child holds the pipes too.
		{"hangs with a grandchild", "sleep 30 &\necho $! > \"$PIDFILE\"\nwait\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tool, pidfile := fakeTool(t, tc.body)
			b := &iptBackend{fams: []*iptFamily{{v: 4, restore: tool, save: tool}}}
			const budget = 300 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), budget)
			defer cancel()
			start := time.Now()
			err := b.RejectAll(ctx, "vpns0", Owner{ID: 1})
			elapsed := time.Since(start)
			// The bound: the context's deadline plus the pipe wait, with
			// room for a loaded machine, and far below the 30 s sleep.
			if elapsed > budget+childWaitDelay+2*time.Second {
				t.Errorf("RejectAll returned after %s: the child's wait is not bounded", elapsed)
			}
			if tc.wantErr != (err != nil) {
				t.Errorf("err = %v, want error: %v", err, tc.wantErr)
			}
			if tc.wantErr && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want it to say the deadline passed", err)
			}
			if !gone(t, pidfile) {
				t.Errorf("the helper's grandchild is still running after the call returned")
			}
		})
	}
}

// TestConnectBoundedByChild: the same through Connect, as the hook calls
// it for an invalid policy: reject-all is tried, the helper hangs, the
// call comes back within its context and says "failed" (refuse the
// login), never "applied" or "none".
func TestConnectBoundedByChild(t *testing.T) {
	tool, pidfile := fakeTool(t, "sleep 30 &\necho $! > \"$PIDFILE\"\nwait\n")
	b := &iptBackend{fams: []*iptFamily{{v: 4, restore: tool, save: tool}}}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	p := &events.Policy{Invalid: true}
	start := time.Now()
	out := Connect(ctx, b, "vpns0", Owner{ID: 1}, p)
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("Connect took %s", elapsed)
	}
	if out.Action != ActionFailed || !out.Refuse() {
		t.Errorf("outcome %+v, want failed (refuse)", out)
	}
	if !gone(t, pidfile) {
		t.Errorf("the helper's grandchild is still running")
	}
}
