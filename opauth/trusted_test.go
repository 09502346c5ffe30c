package opauth

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nats-io/nkeys"
)

// nobody is the unprivileged user the attacks run as.
func nobody(t *testing.T) (uid, gid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test hands files to another user and runs a process as that user (make test runs as root in CI)")
	}
	uid, gid = 65534, 65534
	if u, err := user.Lookup("nobody"); err == nil {
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	return uid, gid
}

type keysDir struct {
	t          *testing.T
	dir, file  string
	admin, eve string // public keys: the operator the admin trusts, the attacker's
}

// newKeysDir is a trusted keys file the way an admin sets it up: a
// directory and file only root writes, trusting one read-write operator;
// both readable (and the path traversable) by everybody.
func newKeysDir(t *testing.T) *keysDir {
	t.Helper()
	top := t.TempDir()
	os.Chmod(top, 0o755)
	os.Chmod(filepath.Dir(top), 0o755) // the test's own temporary root, 0700 from Go
	d := &keysDir{t: t, dir: filepath.Join(top, "etc"), file: filepath.Join(top, "etc", "operators.keys")}
	if err := os.Mkdir(d.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	a, _ := nkeys.CreateUser()
	e, _ := nkeys.CreateUser()
	d.admin, _ = a.PublicKey()
	d.eve, _ = e.PublicKey()
	if err := os.WriteFile(d.file, []byte("rw "+d.admin+" admin\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(d.file, 0o644)
	return d
}

// asNobody runs argv as the unprivileged user: no shell.
func asNobody(t *testing.T, uid, gid int, argv ...string) error {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("%v as uid %d: %v: %s", argv, uid, err, out)
	}
	return err
}

// wantRefused: nobody is trusted, and the error names the file (or a
// directory above it) and the reason.
func wantRefused(t *testing.T, tr *Trusted, keys []string, reason string) {
	t.Helper()
	for _, k := range keys {
		_, ok, err := tr.Lookup(k)
		if ok || err == nil {
			t.Fatalf("key %s… trusted (%v)", k[:8], err)
		}
		if !strings.Contains(err.Error(), tr.path) || !strings.Contains(err.Error(), reason) {
			t.Fatalf("refusal %q does not name the file and %q", err, reason)
		}
	}
	if _, err := LoadTrusted(tr.path); err == nil || !strings.Contains(err.Error(), reason) {
		t.Fatalf("LoadTrusted: %v", err)
	}
}

// A local unprivileged user who owns the trusted keys file (an admin's
// chown gone wrong) adds their own key, read-write, and puts the
// modification time back. Before, only the mode was checked, and only
// when size or mtime changed: the key was trusted.
func TestTrustedFileOwnedByAnotherUser(t *testing.T) {
	uid, gid := nobody(t)
	d := newKeysDir(t)
	tr, err := LoadTrusted(d.file)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(d.file)
	if err := os.Chown(d.file, uid, gid); err != nil {
		t.Fatal(err)
	}
	// Eve's line, appended by Eve, the mtime put back by Eve.
	evil := filepath.Join(filepath.Dir(d.dir), "evil")
	os.WriteFile(evil, []byte("rw "+d.eve+" eve\n"), 0o644)
	if err := asNobody(t, uid, gid, "dd", "if="+evil, "of="+d.file, "oflag=append", "conv=notrunc", "status=none"); err != nil {
		t.Fatal(err)
	}
	stamp := fi.ModTime().Format("200601021504.05")
	if err := asNobody(t, uid, gid, "touch", "-m", "-t", stamp, d.file); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, tr, []string{d.admin, d.eve}, "owned by uid "+strconv.Itoa(uid))
	// The admin takes it back: trusted again, without Eve's key once
	// her line is gone.
	os.Chown(d.file, 0, 0)
	os.WriteFile(d.file, []byte("rw "+d.admin+" admin\n"), 0o644)
	if _, ok, err := tr.Lookup(d.admin); !ok || err != nil {
		t.Fatalf("after chown root: %v %v", ok, err)
	}
	if _, ok, _ := tr.Lookup(d.eve); ok {
		t.Fatal("eve trusted")
	}
}

// A symbolic link in the file's place, to a file the attacker controls
// (here one they own in a directory they own).
func TestTrustedFileSymlink(t *testing.T) {
	uid, gid := nobody(t)
	d := newKeysDir(t)
	tr, err := LoadTrusted(d.file)
	if err != nil {
		t.Fatal(err)
	}
	eveDir := filepath.Join(filepath.Dir(d.dir), "eve")
	os.Mkdir(eveDir, 0o755)
	os.Chown(eveDir, uid, gid)
	evil := filepath.Join(eveDir, "keys")
	if err := asNobody(t, uid, gid, "cp", d.file, evil); err != nil {
		t.Fatal(err)
	}
	os.Remove(d.file)
	if err := os.Symlink(evil, d.file); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, tr, []string{d.admin, d.eve}, "symbolic link")
	// Even a link to a root-owned file is refused: the link is not the file.
	os.Remove(d.file)
	good := filepath.Join(d.dir, "real.keys")
	os.WriteFile(good, []byte("rw "+d.admin+" admin\n"), 0o644)
	os.Symlink(good, d.file)
	wantRefused(t, tr, []string{d.admin}, "symbolic link")
}

// A directory others may write, or one another user owns: there the
// attacker can rename the file away and put their own in its place.
func TestTrustedFileDirectoryWritableByOthers(t *testing.T) {
	uid, gid := nobody(t)
	for _, tc := range []struct {
		name   string
		setup  func(d *keysDir)
		reason string
	}{
		{"group-writable", func(d *keysDir) { os.Chmod(d.dir, 0o775) }, "writable by group or others"},
		{"world-writable", func(d *keysDir) { os.Chmod(d.dir, 0o777) }, "writable by group or others"},
		{"world-writable sticky", func(d *keysDir) { os.Chmod(d.dir, os.ModeSticky|0o777) }, "writable by group or others"},
		{"owned by another user", func(d *keysDir) { os.Chown(d.dir, uid, gid) }, "directory " + "%s is owned by uid " + strconv.Itoa(uid)},
		{"directory above world-writable", func(d *keysDir) { os.Chmod(filepath.Dir(d.dir), 0o777) }, "directory above it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newKeysDir(t)
			tr, err := LoadTrusted(d.file)
			if err != nil {
				t.Fatal(err)
			}
			tc.setup(d)
			reason := tc.reason
			if strings.Contains(reason, "%s") {
				reason = strings.Replace(reason, "%s", d.dir, 1)
			}
			wantRefused(t, tr, []string{d.admin}, reason)
		})
	}
	// In a world-writable directory the attacker does replace the file.
	d := newKeysDir(t)
	tr, _ := LoadTrusted(d.file)
	os.Chmod(d.dir, 0o777)
	evil := filepath.Join(filepath.Dir(d.dir), "evil")
	os.WriteFile(evil, []byte("rw "+d.eve+" eve\n"), 0o644)
	if err := asNobody(t, uid, gid, "mv", "-f", d.file, d.file+".old"); err != nil {
		t.Fatal(err)
	}
	if err := asNobody(t, uid, gid, "cp", evil, d.file); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, tr, []string{d.admin, d.eve}, "writable by group or others")

	// A sticky world-writable directory higher up (as /tmp) is fine.
	d = newKeysDir(t)
	os.Chmod(filepath.Dir(d.dir), os.ModeSticky|0o777)
	if _, err := LoadTrusted(d.file); err != nil {
		t.Fatalf("sticky directory above: %v", err)
	}
}

// A chmod that makes the file writable by others is noticed although its
// modification time did not change (the change time did).
func TestTrustedFileChmodWithoutWrite(t *testing.T) {
	d := newKeysDir(t)
	tr, err := LoadTrusted(d.file)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := tr.Lookup(d.admin); !ok || err != nil {
		t.Fatal(ok, err)
	}
	os.Chmod(d.file, 0o666)
	wantRefused(t, tr, []string{d.admin}, "writable by group or others")
}
