// Package debroot builds Debian root file systems with debootstrap for the
// end-to-end tests (a container booted with systemd, other ocserv versions)
// and keeps them in a cache that the tests and CI share, so a machine pays
// for each debootstrap once.
//
// A root is published complete or not at all: it is built in a temporary
// directory next to its final place and renamed there when finished, under
// an exclusive lock, so concurrent first uses build it once and a run that
// died half-way leaves only a temporary directory, which the next build
// removes. A root in the cache is never written to: users lay an overlay
// over it (see package nspawn).
package debroot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gofrs/flock"
	"golang.org/x/sys/unix"
)

// CacheEnv names the environment variable that moves the cache; .ci/run
// and the tests read the same default.
const CacheEnv = "OCSERV_TELEMETRY_TEST_CACHE"

// DefaultCache is the cache when CacheEnv is not set: kept across runs on
// one machine, outside every checkout.
const DefaultCache = "/var/cache/ocserv-telemetry-test"

// DefaultMirror is the Debian archive debootstrap fetches from.
const DefaultMirror = "http://deb.debian.org/debian"

// stampFile, inside a finished root, records the spec it was built from.
const stampFile = "etc/ocserv-telemetry-test-root"

// Spec describes one root. Every field is part of the root's name, so a
// changed spec builds a new root instead of reusing a stale one.
type Spec struct {
	// Kind groups roots by user in the cache ("nspawn", "chroot"), so the
	// directories say what they are for.
	Kind string
	// Suite is the Debian suite: bookworm, trixie, sid.
	Suite string
	// Include are packages installed beyond debootstrap's minbase.
	Include []string
	// Files are written into the root after debootstrap (path inside the
	// root → content, mode 0644), e.g. /etc/hostname.
	Files map[string]string
	// Mirror is the archive; "" is DefaultMirror.
	Mirror string
}

func (s Spec) mirror() string {
	if s.Mirror == "" {
		return DefaultMirror
	}
	return s.Mirror
}

// describe is the spec as text: hashed into the name and kept in the root.
func (s Spec) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kind=%s\nsuite=%s\nvariant=minbase\nmirror=%s\n", s.Kind, s.Suite, s.mirror())
	inc := append([]string(nil), s.Include...)
	sort.Strings(inc)
	fmt.Fprintf(&b, "include=%s\n", strings.Join(inc, ","))
	paths := make([]string, 0, len(s.Files))
	for p := range s.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		sum := sha256.Sum256([]byte(s.Files[p]))
		fmt.Fprintf(&b, "file=%s %x\n", p, sum[:8])
	}
	return b.String()
}

// Name is the root's directory name in the cache: the suite and a hash of
// the whole spec.
func (s Spec) Name() string {
	sum := sha256.Sum256([]byte(s.describe()))
	return s.Suite + "-" + hex.EncodeToString(sum[:6])
}

func (s Spec) validate() error {
	for _, v := range []struct{ what, val string }{{"kind", s.Kind}, {"suite", s.Suite}} {
		if v.val == "" || strings.ContainsAny(v.val, "/ \t\n.") {
			return fmt.Errorf("debroot: %s %q must be a plain word", v.what, v.val)
		}
	}
	for _, p := range s.Include {
		if p == "" || strings.ContainsAny(p, ", \t\n") {
			return fmt.Errorf("debroot: package name %q", p)
		}
	}
	for p := range s.Files {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
			return fmt.Errorf("debroot: file path %q must be absolute and clean", p)
		}
	}
	return nil
}

// Cache is the cache directory: $OCSERV_TELEMETRY_TEST_CACHE or
// DefaultCache.
func Cache() string {
	if d := os.Getenv(CacheEnv); d != "" {
		return d
	}
	return DefaultCache
}

// Path is where the root of s lives (or will live) in the cache.
func Path(s Spec) string { return filepath.Join(Cache(), s.Kind, s.Name()) }

// BuildTimeout bounds one debootstrap (a minbase bookworm takes about a
// minute here; the archive can be slow).
const BuildTimeout = 15 * time.Minute

// Ensure returns the root of s, building it first when the cache has none.
// Waiting for another process's build is bounded by ctx. logf reports
// what happens (a build takes a minute or more).
func Ensure(ctx context.Context, s Spec, logf func(string, ...any)) (string, error) {
	if err := s.validate(); err != nil {
		return "", err
	}
	final := Path(s)
	if done(final) {
		return final, nil
	}
	parent := filepath.Dir(final)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("debroot: cache dir: %w", err)
	}
	lock := flock.New(final + ".lock")
	ok, err := lock.TryLockContext(ctx, 250*time.Millisecond)
	if err != nil || !ok {
		return "", fmt.Errorf("debroot: lock %s.lock (another build of this root still running?): %v", final, err)
	}
	defer lock.Unlock()
	// Another process may have finished it while this one waited.
	if done(final) {
		return final, nil
	}
	// Leftovers of a build that died: a temporary dir, or a final dir
	// without its stamp (never published by this code, but a hand-made
	// copy could be one).
	stale, _ := filepath.Glob(final + ".tmp-*")
	if _, err := os.Lstat(final); err == nil {
		stale = append(stale, final)
	}
	for _, d := range stale {
		logf("debroot: removing an unfinished root %s", d)
		if err := removeRoot(d); err != nil {
			return "", fmt.Errorf("debroot: remove unfinished root: %w", err)
		}
	}
	tmp, err := os.MkdirTemp(parent, filepath.Base(final)+".tmp-")
	if err != nil {
		return "", fmt.Errorf("debroot: %w", err)
	}
	if err := build(ctx, s, tmp, logf); err != nil {
		if rerr := removeRoot(tmp); rerr != nil {
			logf("debroot: remove failed build %s: %v", tmp, rerr)
		}
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = removeRoot(tmp)
		return "", fmt.Errorf("debroot: publish %s: %w", final, err)
	}
	return final, nil
}

// done reports whether dir is a finished root (its stamp is written last).
func done(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, stampFile))
	return err == nil
}

func build(ctx context.Context, s Spec, dir string, logf func(string, ...any)) error {
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return fmt.Errorf("debroot: debootstrap not installed (apt-get install debootstrap): %w", err)
	}
	// debootstrap needs the target world-traversable like any root.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	argv := []string{"debootstrap", "--variant=minbase"}
	if len(s.Include) > 0 {
		argv = append(argv, "--include="+strings.Join(s.Include, ","))
	}
	argv = append(argv, s.Suite, dir, s.mirror())
	logf("debroot: building %s (%s) into the cache: %s", s.Name(), s.Suite, strings.Join(argv, " "))
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, BuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// debootstrap's maintainer scripts must not ask anything.
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if err := cmd.Run(); err != nil {
		why := err
		if ctx.Err() != nil {
			why = fmt.Errorf("timed out after %s", BuildTimeout)
		}
		return fmt.Errorf("debroot: %s: %v\n%s", strings.Join(argv, " "), why, tail(out.String(), 40))
	}
	for p, content := range s.Files {
		dst := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("debroot: %w", err)
		}
		if err := os.WriteFile(dst, []byte(content), 0o644); err != nil {
			return fmt.Errorf("debroot: %w", err)
		}
	}
	// The stamp last: its presence is what makes the root finished.
	if err := os.WriteFile(filepath.Join(dir, stampFile), []byte(s.describe()), 0o644); err != nil {
		return fmt.Errorf("debroot: stamp: %w", err)
	}
	logf("debroot: %s built in %s", s.Name(), time.Since(start).Round(time.Second))
	return nil
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// removeRoot deletes an unfinished root. debootstrap mounts /proc and
// /sys (and in some environments binds /dev) inside its target while it
// runs; a build that was killed can leave them mounted, and deleting
// through them would reach the host's files. So every mount under dir is
// detached first, and nothing is deleted while one remains.
func removeRoot(dir string) error {
	for i := 0; i < 3; i++ {
		mounts, err := MountsUnder(dir)
		if err != nil {
			return err
		}
		if len(mounts) == 0 {
			return os.RemoveAll(dir)
		}
		// Deepest first.
		sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
		for _, m := range mounts {
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
	}
	return fmt.Errorf("debroot: %s still has mounts; not removing it", dir)
}

// MountsUnder lists the mount points at or below dir (from
// /proc/self/mountinfo).
func MountsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + (c - '0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
