package ocpasswd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofrs/flock"
)

// realBinary skips when ocpasswd is not installed (apt-get install ocserv).
func realBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("ocpasswd")
	if err != nil {
		t.Skip("ocpasswd not installed (apt-get install ocserv)")
	}
	return p
}

func newPasswd(t *testing.T) (*Passwd, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	return &Passwd{
		File:    filepath.Join(t.TempDir(), "ocpasswd"),
		Binary:  realBinary(t),
		Timeout: 10 * time.Second,
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	}, &logs
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// line returns the raw line of user.
func line(t *testing.T, p *Passwd, user string) string {
	t.Helper()
	for _, l := range strings.Split(readFile(t, p.File), "\n") {
		if strings.HasPrefix(l, user+":") {
			return l
		}
	}
	t.Fatalf("no line for %s in:\n%s", user, readFile(t, p.File))
	return ""
}

// checkHash proves that the stored hash is the crypt of password (with
// openssl, which implements the same SHA-256/MD5 crypt).
func checkHash(t *testing.T, hashField, password string) {
	t.Helper()
	hashField = strings.TrimPrefix(hashField, "!")
	parts := strings.Split(hashField, "$") // "", "5", salt, hash
	if len(parts) != 4 {
		t.Fatalf("hash %q is not $id$salt$hash", hashField)
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Logf("openssl not installed: hash not verified")
		return
	}
	cmd := exec.Command("openssl", "passwd", "-"+parts[1], "-salt", parts[2], "-stdin")
	cmd.Stdin = strings.NewReader(password + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl passwd: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != hashField {
		t.Errorf("stored hash %q is not the crypt of the password (%q)", hashField, got)
	}
}

func TestLifecycleRealOcpasswd(t *testing.T) {
	p, _ := newPasswd(t)
	ctx := context.Background()

	if err := p.Add(ctx, "alice", "", "alice-pw-1"); err != nil {
		t.Fatal(err)
	}
	if err := p.Add(ctx, "bob", "staff", "bob-pw-2"); err != nil {
		t.Fatal(err)
	}
	if err := p.Add(ctx, "carol", "staff,admins", "carol pw; $(x)"); err != nil {
		t.Fatal(err)
	}
	checkHash(t, strings.SplitN(line(t, p, "alice"), ":", 3)[2], "alice-pw-1")
	checkHash(t, strings.SplitN(line(t, p, "carol"), ":", 3)[2], "carol pw; $(x)")
	if l := line(t, p, "bob"); !strings.HasPrefix(l, "bob:staff:$") {
		t.Errorf("bob's line %q", l)
	}
	if l := line(t, p, "alice"); !strings.HasPrefix(l, "alice:*:$") {
		t.Errorf("alice's line %q", l)
	}

	// Add of an existing user is refused and changes nothing.
	before := readFile(t, p.File)
	err := p.Add(ctx, "alice", "", "other")
	if !errors.Is(err, ErrExists) || err.Error() != "ocpasswd add alice: user exists" {
		t.Errorf("second add: %v", err)
	}
	if readFile(t, p.File) != before {
		t.Errorf("a refused add changed the file")
	}

	es, err := p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(es)
	if want := "[{alice [] false} {bob [staff] false} {carol [staff admins] false}]"; got != want {
		t.Errorf("List = %s, want %s", got, want)
	}
	gs, err := p.Groups(ctx)
	if err != nil || strings.Join(gs, ",") != "staff,admins" {
		t.Errorf("Groups = %v, %v", gs, err)
	}

	// Lock puts '!' before the hash; lookups see it; locking twice is a
	// no-op; unlock takes it away.
	if err := p.Lock(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if l := line(t, p, "bob"); !strings.HasPrefix(l, "bob:staff:!$") {
		t.Errorf("locked line %q", l)
	}
	if e, found, err := p.Lookup(ctx, "bob"); err != nil || !found || !e.Locked {
		t.Errorf("Lookup(bob) = %+v %v %v, want locked", e, found, err)
	}
	locked := readFile(t, p.File)
	if err := p.Lock(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if readFile(t, p.File) != locked {
		t.Errorf("locking a locked user changed the file")
	}

	// A password change keeps the group and the lock, and sets the hash.
	if err := p.SetPassword(ctx, "bob", "bob-new-pw"); err != nil {
		t.Fatal(err)
	}
	l := line(t, p, "bob")
	if !strings.HasPrefix(l, "bob:staff:!$") {
		t.Errorf("after passwd of a locked user: %q, want group and lock kept", l)
	}
	checkHash(t, strings.SplitN(l, ":", 3)[2], "bob-new-pw")

	if err := p.Unlock(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if l := line(t, p, "bob"); !strings.HasPrefix(l, "bob:staff:$") {
		t.Errorf("unlocked line %q", l)
	}

	// Group change keeps hash and lock.
	if err := p.Lock(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	hash := strings.SplitN(line(t, p, "carol"), ":", 3)[2]
	if err := p.SetGroup(ctx, "carol", "ops"); err != nil {
		t.Fatal(err)
	}
	if l := line(t, p, "carol"); l != "carol:ops:"+hash {
		t.Errorf("after SetGroup: %q, want %q", l, "carol:ops:"+hash)
	}
	if err := p.SetGroup(ctx, "carol", ""); err != nil {
		t.Fatal(err)
	}
	if l := line(t, p, "carol"); l != "carol:*:"+hash {
		t.Errorf("after SetGroup none: %q", l)
	}
	if _, err := os.Stat(p.File + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("SetGroup left %s.tmp: %v", p.File, err)
	}

	if err := p.Delete(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(readFile(t, p.File), "alice:") {
		t.Errorf("alice still in the file")
	}

	// Unknown users: ocpasswd exits 0 for them; we say not found.
	for name, op := range map[string]func() error{
		"delete": func() error { return p.Delete(ctx, "alice") },
		"lock":   func() error { return p.Lock(ctx, "zed") },
		"unlock": func() error { return p.Unlock(ctx, "zed") },
		"passwd": func() error { return p.SetPassword(ctx, "zed", "pw") },
		"group":  func() error { return p.SetGroup(ctx, "zed", "staff") },
	} {
		before := readFile(t, p.File)
		err := op()
		if !errors.Is(err, ErrNotFound) || !strings.HasPrefix(err.Error(), "ocpasswd "+name+" ") {
			t.Errorf("%s of an unknown user: %v, want ErrNotFound", name, err)
		}
		if readFile(t, p.File) != before {
			t.Errorf("%s of an unknown user changed the file", name)
		}
	}
}

func TestInvalidArgumentsNeverRun(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	bin := writeScript(t, dir, "touch "+marker+"\n")
	p := &Passwd{File: filepath.Join(dir, "pw"), Binary: bin}
	ctx := context.Background()
	for _, err := range []error{
		p.Add(ctx, "-d", "", "pw"),
		p.Add(ctx, "alice", "", "pw\nsecond"),
		p.Add(ctx, "alice", "x", "pw"),
		p.Add(ctx, "a:b", "", "pw"),
		p.Add(ctx, "$(reboot)", "", "pw"),
		p.SetPassword(ctx, "alice", ""),
		p.Delete(ctx, "../etc"),
		p.Lock(ctx, "a;b"),
		p.Unlock(ctx, ""),
		p.SetGroup(ctx, "alice", "g:h"),
	} {
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("got %v, want ErrInvalidArgument", err)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the binary ran for an invalid argument")
	}
}

func writeScript(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "fake-ocpasswd")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// The password goes to stdin only, and an ocpasswd that echoed it in its
// error output would not get it into our error.
func TestPasswordOnlyOnStdin(t *testing.T) {
	dir := t.TempDir()
	argvFile := filepath.Join(dir, "argv")
	stdinFile := filepath.Join(dir, "stdin")
	bin := writeScript(t, dir, fmt.Sprintf("echo \"$@\" > %s\ncat > %s\necho \"bad: $(cat %s)\" >&2\nexit 1\n", argvFile, stdinFile, stdinFile))
	const pw = "s3cret-Pa55"
	p := &Passwd{File: filepath.Join(dir, "pw"), Binary: bin}
	err := p.Add(context.Background(), "alice", "staff", pw)
	if err == nil {
		t.Fatal("a failing ocpasswd was not an error")
	}
	if strings.Contains(err.Error(), pw) {
		t.Errorf("error contains the password: %v", err)
	}
	if !strings.Contains(err.Error(), "[redacted]") || !strings.HasPrefix(err.Error(), "ocpasswd add alice: ocpasswd exited with exit status 1: bad:") {
		t.Errorf("error %q does not carry ocpasswd's message", err)
	}
	if got := readFile(t, argvFile); got != "-c "+p.File+" -g staff alice\n" {
		t.Errorf("argv = %q", got)
	}
	if got := readFile(t, stdinFile); got != pw+"\n"+pw+"\n" {
		t.Errorf("stdin = %q", got)
	}
}

func TestTimeoutKills(t *testing.T) {
	dir := t.TempDir()
	p := &Passwd{File: filepath.Join(dir, "pw"), Binary: writeScript(t, dir, "exec sleep 30\n"), Timeout: 300 * time.Millisecond}
	if err := os.WriteFile(p.File, []byte("alice:*:$5$a$b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := p.Lock(context.Background(), "alice")
	if err == nil || !strings.Contains(err.Error(), "did not finish in time") {
		t.Errorf("err = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestStaleTmpRemoved(t *testing.T) {
	p, logs := newPasswd(t)
	ctx := context.Background()
	if err := p.Add(ctx, "alice", "", "pw-1"); err != nil {
		t.Fatal(err)
	}
	// Left by a crashed run: ocpasswd alone now refuses every change.
	tmp := p.File + ".tmp"
	if err := os.WriteFile(tmp, []byte("half-written"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(tmp, old, old); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(p.Binary, "-c", p.File, "-l", "alice").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is locked") {
		t.Fatalf("precondition: plain ocpasswd with a stale .tmp: %v %s", err, out)
	}

	if err := p.Lock(ctx, "alice"); err != nil {
		t.Fatalf("Lock with a stale .tmp: %v", err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale .tmp still there: %v", err)
	}
	if !strings.Contains(line(t, p, "alice"), ":!$") {
		t.Errorf("alice not locked")
	}
	if l := logs.String(); !strings.Contains(l, "removed a stale temporary file") || !strings.Contains(l, tmp) {
		t.Errorf("no log line for the removal: %q", l)
	}
}

func TestYoungTmpWaitedForThenStale(t *testing.T) {
	p, logs := newPasswd(t)
	p.StaleAfter = 400 * time.Millisecond
	ctx := context.Background()
	if err := p.Add(ctx, "alice", "", "pw-1"); err != nil {
		t.Fatal(err)
	}
	tmp := p.File + ".tmp"
	if err := os.WriteFile(tmp, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := p.Lock(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("a fresh .tmp was removed after %s, before it could be stale", d)
	}
	if !strings.Contains(logs.String(), "stale") {
		t.Errorf("no log line")
	}
}

// A .tmp some process holds open is never removed, however old.
func TestHeldTmpNotRemoved(t *testing.T) {
	p, _ := newPasswd(t)
	p.StaleAfter = time.Millisecond
	ctx := context.Background()
	if err := p.Add(ctx, "alice", "", "pw-1"); err != nil {
		t.Fatal(err)
	}
	p.Timeout = 700 * time.Millisecond
	before := readFile(t, p.File)
	tmp := p.File + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(tmp, old, old); err != nil {
		t.Fatal(err)
	}
	err = p.Lock(ctx, "alice")
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
		t.Errorf("Lock with a held .tmp: %v, want ErrBusy naming pid %d", err, os.Getpid())
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Errorf("held .tmp removed: %v", err)
	}
	if readFile(t, p.File) != before {
		t.Errorf("file changed")
	}
}

// Calls from many goroutines, and from two Passwd values on one file (as
// two processes would be: each has its own lock-file descriptor), are
// serialised: no lost update, no "file is locked".
func TestConcurrentCallsSerialised(t *testing.T) {
	p1, _ := newPasswd(t)
	p2 := &Passwd{File: p1.File, Binary: p1.Binary, Timeout: 30 * time.Second}
	p1.Timeout = 30 * time.Second
	ctx := context.Background()
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p := p1
			if i%2 == 1 {
				p = p2
			}
			errs <- p.Add(ctx, fmt.Sprintf("user%02d", i), "", fmt.Sprintf("pw-%d", i))
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	es, err := p1.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != n {
		t.Errorf("%d users in the file after %d concurrent adds:\n%s", len(es), n, readFile(t, p1.File))
	}
}

// Another process holding the lock file: a call waits for it up to its
// deadline, then fails naming the lock file; once the lock is free, a
// waiting call goes on. The other process is flock(1) holding the lock
// while cat waits on a pipe, so the test releases it exactly when it wants.
func TestLockHeldByAnotherProcess(t *testing.T) {
	p, _ := newPasswd(t)
	flockBin, err := exec.LookPath("flock")
	if err != nil {
		t.Skip("flock(1) not installed (util-linux)")
	}
	os.WriteFile(p.File, nil, 0o600)
	lockPath := p.File + ".lock"
	hold := func() (release func()) {
		t.Helper()
		// flock -x LOCK cat: holds the lock until cat's stdin closes.
		cmd := exec.Command(flockBin, "-x", lockPath, "cat")
		in, _ := cmd.StdinPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Held once a try of our own fails.
		deadline := time.Now().Add(10 * time.Second)
		for {
			fl := flock.New(lockPath)
			ok, err := fl.TryLock()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			fl.Close()
			if time.Now().After(deadline) {
				t.Fatal("flock(1) did not take the lock in 10s")
			}
			time.Sleep(5 * time.Millisecond)
		}
		return func() { in.Close(); cmd.Wait() }
	}
	release := hold()
	p.Timeout = 300 * time.Millisecond
	_, err = p.List(context.Background())
	if err == nil || !strings.Contains(err.Error(), lockPath) || !strings.Contains(err.Error(), "held by another process") {
		t.Fatalf("list while another process holds the lock: %v", err)
	}
	// A call waiting when the lock is released goes on.
	p.Timeout = 30 * time.Second
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		_, err := p.List(context.Background())
		done <- err
	}()
	<-started
	select {
	case err := <-done:
		t.Fatalf("list returned while the lock was held: %v", err)
	default:
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("list after the lock was released: %v", err)
	}
}
