package distro

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultCacheDir holds the roots, one directory per suite and ocserv
// package version ("trixie-1.3.0-2"). CI and every test run share it; a
// root is built on first use.
const DefaultCacheDir = "/var/cache/ocserv-telemetry-test/chroots"

// EnvCacheDir names another cache directory.
const EnvCacheDir = "OCSERV_TELEMETRY_CHROOTS"

// Mirror is the Debian archive debootstrap and apt use.
const Mirror = "http://deb.debian.org/debian"

// Packages go into every root on top of the minimal base: ocserv (ocserv,
// occtl, ocpasswd, ocserv-fw), iptables for the iptables ocserv-fw and the
// hook's iptables backend, nftables for the nftables ocserv-fw.
var Packages = []string{"ocserv", "iptables", "nftables"}

// markerFile is written into a root when it is complete, before the root
// gets its final name; it records what the root holds.
const markerFile = ".ocserv-telemetry-root"

// buildPrefix starts the names of roots being built (and of their logs).
// Only a builder holding the cache lock makes them, so any it finds are
// left by a build that crashed, and are removed.
const buildPrefix = ".build-"

// Root is a complete root file system of one release.
type Root struct {
	Dir     string
	Release Release
	Package string // the Debian package version of ocserv, e.g. "1.3.0-2"
}

// Cache finds and builds roots in Dir.
type Cache struct {
	Dir string
	// LockWait bounds the wait for another process's build; 0 means 20
	// minutes.
	LockWait time.Duration
	// Logf receives progress ("building trixie …"); nil: discarded.
	Logf func(format string, args ...any)

	// build makes a root of r in dir, logging to w (nil: debootstrap).
	build func(ctx context.Context, r Release, dir string, w io.Writer) error
}

// DefaultCache is the cache at $OCSERV_TELEMETRY_CHROOTS or DefaultCacheDir.
func DefaultCache() *Cache {
	dir := os.Getenv(EnvCacheDir)
	if dir == "" {
		dir = DefaultCacheDir
	}
	return &Cache{Dir: dir}
}

func (c *Cache) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

// Ensure returns r's root, building it first when the cache has none.
// Concurrent callers (goroutines or processes) build it once: the build
// runs under an exclusive lock on the cache, in a scratch directory that
// gets its final name by one rename after it is complete. A build that
// crashed leaves only scratch directories, which the next build removes.
func (c *Cache) Ensure(ctx context.Context, r Release) (Root, error) {
	if root, ok, err := c.Find(r); err != nil || ok {
		return root, err
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return Root{}, fmt.Errorf("chroot cache: %w", err)
	}
	unlock, err := c.lock(ctx)
	if err != nil {
		return Root{}, err
	}
	defer unlock()
	// Another process may have built it while this one waited.
	if root, ok, err := c.Find(r); err != nil || ok {
		return root, err
	}
	if err := c.removeStale(); err != nil {
		return Root{}, err
	}
	return c.buildRoot(ctx, r)
}

// Find returns a complete root of r already in the cache.
func (c *Cache) Find(r Release) (Root, bool, error) {
	ents, err := os.ReadDir(c.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return Root{}, false, nil
	}
	if err != nil {
		return Root{}, false, fmt.Errorf("chroot cache: %w", err)
	}
	var found []Root
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), r.Suite+"-") {
			continue
		}
		dir := filepath.Join(c.Dir, e.Name())
		m, err := readMarker(dir)
		if err != nil {
			continue // not a root of ours
		}
		if m["suite"] == r.Suite && UpstreamVersion(m["package"]) == r.Version {
			found = append(found, Root{Dir: dir, Release: r, Package: m["package"]})
		}
	}
	if len(found) == 0 {
		return Root{}, false, nil
	}
	// Several Debian revisions of one version: the last by name.
	sort.Slice(found, func(i, j int) bool { return found[i].Dir < found[j].Dir })
	return found[len(found)-1], true, nil
}

func readMarker(dir string) (map[string]string, error) {
	f, err := os.Open(filepath.Join(dir, markerFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			m[k] = v
		}
	}
	return m, sc.Err()
}

// lock takes the cache's exclusive lock, waiting at most LockWait.
func (c *Cache) lock(ctx context.Context) (func(), error) {
	p := filepath.Join(c.Dir, ".lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("chroot cache lock: %w", err)
	}
	wait := c.LockWait
	if wait == 0 {
		wait = 20 * time.Minute
	}
	deadline := time.Now().Add(wait)
	said := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("chroot cache lock %s: %w", p, err)
		}
		if !said {
			c.logf("chroot cache %s: waiting for another build to finish", c.Dir)
			said = true
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("chroot cache lock %s: still held after %s", p, wait)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("chroot cache lock: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// removeStale deletes what crashed builds left. Called with the lock held.
func (c *Cache) removeStale() error {
	ents, err := os.ReadDir(c.Dir)
	if err != nil {
		return fmt.Errorf("chroot cache: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), buildPrefix) {
			c.logf("chroot cache: removing %s (left by a build that did not finish)", e.Name())
			if err := os.RemoveAll(filepath.Join(c.Dir, e.Name())); err != nil {
				return fmt.Errorf("chroot cache: remove stale %s: %w", e.Name(), err)
			}
		}
	}
	return nil
}

// buildRoot builds r into a scratch directory, checks it holds r's
// version, and renames it into place. Called with the lock held.
func (c *Cache) buildRoot(ctx context.Context, r Release) (Root, error) {
	scratch, err := os.MkdirTemp(c.Dir, buildPrefix+r.Suite+"-")
	if err != nil {
		return Root{}, fmt.Errorf("chroot cache: %w", err)
	}
	fail := func(err error) (Root, error) {
		os.RemoveAll(scratch)
		return Root{}, err
	}
	// A root is traversed by ocserv's unprivileged workers.
	if err := os.Chmod(scratch, 0o755); err != nil {
		return fail(err)
	}
	logPath := scratch + ".log"
	logFile, err := os.Create(logPath)
	if err != nil {
		return fail(err)
	}
	defer logFile.Close()
	build := c.build
	if build == nil {
		build = debootstrap
	}
	c.logf("chroot cache: building %s (ocserv %s) in %s", r.Suite, r.Version, scratch)
	start := time.Now()
	if err := build(ctx, r, scratch, logFile); err != nil {
		return fail(fmt.Errorf("build %s root: %w\n%s", r.Suite, err, tail(logPath, 20)))
	}
	pkg, err := installedVersion(scratch)
	if err != nil {
		return fail(fmt.Errorf("build %s root: %w", r.Suite, err))
	}
	if got := UpstreamVersion(pkg); got != r.Version {
		return fail(fmt.Errorf("build %s root: the suite now has ocserv %s, not %s: update distro.Releases", r.Suite, pkg, r.Version))
	}
	marker := fmt.Sprintf("suite=%s\npackage=%s\npackages=%s\nbuilt=%s\n", r.Suite, pkg,
		strings.Join(Packages, " "), time.Now().UTC().Format(time.RFC3339))
	if err := os.WriteFile(filepath.Join(scratch, markerFile), []byte(marker), 0o644); err != nil {
		return fail(err)
	}
	final := filepath.Join(c.Dir, r.Suite+"-"+strings.ReplaceAll(pkg, ":", "_"))
	if err := os.RemoveAll(final); err != nil { // an incomplete one (no marker) by that name
		return fail(err)
	}
	if err := os.Rename(scratch, final); err != nil {
		return fail(fmt.Errorf("chroot cache: %w", err))
	}
	os.Remove(logPath)
	c.logf("chroot cache: %s with ocserv %s ready in %s", final, pkg, time.Since(start).Round(time.Second))
	return Root{Dir: final, Release: r, Package: pkg}, nil
}

// installedVersion reads the ocserv package version from a root's dpkg
// database (no chroot needed).
func installedVersion(dir string) (string, error) {
	f, err := os.Open(filepath.Join(dir, "var/lib/dpkg/status"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	inOcserv := false
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "":
			inOcserv = false
		case l == "Package: ocserv":
			inOcserv = true
		case inOcserv && strings.HasPrefix(l, "Version: "):
			return strings.TrimPrefix(l, "Version: "), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("no ocserv package in %s/var/lib/dpkg/status", dir)
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
