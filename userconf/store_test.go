package userconf

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofrs/flock"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	root := t.TempDir()
	s := &Store{
		UserDir:  filepath.Join(root, "config-per-user"),
		GroupDir: filepath.Join(root, "config-per-group"),
		Logger:   slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)),
	}
	for _, d := range []string{s.UserDir, s.GroupDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const existing = `# alice: set by hand, keep this comment
route = 10.1.0.0/16
dns = 10.1.0.53
; another comment style
custom-thing = kept as is
route = 10.2.0.0/255.255.0.0

   
mtu = 1400
[vhost:other]
route = 10.99.0.0/16
`

func TestSetKeepsEverythingElse(t *testing.T) {
	s := newStore(t)
	p := filepath.Join(s.UserDir, "alice")
	write(t, p, existing)

	ch, err := s.Set(User, "alice", "route", []string{"192.168.7.0/24", "default"})
	if err != nil {
		t.Fatal(err)
	}
	want := `# alice: set by hand, keep this comment
route = 192.168.7.0/24
route = default
dns = 10.1.0.53
; another comment style
custom-thing = kept as is

   
mtu = 1400
[vhost:other]
route = 10.99.0.0/16
`
	if got := read(t, p); got != want {
		t.Errorf("file after Set:\n%s\nwant:\n%s", got, want)
	}
	if !ch.Changed || !slices.Equal(ch.Before, []string{"10.1.0.0/16", "10.2.0.0/255.255.0.0"}) || !slices.Equal(ch.After, []string{"192.168.7.0/24", "default"}) {
		t.Errorf("change = %+v", ch)
	}
	if ch.Backup == "" || read(t, ch.Backup) != existing {
		t.Errorf("backup %q does not hold the previous file", ch.Backup)
	}
	if dir := filepath.Dir(ch.Backup); dir == s.UserDir {
		t.Errorf("backup inside the per-user directory")
	}

	// Same values again: nothing written, no new backup.
	ch2, err := s.Set(User, "alice", "route", []string{"192.168.7.0/24", "default"})
	if err != nil || ch2.Changed || ch2.Backup != "" {
		t.Errorf("idempotent Set: %+v %v", ch2, err)
	}

	// A single key that is not there yet goes before the section.
	if _, err := s.Set(User, "alice", "idle-timeout", []string{"600"}); err != nil {
		t.Fatal(err)
	}
	got := read(t, p)
	if !strings.Contains(got, "mtu = 1400\nidle-timeout = 600\n[vhost:other]\n") {
		t.Errorf("new key not placed before the section:\n%s", got)
	}
	c, err := s.Get(User, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if v := c.Values("route"); !slices.Equal(v, []string{"192.168.7.0/24", "default"}) {
		t.Errorf("Get route = %q (the section's route must not count)", v)
	}
	if v := c.Values("custom-thing"); !slices.Equal(v, []string{"kept as is"}) {
		t.Errorf("Get custom-thing = %q", v)
	}

	// Delete removes only that key.
	if _, err := s.Delete(User, "alice", "dns"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(read(t, p), "dns =") || !strings.Contains(read(t, p), "custom-thing = kept as is") {
		t.Errorf("after Delete dns:\n%s", read(t, p))
	}
	if _, err := s.Delete(User, "alice", "dns"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete: %v, want ErrNotFound", err)
	}
	// Deleting a key outside the whitelist is allowed.
	if _, err := s.Delete(User, "alice", "custom-thing"); err != nil {
		t.Errorf("delete custom-thing: %v", err)
	}
}

func TestNewFileAndModes(t *testing.T) {
	s := newStore(t)
	ch, err := s.Set(Group, "staff", "restrict-user-to-ports", []string{"tcp(443), udp(53)"})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(s.GroupDir, "staff")
	if got := read(t, p); got != "restrict-user-to-ports = \"tcp(443), udp(53)\"\n" {
		t.Errorf("new file = %q", got)
	}
	if ch.Backup != "" {
		t.Errorf("backup of a file that did not exist: %q", ch.Backup)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != NewFileMode {
		t.Errorf("new file mode %v", fi.Mode().Perm())
	}
	// An existing file keeps its mode.
	if err := os.Chmod(p, 0o604); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(Group, "staff", "mtu", []string{"1300"}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o604 {
		t.Errorf("mode after edit %v, want 0604", fi.Mode().Perm())
	}
	c, err := s.Get(Group, "staff")
	if err != nil || !slices.Equal(c.Values("restrict-user-to-ports"), []string{"tcp(443), udp(53)"}) {
		t.Errorf("Get = %+v %v (quotes must be stripped as ocserv does)", c, err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(s.GroupDir, ".*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

func TestRefusedBeforeWriting(t *testing.T) {
	s := newStore(t)
	p := filepath.Join(s.UserDir, "alice")
	write(t, p, existing)
	cases := []struct {
		kind       Kind
		name, key  string
		vals       []string
		wantErr    error
		wantPrefix string
	}{
		{User, "alice", "route", []string{"10.0.0.0/33"}, ErrInvalidValue, "userconf set user alice route: invalid value"},
		{User, "alice", "route", []string{"10.0.0.0/8", "10.0.0.0/8; reboot"}, ErrInvalidValue, ""},
		{User, "alice", "route", []string{"10.0.0.0/8\nrestrict-user-to-routes = false"}, ErrInvalidValue, ""},
		{User, "alice", "route", nil, ErrInvalidValue, ""},
		{User, "alice", "route", []string{"10.0.0.0/8", "10.0.0.0/8"}, ErrInvalidValue, ""},
		{User, "alice", "mtu", []string{"1400", "1300"}, ErrInvalidValue, ""},
		{User, "alice", "connect-script", []string{"/tmp/x"}, ErrInvalidValue, ""},
		{User, "alice", "tunnel-all-dns", []string{"true"}, ErrInvalidValue, ""},
		{User, "../alice", "mtu", []string{"1400"}, ErrInvalidName, ""},
		{User, "alice/../../x", "mtu", []string{"1400"}, ErrInvalidName, ""},
		{User, ".alice", "mtu", []string{"1400"}, ErrInvalidName, ""},
		{User, "al\x00ice", "mtu", []string{"1400"}, ErrInvalidName, ""},
		{User, "$(id)", "mtu", []string{"1400"}, ErrInvalidName, ""},
		{User, strings.Repeat("a", 100000), "mtu", []string{"1400"}, ErrInvalidName, ""},
		{Group, "x", "mtu", []string{"1400"}, ErrInvalidName, ""},
		{Kind("other"), "alice", "mtu", []string{"1400"}, ErrInvalidName, ""},
	}
	for i, c := range cases {
		_, err := s.Set(c.kind, c.name, c.key, c.vals)
		if !errors.Is(err, c.wantErr) {
			t.Errorf("case %d: %v, want %v", i, err, c.wantErr)
		}
		if err != nil && c.wantPrefix != "" && !strings.HasPrefix(err.Error(), c.wantPrefix) {
			t.Errorf("case %d: message %q, want prefix %q", i, err, c.wantPrefix)
		}
		if err != nil && len(err.Error()) > 800 {
			t.Errorf("case %d: error of %d bytes", i, len(err.Error()))
		}
	}
	if read(t, p) != existing {
		t.Errorf("a refused Set changed the file")
	}
	ents, _ := os.ReadDir(s.UserDir)
	if len(ents) != 1 {
		t.Errorf("files in the per-user dir: %v", ents)
	}
	if bd, err := os.ReadDir(s.UserDir + ".backup"); err == nil {
		for _, e := range bd {
			if e.Name() != ".lock" {
				t.Errorf("refused Set made backup %s", e.Name())
			}
		}
	}
}

func TestSymlinkNotFollowed(t *testing.T) {
	s := newStore(t)
	target := filepath.Join(t.TempDir(), "outside")
	write(t, target, "mtu = 1400\n")
	if err := os.Symlink(target, filepath.Join(s.UserDir, "alice")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(User, "alice", "mtu", []string{"1300"}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Set through a symlink: %v", err)
	}
	if read(t, target) != "mtu = 1400\n" {
		t.Errorf("symlink target changed")
	}
}

func TestRollback(t *testing.T) {
	for _, stage := range []string{"before rename", "after rename"} {
		for _, existed := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/existed=%v", stage, existed), func(t *testing.T) {
				s := newStore(t)
				p := filepath.Join(s.UserDir, "alice")
				if existed {
					write(t, p, existing)
				}
				boom := errors.New("injected write failure")
				if stage == "before rename" {
					s.failBeforeRename = func(string) error { return boom }
				} else {
					s.failAfterRename = func(path string) error {
						// The new content is in place at this point.
						if !strings.Contains(read(t, path), "route = 172.16.0.0/12") {
							t.Errorf("new content not in place after the rename")
						}
						return boom
					}
				}
				_, err := s.Set(User, "alice", "route", []string{"172.16.0.0/12"})
				if !errors.Is(err, boom) {
					t.Fatalf("Set: %v, want the injected failure", err)
				}
				if existed {
					if got := read(t, p); got != existing {
						t.Errorf("file after rollback:\n%s", got)
					}
				} else if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("new file not removed by the rollback: %v", err)
				}
				leftovers, _ := filepath.Glob(filepath.Join(s.UserDir, ".*"))
				if len(leftovers) != 0 {
					t.Errorf("temporary files left: %v", leftovers)
				}
			})
		}
	}
}

func TestDeleteFileAndBackupsPruned(t *testing.T) {
	s := newStore(t)
	s.Keep = 3
	p := filepath.Join(s.UserDir, "bob")
	write(t, p, "mtu = 1400\n")
	for i := 0; i < 6; i++ {
		if _, err := s.Set(User, "bob", "mtu", []string{fmt.Sprint(1300 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	bd := s.UserDir + ".backup"
	baks, _ := filepath.Glob(filepath.Join(bd, "bob.*"))
	if len(baks) != 3 {
		t.Errorf("%d backups kept, want 3: %v", len(baks), baks)
	}
	ch, err := s.DeleteFile(User, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("file still there")
	}
	if read(t, ch.Backup) != "mtu = 1305\n" {
		t.Errorf("backup of the deleted file = %q", read(t, ch.Backup))
	}
	if _, err := s.DeleteFile(User, "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteFile: %v", err)
	}
	if _, err := s.DeleteFile(User, "../bob"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("DeleteFile ../bob: %v", err)
	}
}

func TestBackupDirInsideRefused(t *testing.T) {
	s := newStore(t)
	s.BackupDir = filepath.Join(s.UserDir, "backups")
	if _, err := s.Set(User, "alice", "mtu", []string{"1400"}); err == nil {
		t.Errorf("a backup dir inside the per-user dir was accepted")
	}
}

func TestGetReportsProblems(t *testing.T) {
	s := newStore(t)
	write(t, filepath.Join(s.UserDir, "carol"), "route = 10.0.0.0/33\nmtu = 1400\nmtu = 1300\nfoo = bar\n  continued\n")
	c, err := s.Get(User, "carol")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range c.Entries {
		got = append(got, fmt.Sprintf("%d %s=%s known=%v problem=%v", e.Line, e.Key, e.Value, e.Known, e.Problem != ""))
	}
	want := []string{
		"1 route=10.0.0.0/33 known=true problem=true",
		"2 mtu=1400 known=true problem=true",
		"3 mtu=1300 known=true problem=true",
		"4 foo=bar known=false problem=false",
		"5 foo=continued known=false problem=false",
	}
	if !slices.Equal(got, want) {
		t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	missing, err := s.Get(User, "nobody")
	if err != nil || missing.Exists || len(missing.Entries) != 0 {
		t.Errorf("Get of a missing file: %+v %v", missing, err)
	}
}

// An indented line continues the key before it (inih multi-line values):
// replacing that key removes its continuation lines too, and a
// continuation of another key stays with it.
func TestContinuationLines(t *testing.T) {
	s := newStore(t)
	p := filepath.Join(s.UserDir, "dave")
	write(t, p, "route = 10.1.0.0/16\n  10.2.0.0/16\ndns = 10.0.0.53\n  10.0.0.54\n")
	if _, err := s.Set(User, "dave", "route", []string{"10.3.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, p); got != "route = 10.3.0.0/16\ndns = 10.0.0.53\n  10.0.0.54\n" {
		t.Errorf("file = %q", got)
	}
}

func TestConcurrentSets(t *testing.T) {
	s := newStore(t)
	var wg sync.WaitGroup
	keys := []string{"mtu", "dpd", "keepalive", "idle-timeout", "session-timeout", "mobile-dpd"}
	for i, k := range keys {
		wg.Add(1)
		go func(i int, k string) {
			defer wg.Done()
			if _, err := s.Set(User, "erin", k, []string{fmt.Sprint(600 + i)}); err != nil {
				t.Error(err)
			}
		}(i, k)
	}
	wg.Wait()
	c, err := s.Get(User, "erin")
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if v := c.Values(k); !slices.Equal(v, []string{fmt.Sprint(600 + i)}) {
			t.Errorf("%s = %q after concurrent sets (lost update)", k, v)
		}
	}
}

// Another process holding the backup directory's lock: a change waits for
// it up to LockWait and then fails naming the lock file, writing nothing;
// once the lock is free, a waiting change goes through.
func TestLockHeldByAnotherProcess(t *testing.T) {
	flockBin, err := exec.LookPath("flock")
	if err != nil {
		t.Skip("flock(1) not installed (util-linux)")
	}
	s := newStore(t)
	bd, _ := s.backupDir(User)
	os.MkdirAll(bd, 0o700)
	lockPath := filepath.Join(bd, ".lock")
	cmd := exec.Command(flockBin, "-x", lockPath, "cat") // holds it until stdin closes
	in, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			in.Close()
			cmd.Wait()
			released = true
		}
	}
	defer release()
	for deadline := time.Now().Add(10 * time.Second); ; {
		fl := flock.New(lockPath)
		ok, err := fl.TryLock()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break // flock(1) has it
		}
		fl.Close()
		if time.Now().After(deadline) {
			t.Fatal("flock(1) did not take the lock in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.LockWait = 200 * time.Millisecond
	if _, err := s.Set(User, "erin", "mtu", []string{"1400"}); err == nil || !strings.Contains(err.Error(), lockPath) || !strings.Contains(err.Error(), "held by another process") {
		t.Fatalf("set while another process holds the lock: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.UserDir, "erin")); !os.IsNotExist(err) {
		t.Fatalf("a file was written without the lock: %v", err)
	}
	s.LockWait = 30 * time.Second
	done := make(chan error, 1)
	go func() {
		_, err := s.Set(User, "erin", "mtu", []string{"1400"})
		done <- err
	}()
	release()
	if err := <-done; err != nil {
		t.Fatalf("set after the lock was released: %v", err)
	}
}
