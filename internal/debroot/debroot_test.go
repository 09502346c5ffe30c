package debroot

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The cache logic with a stand-in for debootstrap (a script on PATH that
// counts its runs and makes a root's worth of files): the real one runs in
// the end-to-end tests (e2e/systemd_test.go).
func fakeDebootstrap(t *testing.T, body string) (counter string) {
	t.Helper()
	bin := t.TempDir()
	counter = filepath.Join(t.TempDir(), "runs")
	script := "#!/bin/sh\n" +
		"echo run >> " + counter + "\n" +
		"for a; do target=$prev; prev=$a; done\n" + // the target is the second to last argument
		body
	if err := os.WriteFile(filepath.Join(bin, "debootstrap"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	t.Setenv(CacheEnv, t.TempDir())
	return counter
}

func runs(t *testing.T, counter string) int {
	data, err := os.ReadFile(counter)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "run\n")
}

var spec = Spec{Kind: "test", Suite: "bookworm", Include: []string{"systemd", "ocserv"},
	Files: map[string]string{"/etc/hostname": "vpn1.example.test\n"}}

// Concurrent first uses build the root once; every caller gets the
// finished root (files from Spec.Files included); later calls reuse it.
func TestEnsureBuildsOnceUnderConcurrency(t *testing.T) {
	counter := fakeDebootstrap(t, "mkdir -p \"$target/sbin\" && sleep 0.3 && touch \"$target/sbin/init\"\n")
	var wg sync.WaitGroup
	dirs := make([]string, 4)
	errs := make([]error, 4)
	for i := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dirs[i], errs[i] = Ensure(context.Background(), spec, t.Logf)
		}()
	}
	wg.Wait()
	for i := range dirs {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if dirs[i] != Path(spec) {
			t.Errorf("caller %d got %s, want %s", i, dirs[i], Path(spec))
		}
	}
	if n := runs(t, counter); n != 1 {
		t.Errorf("debootstrap ran %d times, want 1", n)
	}
	for _, f := range []string{"sbin/init", "etc/hostname", stampFile} {
		if _, err := os.Stat(filepath.Join(Path(spec), f)); err != nil {
			t.Errorf("finished root lacks %s: %v", f, err)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(Path(spec), "etc/hostname")); string(got) != "vpn1.example.test\n" {
		t.Errorf("etc/hostname: %q", got)
	}
	if _, err := Ensure(context.Background(), spec, t.Logf); err != nil || runs(t, counter) != 1 {
		t.Errorf("second use: %v, %d runs", err, runs(t, counter))
	}
	// Nothing else is left next to it but the lock file.
	ents, _ := os.ReadDir(filepath.Dir(Path(spec)))
	for _, e := range ents {
		if e.Name() != spec.Name() && e.Name() != spec.Name()+".lock" {
			t.Errorf("left in the cache: %s", e.Name())
		}
	}
}

// A build that died half-way (its temporary dir left behind) and a final
// dir without a stamp are removed and built again; a failing debootstrap
// publishes nothing and says why.
func TestEnsureHalfBuiltAndFailure(t *testing.T) {
	counter := fakeDebootstrap(t, "if [ -e \"$FAIL\" ]; then echo 'E: Failed getting release file' >&2; exit 1; fi\n"+
		"mkdir -p \"$target/sbin\" && touch \"$target/sbin/init\"\n")
	fail := filepath.Join(t.TempDir(), "fail")
	t.Setenv("FAIL", fail)
	if err := os.WriteFile(fail, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Ensure(context.Background(), spec, t.Logf)
	if err == nil || !strings.Contains(err.Error(), "Failed getting release file") {
		t.Fatalf("failed debootstrap: err %v, want debootstrap's message", err)
	}
	if _, err := os.Lstat(Path(spec)); err == nil {
		t.Fatalf("a failed build was published")
	}
	if left, _ := filepath.Glob(Path(spec) + ".tmp-*"); len(left) != 0 {
		t.Fatalf("a failed build left %v", left)
	}
	os.Remove(fail)

	// A half-built leftover of each kind.
	half := Path(spec) + ".tmp-123"
	if err := os.MkdirAll(filepath.Join(half, "usr"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(Path(spec), "usr"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := Ensure(context.Background(), spec, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if !done(dir) {
		t.Errorf("%s not finished", dir)
	}
	if _, err := os.Stat(half); err == nil {
		t.Errorf("half-built %s still there", half)
	}
	if n := runs(t, counter); n != 2 {
		t.Errorf("debootstrap ran %d times, want 2 (the failure, then the rebuild)", n)
	}
}

// Waiting for another build is bounded by the context.
func TestEnsureWaitIsBounded(t *testing.T) {
	fakeDebootstrap(t, "exit 1\n")
	if err := os.MkdirAll(filepath.Dir(Path(spec)), 0o755); err != nil {
		t.Fatal(err)
	}
	// Another process's build holds the lock.
	f, err := os.Create(Path(spec) + ".lock")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = Ensure(ctx, spec, t.Logf)
	if err == nil || !strings.Contains(err.Error(), "lock") {
		t.Errorf("err %v, want a lock timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("waited %s", d)
	}
}

// Every part of the spec is in the name; a bad spec is refused by name.
func TestSpecNameAndValidation(t *testing.T) {
	base := spec.Name()
	if !strings.HasPrefix(base, "bookworm-") {
		t.Errorf("name %q does not start with the suite", base)
	}
	variants := []Spec{
		{Kind: "test", Suite: "bookworm", Include: []string{"systemd"}, Files: spec.Files},
		{Kind: "test", Suite: "bookworm", Include: spec.Include, Files: map[string]string{"/etc/hostname": "other\n"}},
		{Kind: "test", Suite: "bookworm", Include: spec.Include, Files: spec.Files, Mirror: "http://example.invalid/debian"},
		{Kind: "other", Suite: "bookworm", Include: spec.Include, Files: spec.Files},
	}
	for i, v := range variants {
		if v.Name() == base {
			t.Errorf("variant %d has the same name %s", i, base)
		}
	}
	reordered := Spec{Kind: "test", Suite: "bookworm", Include: []string{"ocserv", "systemd"}, Files: spec.Files}
	if reordered.Name() != base {
		t.Errorf("package order changes the name")
	}
	for _, bad := range []Spec{
		{Kind: "test", Suite: "../etc"},
		{Kind: "", Suite: "bookworm"},
		{Kind: "test", Suite: "bookworm", Include: []string{"a,b"}},
		{Kind: "test", Suite: "bookworm", Files: map[string]string{"etc/x": ""}},
	} {
		if _, err := Ensure(context.Background(), bad, t.Logf); err == nil {
			t.Errorf("spec %+v accepted", bad)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/a\040b`: "/tmp/a b",
		`/plain`:      "/plain",
		`/x\134y`:     `/x\y`,
		`/bad\09`:     `/bad\09`,
		`/end\04`:     `/end\04`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
