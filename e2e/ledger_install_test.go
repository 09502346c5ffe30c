//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
)

// TestInstallLedger: --ledger=postgres://… beside the agent, then
// --ledger-only on a central host without ocserv: the binary, its unit
// (enabled), a system user of its own, ledger.env (root:ledger 0640, the
// database from the option, SQLite by default) and the state directory
// (the ledger's, 0700); --no-ledger and --uninstall take the binary and
// unit away and keep the configuration and the data.
func TestInstallLedger(t *testing.T) {
	testbed.RequireRoot(t)
	repo := repoRoot(t)
	bin := filepath.Join(repo, "bin")
	const (
		ledgerBin  = "/usr/local/bin/ocserv-telemetry-ledger"
		ledgerUnit = "/etc/systemd/system/ocserv-telemetry-ledger.service"
		ledgerEnv  = "/etc/ocserv-telemetry/ledger.env"
		ledgerDir  = "/var/lib/ocserv-telemetry-ledger"
	)
	withUsers := func(root string) {
		for _, f := range []string{"passwd", "group", "shadow", "gshadow"} {
			if b, err := os.ReadFile("/etc/" + f); err == nil {
				os.WriteFile(filepath.Join(root, "etc", f), b, 0o600)
			}
		}
	}
	t.Run("beside the agent, PostgreSQL", func(t *testing.T) {
		root := newRoot(t, realisticConf(t))
		withUsers(root)
		const dsn = "postgres://ledger@db.example.com/ledger?sslmode=verify-full"
		out := runInstall(t, true, "--root", root, "--bin-dir", bin, "--no-packages", "--ledger="+dsn)
		checkEntry(t, root, ledgerBin, 0o755)
		checkEntry(t, root, ledgerUnit, 0o644)
		env := readFile(t, filepath.Join(root, ledgerEnv))
		if !strings.Contains(env, "LEDGER_DATABASE="+dsn+"\n") {
			t.Errorf("ledger.env:\n%s", env)
		}
		fi, err := os.Stat(filepath.Join(root, ledgerEnv))
		if err != nil || fi.Mode().Perm() != 0o640 || fi.Sys().(*syscall.Stat_t).Gid == 0 {
			t.Errorf("ledger.env: %v %v: want 0640, the ledger's group", fi.Mode(), err)
		}
		if !strings.Contains(readFile(t, filepath.Join(root, "etc/passwd")), "ocserv-telemetry-ledger:") {
			t.Errorf("no system user:\n%s", out)
		}
		if target, err := os.Readlink(filepath.Join(root, "/etc/systemd/system/multi-user.target.wants/ocserv-telemetry-ledger.service")); err != nil || target != ledgerUnit {
			t.Errorf("ledger not enabled: %q %v", target, err)
		}
		runInstall(t, true, "--root", root, "--bin-dir", bin, "--no-packages", "--no-ledger")
		for _, p := range []string{ledgerBin, ledgerUnit} {
			if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
				t.Errorf("%s still there after --no-ledger", p)
			}
		}
		if _, err := os.Stat(filepath.Join(root, ledgerEnv)); err != nil {
			t.Errorf("--no-ledger removed the operator's ledger.env: %v", err)
		}
	})
	t.Run("ledger only, SQLite", func(t *testing.T) {
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "etc"), 0o755)
		withUsers(root)
		runInstall(t, true, "--root", root, "--bin-dir", bin, "--no-packages", "--ledger-only")
		checkEntry(t, root, ledgerBin, 0o755)
		if !strings.Contains(readFile(t, filepath.Join(root, ledgerEnv)), "LEDGER_DATABASE="+ledgerDir+"/ledger.db\n") {
			t.Errorf("ledger.env names no SQLite file")
		}
		fi, err := os.Stat(filepath.Join(root, ledgerDir))
		if err != nil || fi.Mode().Perm() != 0o700 || fi.Sys().(*syscall.Stat_t).Uid == 0 {
			t.Errorf("%s: %v %v: want 0700, the ledger's", ledgerDir, fi.Mode(), err)
		}
		for _, p := range []string{"/usr/local/sbin/ocserv-telemetry-hook", "/etc/ocserv-telemetry/agent.env"} {
			if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
				t.Errorf("--ledger-only installed the agent's %s", p)
			}
		}
		runInstall(t, true, "--root", root, "--uninstall")
		if _, err := os.Lstat(filepath.Join(root, ledgerBin)); err == nil {
			t.Errorf("--uninstall left %s", ledgerBin)
		}
		if _, err := os.Stat(filepath.Join(root, ledgerEnv)); err != nil {
			t.Errorf("--uninstall removed ledger.env: %v", err)
		}
	})
	// A bad --ledger value is refused before anything changes.
	out := runInstall(t, false, "--ledger=mysql://x", "--dry-run")
	if !strings.Contains(out, "postgres://") {
		t.Errorf("--ledger=mysql://x: %s", out)
	}
}
