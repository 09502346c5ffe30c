package distro

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeBuild writes what the cache reads of a root (dpkg's status with an
// ocserv package of version pkg) and counts its calls.
func fakeBuild(pkg string, calls *atomic.Int32, hold <-chan struct{}) func(context.Context, Release, string, io.Writer) error {
	return func(_ context.Context, r Release, dir string, w io.Writer) error {
		calls.Add(1)
		fmt.Fprintf(w, "building %s\n", r.Suite)
		if hold != nil {
			<-hold
		}
		if err := os.MkdirAll(filepath.Join(dir, "var/lib/dpkg"), 0o755); err != nil {
			return err
		}
		status := "Package: libc6\nVersion: 2.41-1\n\nPackage: ocserv\nStatus: install ok installed\nVersion: " + pkg + "\n\n"
		return os.WriteFile(filepath.Join(dir, "var/lib/dpkg/status"), []byte(status), 0o644)
	}
}

var trixie = Release{Version: "1.3.0", Suite: "trixie"}

func TestEnsureBuildsOnceAndFindsIt(t *testing.T) {
	var calls atomic.Int32
	c := &Cache{Dir: filepath.Join(t.TempDir(), "chroots"), build: fakeBuild("1.3.0-2", &calls, nil)}
	root, err := c.Ensure(context.Background(), trixie)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(c.Dir, "trixie-1.3.0-2"); root.Dir != want || root.Package != "1.3.0-2" {
		t.Fatalf("root %+v, want %s with package 1.3.0-2", root, want)
	}
	fi, err := os.Stat(root.Dir)
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("root dir: %v %v", fi, err)
	}
	again, err := c.Ensure(context.Background(), trixie)
	if err != nil || again != root || calls.Load() != 1 {
		t.Fatalf("second Ensure: %+v %v after %d builds", again, err, calls.Load())
	}
	// Nothing of the build is left beside the root.
	ents, _ := os.ReadDir(c.Dir)
	for _, e := range ents {
		if e.Name() != ".lock" && e.Name() != "trixie-1.3.0-2" {
			t.Errorf("left in the cache: %s", e.Name())
		}
	}
}

// Two first uses at once (each with its own lock file description, as two
// processes would have): one builds, the other waits and uses its root.
func TestEnsureConcurrentFirstUse(t *testing.T) {
	var calls atomic.Int32
	hold := make(chan struct{})
	dir := filepath.Join(t.TempDir(), "chroots")
	var wg sync.WaitGroup
	roots := make([]Root, 4)
	errs := make([]error, 4)
	for i := range roots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &Cache{Dir: dir, build: fakeBuild("1.3.0-2", &calls, hold)}
			roots[i], errs[i] = c.Ensure(context.Background(), trixie)
		}()
	}
	// Let the builder sit in its build while the others queue on the lock.
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(hold)
	wg.Wait()
	for i := range roots {
		if errs[i] != nil || roots[i] != roots[0] {
			t.Errorf("caller %d: %+v %v; caller 0: %+v", i, roots[i], errs[i], roots[0])
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d builds for four concurrent first uses, want 1", n)
	}
}

// A crash mid-build leaves a scratch directory (and a root dir without its
// marker, as if it was renamed by hand): neither is taken for a root; the
// next build removes the scratch and builds.
func TestEnsureAfterCrashedBuild(t *testing.T) {
	var calls atomic.Int32
	dir := filepath.Join(t.TempDir(), "chroots")
	for _, d := range []string{".build-trixie-123/var/lib/dpkg", "trixie-1.3.0-2/usr"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ".build-trixie-123.log"), []byte("debootstrap…"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &Cache{Dir: dir, build: fakeBuild("1.3.0-2", &calls, nil)}
	if _, ok, err := c.Find(trixie); ok || err != nil {
		t.Fatalf("an incomplete root was found: %v %v", ok, err)
	}
	root, err := c.Ensure(context.Background(), trixie)
	if err != nil || calls.Load() != 1 {
		t.Fatalf("Ensure after a crash: %+v %v, %d builds", root, err, calls.Load())
	}
	for _, stale := range []string{".build-trixie-123", ".build-trixie-123.log"} {
		if _, err := os.Lstat(filepath.Join(dir, stale)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed: %v", stale, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root.Dir, markerFile)); err != nil {
		t.Errorf("the rebuilt root has no marker: %v", err)
	}
}

// A suite that moved on to another ocserv is an error naming both
// versions, and leaves nothing behind; a failed build says why, with its
// log.
func TestEnsureRefusesOtherVersionAndReportsFailure(t *testing.T) {
	var calls atomic.Int32
	dir := filepath.Join(t.TempDir(), "chroots")
	c := &Cache{Dir: dir, build: fakeBuild("1.3.1-1", &calls, nil)}
	_, err := c.Ensure(context.Background(), trixie)
	if err == nil || !strings.Contains(err.Error(), "1.3.1-1") || !strings.Contains(err.Error(), "not 1.3.0") {
		t.Fatalf("err = %v", err)
	}
	c.build = func(_ context.Context, _ Release, _ string, w io.Writer) error {
		fmt.Fprintln(w, "E: Unable to locate package ocserv")
		return errors.New("apt-get install: exit status 100")
	}
	_, err = c.Ensure(context.Background(), trixie)
	if err == nil || !strings.Contains(err.Error(), "Unable to locate package ocserv") {
		t.Fatalf("failed build: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != ".lock" && !strings.HasSuffix(e.Name(), ".log") {
			t.Errorf("left after failed builds: %s", e.Name())
		}
	}
}

func TestEnsureLockWaitBounded(t *testing.T) {
	dir := t.TempDir()
	holder := &Cache{Dir: dir}
	unlock, err := holder.lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	var calls atomic.Int32
	c := &Cache{Dir: dir, LockWait: 300 * time.Millisecond, build: fakeBuild("1.3.0-2", &calls, nil)}
	if _, err := c.Ensure(context.Background(), trixie); err == nil || !strings.Contains(err.Error(), "still held") {
		t.Fatalf("err = %v", err)
	}
	if calls.Load() != 0 {
		t.Fatalf("built without the lock")
	}
}

func TestUpstreamVersion(t *testing.T) {
	for in, want := range map[string]string{
		"1.3.0-2": "1.3.0", "1:1.3.0-2+b1": "1.3.0", "1.2.4-1build2": "1.2.4", "1.5.0": "1.5.0", "1.1.6-3+deb12u1": "1.1.6",
	} {
		if got := UpstreamVersion(in); got != want {
			t.Errorf("UpstreamVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSelected(t *testing.T) {
	t.Setenv(EnvVersion, "")
	if r, err := Selected(); err != nil || r.Version != DefaultVersion || !r.Host {
		t.Fatalf("default: %+v %v", r, err)
	}
	t.Setenv(EnvVersion, "1.5.0")
	if r, err := Selected(); err != nil || r.Suite != "sid" || !r.FwScriptEnv || r.FwBackend != "nftables" {
		t.Fatalf("1.5.0: %+v %v", r, err)
	}
	t.Setenv(EnvVersion, "1.4")
	if _, err := Selected(); err == nil || !strings.Contains(err.Error(), "1.1.6, 1.3.0, 1.5.0") || !strings.Contains(err.Error(), EnvVersion) {
		t.Fatalf("unknown version: %v", err)
	}
}
