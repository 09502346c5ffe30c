package hook_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/hook"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/hooktest"
)

// TestFwHelperHangsRefusesInTime: issue 11 defect 8, the whole process.
// With the iptables backend, every helper (iptables-restore, -save, both
// families) is a stand-in that never exits and whose child holds its
// pipes. The hook must still end within its budget, refuse the login of a
// user it had to restrict (restricted, or with an invalid policy), record
// why, and leave none of the helpers' processes running. No root needed:
// nothing reaches the kernel.
func TestFwHelperHangsRefusesInTime(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"invalid policy (restrict-user-to-ports tcp())", map[string]string{"OCSERV_ALLOW_PORTS": "tcp "}},
		{"restricted", map[string]string{"OCSERV_RESTRICT_TO_ROUTES": "1", "OCSERV_ROUTES": "10.1.0.0/16 "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tools := t.TempDir()
			pids := t.TempDir()
			script := "#!/bin/sh\nsleep 30 &\necho $! > '" + pids + "'/$$.pid\nwait\n"
			for _, name := range []string{"iptables-restore", "iptables-save", "ip6tables-restore", "ip6tables-save"} {
				if err := os.WriteFile(filepath.Join(tools, name), []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			const budget = time.Second
			sb := hooktest.NewSandbox(t, "FIREWALL=on\nFIREWALL_BACKEND=iptables\nHOOK_BUDGET=1s\nHOOK_FIREWALL_BUDGET=300ms\n")
			env := map[string]string{"REASON": "connect", "ID": "4242", "DEVICE": "vpns0", "USERNAME": "erin",
				"PATH": tools + ":/usr/bin:/bin"}
			for k, v := range tc.env {
				env[k] = v
			}
			res := sb.Run(t, env, "--fw")
			if res.Code != hook.ExitRefuse {
				t.Fatalf("exit %d, want %d (refused): %s", res.Code, hook.ExitRefuse, res.Stderr)
			}
			// Within the budget, with room for a loaded machine's start-up
			// (the helpers alone would take 30 s).
			if res.Elapsed > budget+3*time.Second {
				t.Errorf("the hook took %s with a %s budget", res.Elapsed, budget)
			}
			evs := sb.Events(t)
			if len(evs) != 1 {
				t.Fatalf("%d events, want 1; stderr: %s", len(evs), res.Stderr)
			}
			e := evs[0]
			if e.Admitted == nil || *e.Admitted || e.Firewall.Action != "failed" || !strings.Contains(e.Firewall.Error, "deadline") {
				t.Errorf("event: admitted %v, firewall %+v; want refused, failed, the deadline named", e.Admitted, e.Firewall)
			}
			// Every helper and its child is gone once the hook has exited.
			files, _ := filepath.Glob(filepath.Join(pids, "*.pid"))
			if len(files) == 0 {
				t.Fatal("no helper ran")
			}
			for _, f := range files {
				b, _ := os.ReadFile(f)
				pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
				if err != nil {
					t.Fatalf("%s: %q", f, b)
				}
				if !exitedSoon(pid) {
					t.Errorf("helper child %d still running after the hook exited", pid)
				}
			}
		})
	}
}

// exitedSoon waits (bounded, on the condition) for pid to be gone or a
// zombie; it kills the process if it is still there at the end.
func exitedSoon(pid int) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true
		}
		if f := strings.Fields(string(stat)); len(f) > 2 && f[2] == "Z" {
			return true
		}
	}
	if p, err := os.FindProcess(pid); err == nil {
		p.Kill()
	}
	return false
}
