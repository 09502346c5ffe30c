package hook

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/syncbuf"
)

// A refusal the hook has decided must stand even when the run then ends
// through the budget timer (a hung spool disk) or a recovered panic: those
// paths admit by default, and admitting here would let a restricted user
// in without rules, or overrule the operator's OCSERV_NEXT_SCRIPT.
//
// No kernel state is touched: the device name is one the firewall refuses
// to write into rules ("-x"), so a restricted user's connect fails closed
// before any backend call, and an unrestricted one needs no backend call.
func TestFwRefusalSurvivesBudgetAndPanic(t *testing.T) {
	restricted := map[string]string{
		"REASON": "connect", "ID": "77", "DEVICE": "-x", "USERNAME": "erin",
		"OCSERV_RESTRICT_TO_ROUTES": "1", "OCSERV_ROUTES4": "10.1.0.0/255.255.0.0 ", "OCSERV_ROUTES": "10.1.0.0/255.255.0.0 ",
	}
	nextEnv := func(status string) map[string]string {
		dir := t.TempDir()
		next := filepath.Join(dir, "next.sh")
		if err := os.WriteFile(next, []byte("exit "+status+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return map[string]string{"REASON": "connect", "ID": "78", "DEVICE": "-x", "USERNAME": "frank", "OCSERV_NEXT_SCRIPT": next}
	}
	for _, tc := range []struct {
		name  string
		env   map[string]string
		panic bool
		want  int
	}{
		{"firewall failed, disk hangs", restricted, false, ExitRefuse},
		{"firewall failed, panic", restricted, true, ExitRefuse},
		{"next script 3, disk hangs", nextEnv("3"), false, 3},
		{"next script 3, panic", nextEnv("3"), true, 3},
		// The control: an admitted login still ends with 0 on both paths.
		{"next script 0, disk hangs", nextEnv("0"), false, ExitAdmit},
		{"next script 0, panic", nextEnv("0"), true, ExitAdmit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "agent.env")
			if err := os.WriteFile(cfg, []byte("SPOOL_DIR="+filepath.Join(dir, "spool")+
				"\nFIREWALL=on\nFIREWALL_BACKEND=nftables\nHOOK_BUDGET=150ms\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			var stderr syncbuf.Buffer
			exited := make(chan int, 1)
			release, done := make(chan struct{}), make(chan struct{})
			defer func() { close(release); <-done }()
			stall := func() { <-release }
			if tc.panic {
				stall = func() { panic("boom") }
			}
			r := &Run{
				Args:   []string{"--config", cfg, "--fw"},
				Env:    tc.env,
				Stderr: &stderr,
				Start:  time.Now(),
				Exit:   func(code int) { exited <- code },
				stall:  stall,
			}
			go func() { r.Main(); close(done) }()
			select {
			case code := <-exited:
				if code != tc.want {
					t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.want, stderr.String())
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the run did not end")
			}
			out := stderr.String()
			why := "time budget spent"
			if tc.panic {
				why = "internal error"
			}
			if !strings.Contains(out, why) {
				t.Errorf("the run did not end the way the case sets up (%q): %s", why, out)
			}
		})
	}
}
