//go:build e2e

package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/debroot"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/nspawn"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
)

// The container of the systemd tests leaves nothing on the host: not after
// an orderly stop, not after systemd-nspawn was killed (as when it
// crashes: its files in /run stay and the container's systemd lives on),
// and not after a boot that did not finish in time.
func TestNspawnLeavesNothing(t *testing.T) {
	testbed.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), debroot.BuildTimeout+5*time.Minute)
	defer cancel()
	root, err := debroot.Ensure(ctx, sdRootSpec(selectedSuite(t).Suite), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		kill bool
	}{{"stopped", false}, {"nspawn-killed", true}} {
		var dir, netns string
		var runFiles []string
		var pids []int
		t.Run(c.name, func(t *testing.T) {
			m := nspawn.Boot(t, nspawn.Options{Root: root})
			dir, netns, runFiles, pids = m.Traces()
			for _, f := range runFiles {
				if _, err := os.Stat(f); err != nil {
					t.Errorf("nspawn's %s not there while the container runs: %v", f, err)
				}
			}
			if c.kill {
				if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
		})
		checkNoTraces(t, c.name, dir, netns, runFiles, pids)
	}

	_, err = nspawn.Start(t, nspawn.Options{Root: root, BootTimeout: time.Millisecond})
	var be *nspawn.ErrBoot
	if !errors.As(err, &be) {
		t.Fatalf("a boot with a 1ms bound: err %v, want *nspawn.ErrBoot", err)
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), be.Machine+"-sd-*"))
	if len(dirs) != 0 {
		t.Errorf("failed boot left %v", dirs)
	}
	checkNoTraces(t, "failed boot", "", be.Machine+"-sd", nil, nil)
}

func checkNoTraces(t *testing.T, what, dir, netns string, runFiles []string, pids []int) {
	t.Helper()
	if dir != "" {
		if _, err := os.Lstat(dir); err == nil {
			t.Errorf("%s: scratch dir %s left", what, dir)
		}
		if m, _ := debroot.MountsUnder(dir); len(m) != 0 {
			t.Errorf("%s: mounts left: %v", what, m)
		}
	}
	if _, err := os.Lstat("/run/netns/" + netns); err == nil {
		t.Errorf("%s: network namespace %s left", what, netns)
	}
	for _, f := range runFiles {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("%s: %s left", what, f)
		}
	}
	for _, pid := range pids {
		if nspawn.Alive(pid) {
			t.Errorf("%s: process %d still alive", what, pid)
		}
	}
}
