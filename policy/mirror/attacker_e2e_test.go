//go:build e2e

package mirror

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
)

const attackerEnv = "MIRROR_ATTACK_SPOOL"

// TestMain lets the test binary run again as the attacker.
func TestMain(m *testing.M) {
	if spool := os.Getenv(attackerEnv); spool != "" {
		os.Exit(attack(spool))
	}
	os.Exit(m.Run())
}

// attack tries every way a local user could change what the hook reads;
// it prints each one that worked and exits 1 if any did.
func attack(spool string) int {
	dir := filepath.Join(spool, Dir)
	entry := filepath.Join(dir, FileName("alice"))
	forged := `{"v":1,"user":"alice","allowed":true,"decided":"2026-01-01T00:00:00Z"}`
	tries := map[string]func() error{
		"read the verdict":      func() error { _, err := os.ReadFile(entry); return err },
		"list the mirror":       func() error { _, err := os.ReadDir(dir); return err },
		"overwrite the verdict": func() error { return os.WriteFile(entry, []byte(forged), 0o640) },
		"truncate the verdict":  func() error { return os.Truncate(entry, 0) },
		"delete the verdict":    func() error { return os.Remove(entry) },
		"create another user's": func() error {
			return os.WriteFile(filepath.Join(dir, FileName("mallory")), []byte(forged), 0o640)
		},
		"rename a file over it": func() error {
			tmp := filepath.Join(os.TempDir(), fmt.Sprintf("forged-%d", os.Getpid()))
			os.WriteFile(tmp, []byte(forged), 0o644)
			defer os.Remove(tmp)
			return os.Rename(tmp, entry)
		},
		"symlink over it":   func() error { return os.Symlink("/tmp/forged", filepath.Join(dir, FileName("eve"))) },
		"refresh the stamp": func() error { now := time.Now(); return os.Chtimes(filepath.Join(dir, FreshFile), now, now) },
		"replace the mirror dir": func() error {
			return os.Rename(dir, dir+".old")
		},
	}
	bad := 0
	for name, try := range tries {
		if err := try(); err == nil || !errors.Is(err, os.ErrPermission) {
			fmt.Printf("%s: %v\n", name, err)
			bad++
		}
	}
	if bad > 0 {
		return 1
	}
	return 0
}

// A local unprivileged user can neither read nor change the mirror: every
// attempt fails with EACCES/EPERM, and the verdict the hook reads is the
// one the command service wrote.
func TestUnprivilegedUserCannotTouchTheMirror(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the e2e suite runs as root (make e2e)")
	}
	// As install.sh makes it: the spool 0750 root:root.
	base := t.TempDir()
	os.Chmod(filepath.Dir(base), 0o755) // the test's own temp dirs, so nobody can reach the binary below
	os.Chmod(base, 0o755)
	spool := filepath.Join(base, "spool")
	if err := os.Mkdir(spool, 0o750); err != nil {
		t.Fatal(err)
	}
	m, err := Open(spool)
	if err != nil {
		t.Fatal(err)
	}
	v := policy.Verdict{V: 1, User: "alice", Reason: policy.ReasonQuota, Message: "used", Decided: time.Now().UTC()}
	if err := m.Put(v); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := m.Touch(now, now); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary must be reachable by nobody: copy it out of the
	// 0700 build directory.
	bin := filepath.Join(base, "attacker")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = []string{attackerEnv + "=" + spool, "TMPDIR=/tmp"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("as nobody, some attempts worked (or the attacker did not run: %v):\n%s", err, out)
	}
	if strings.TrimSpace(string(out)) != "" {
		t.Fatalf("attacker output: %s", out)
	}
	r := Lookup(spool, "alice", time.Now(), time.Minute)
	if r.State != StateFresh || r.Verdict == nil || !r.Verdict.Equal(&v) {
		t.Fatalf("the mirror changed: %+v", r)
	}
}
