package testbed

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/distro"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
)

// Versions. The bed runs the ocserv version $OCSERV_VERSION selects
// (distro.Selected; default the host's 1.1.6): the host's binaries, or a
// cached Debian root holding that version (distro.EnsureRoot, in the
// debroot cache), built on first use. Either way every tool of that version (ocserv, occtl, ocpasswd and
// the fw script ocserv runs) is run through one launcher:
//
//	nsenter --target <holder> --mount --root --wd --net=/run/netns/<server ns> TOOL …
//
// The holder is a process the bed starts in a private mount namespace of
// its own. In that namespace the root (a read-only bind of the cached one,
// or Options.SystemRoot) gets /proc, /dev, a fresh /run and the host's
// temporary directory at its own path (the bed's directory and the tests'
// temporary files, so every path the bed hands ocserv means the same file
// inside and out), then Options.Layers and the fw script mount; the holder
// then chroots into it and sleeps. Mounts never reach the host: the
// namespace ends with the holder, also when the test binary dies
// (Pdeathsig). The host's openconnect is the client for every version.

// selectRelease resolves the release and root dir for o.
func selectRelease(o Options) (distro.Release, string, error) {
	rel, err := distro.Selected()
	if err != nil {
		return distro.Release{}, "", err
	}
	if o.SystemRoot != "" {
		return rel, o.SystemRoot, nil
	}
	if rel.Host {
		return rel, "/", nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	root, err := distro.EnsureRoot(ctx, rel, nil)
	if err != nil {
		return distro.Release{}, "", err
	}
	return rel, root.Dir, nil
}

// checkTools fails when the bed's root lacks a tool it runs.
func checkTools(root string) error {
	for _, tool := range []string{"usr/sbin/ocserv", "usr/bin/occtl", "usr/bin/ocpasswd", "bin/sh"} {
		if _, err := os.Stat(filepath.Join(root, tool)); err != nil {
			return fmt.Errorf("root %s: %w", root, err)
		}
	}
	return nil
}

// startHolder starts the holder process once its mounts are in place.
func (b *Bed) startHolder() error {
	script, err := b.holderScript()
	if err != nil {
		return err
	}
	p, err := startProc("mount holder", filepath.Join(b.dir, "holder.log"), nil, nil,
		"unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh")
	if err != nil {
		return err
	}
	b.holder = p
	if out, err := p.waitOutput(15*time.Second, func(s string) bool { return strings.Contains(s, "holder ready\n") }); err != nil {
		return fmt.Errorf("mount namespace of the bed: %v\n%s", err, out)
	}
	return nil
}

// holderScript is the /bin/sh script that prepares the bed's mount
// namespace with the root's mounts and then becomes the holder.
func (b *Bed) holderScript() (string, error) {
	var s strings.Builder
	s.WriteString("set -e\n")
	r := ""
	if b.root != "/" {
		r = b.root
		tmp := filepath.Clean(os.TempDir())
		if fi, err := os.Stat(filepath.Join(r, tmp)); err != nil || !fi.IsDir() {
			return "", fmt.Errorf("root %s has no %s to mount the host's temporary directory on (set TMPDIR=/tmp)", r, tmp)
		}
		fmt.Fprintf(&s, "mount --bind %s %s\n", shQuote(r), shQuote(r))
		if b.opts.SystemRoot == "" {
			// The shared cache is never written by a bed.
			fmt.Fprintf(&s, "mount -o remount,bind,ro %s\n", shQuote(r))
		}
		fmt.Fprintf(&s, "mount -t proc proc %s\n", shQuote(r+"/proc"))
		fmt.Fprintf(&s, "mount --rbind /dev %s\n", shQuote(r+"/dev"))
		fmt.Fprintf(&s, "mount -t tmpfs -o mode=755 tmpfs %s\n", shQuote(r+"/run"))
		fmt.Fprintf(&s, "mount --rbind %s %s\n", shQuote(tmp), shQuote(r+tmp))
	}
	s.WriteString("echo holder ready\n")
	if r == "" {
		s.WriteString("exec sleep infinity\n")
	} else {
		fmt.Fprintf(&s, "exec chroot %s /bin/sleep infinity\n", shQuote(r))
	}
	return s.String(), nil
}

// applyMounts lays Options.Layers over the root's directories as
// read-only overlays (shallowest first) and, with HookAsFwScript on a
// version that does not read OCSERV_FW_SCRIPT, bind-mounts the fw wrapper
// over the fw script the version runs; in the holder's namespace, once,
// after PrepareConf (which may fill the layers) and before ocserv starts.
func (b *Bed) applyMounts() error {
	r := ""
	if b.root != "/" {
		r = b.root
	}
	var s strings.Builder
	s.WriteString("set -e\n")
	hosts := make([]string, 0, len(b.opts.Layers))
	for h := range b.opts.Layers {
		hosts = append(hosts, h)
	}
	sort.Slice(hosts, func(i, j int) bool {
		if len(hosts[i]) != len(hosts[j]) {
			return len(hosts[i]) < len(hosts[j])
		}
		return hosts[i] < hosts[j]
	})
	for _, h := range hosts {
		layer := b.opts.Layers[h]
		for _, p := range []string{h, layer} {
			if !filepath.IsAbs(p) || strings.ContainsAny(p, ":,\n") {
				return fmt.Errorf("Layers: %q must be an absolute path without ':', ',' or newlines", p)
			}
		}
		if fi, err := os.Stat(layer); err != nil || !fi.IsDir() {
			return fmt.Errorf("Layers: %s is not a directory (%v)", layer, err)
		}
		if fi, err := os.Stat(r + h); err != nil || !fi.IsDir() {
			return fmt.Errorf("Layers: %s is not a directory of the bed's root (%v)", r+h, err)
		}
		// Two lower layers and no upper one: read-only, layer first.
		fmt.Fprintf(&s, "mount -t overlay ocserv-telemetry-testbed -o %s %s\n",
			shQuote("lowerdir="+layer+":"+r+h), shQuote(r+h))
	}
	if b.opts.HookAsFwScript && !b.rel.FwScriptEnv && !b.opts.FwScriptByEnv {
		w, err := b.fwScriptWrapper()
		if err != nil {
			return err
		}
		fmt.Fprintf(&s, "mount --bind %s %s\n", shQuote(w), shQuote(r+b.rel.FwScript))
	}
	argv := []string{"nsenter", "--target", fmt.Sprint(b.holder.cmd.Process.Pid), "--mount", "/bin/sh", "-c", s.String()}
	if _, err := runCmd(15*time.Second, argv...); err != nil {
		return fmt.Errorf("mounts of the bed: %w", err)
	}
	return nil
}

// stopHolder ends the mount namespace (and every mount in it).
func (b *Bed) stopHolder() {
	if b.holder != nil {
		b.holder.stop(syscall.SIGKILL, time.Second)
	}
}

// Launcher is the argv prefix that runs a tool of the bed's ocserv
// version (ocserv, occtl, ocpasswd, the fw script, sh) inside the server
// network namespace, in the bed's mount namespace and root. Paths under
// the host's temporary directory mean the same files there.
func (b *Bed) Launcher() []string {
	return []string{"nsenter", "--target", fmt.Sprint(b.holder.cmd.Process.Pid),
		"--mount", "--root", "--wd", "--net=" + filepath.Join(netnsDir, b.serverNS)}
}

// run runs a tool of the bed's version (see Launcher) with a timeout.
func (b *Bed) run(timeout time.Duration, stdin io.Reader, argv ...string) ([]byte, error) {
	return runCmdIn(timeout, stdin, append(b.Launcher(), argv...)...)
}

// RunInRoot runs argv in the bed's root and server namespace (Launcher)
// and returns its combined output: for instance install.sh on a
// SystemRoot, or `ocserv --version`.
func (b *Bed) RunInRoot(timeout time.Duration, argv ...string) ([]byte, error) {
	return b.run(timeout, nil, argv...)
}

// toolWrapper writes a /bin/sh script that runs tool through the
// launcher with its arguments, for code that takes one executable path.
func (b *Bed) toolWrapper(tool string) (string, error) {
	p := filepath.Join(b.dir, tool+"-of-bed")
	var q []string
	for _, a := range append(b.Launcher(), tool) {
		q = append(q, shQuote(a))
	}
	script := "#!/bin/sh\nexec " + strings.Join(q, " ") + " \"$@\"\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		return "", err
	}
	return p, nil
}

// OcpasswdBinary is an executable that runs the bed version's ocpasswd
// (for ocpasswd.Passwd.Binary).
func (b *Bed) OcpasswdBinary() (string, error) { return b.toolWrapper("ocpasswd") }

// Release is the ocserv release the bed runs.
func (b *Bed) Release() distro.Release { return b.rel }

// Version is the bed's ocserv version.
func (b *Bed) Version() ocserv.Version {
	v, err := ocserv.ParseVersion(b.rel.Version)
	if err != nil {
		b.t.Fatalf("testbed: release version %q: %v", b.rel.Version, err)
	}
	return v
}

// Root is the root file system the bed's ocserv runs from ("/" for the
// host's).
func (b *Bed) Root() string { return b.root }

// Location is the time zone the bed's occtl prints local times in (its
// root's /etc/localtime).
func (b *Bed) Location() *time.Location {
	if b.root == "/" {
		return time.Local
	}
	// /etc/localtime is usually an absolute symlink into the root's own
	// zoneinfo: resolve it inside the root, not on the host.
	p := filepath.Join(b.root, "etc/localtime")
	if target, err := os.Readlink(p); err == nil && filepath.IsAbs(target) {
		p = filepath.Join(b.root, target)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return time.UTC // no zone configured: glibc's default
	}
	loc, err := time.LoadLocationFromTZData("bed", data)
	if err != nil {
		return time.UTC
	}
	return loc
}

// copyHook puts the hook binary into the bed's directory, which the root
// sees at the same path (the build tree usually lies outside it).
func (b *Bed) copyHook() error {
	data, err := os.ReadFile(b.hookPath)
	if err != nil {
		return err
	}
	p := filepath.Join(b.dir, "hook")
	if err := os.WriteFile(p, data, 0o755); err != nil {
		return err
	}
	b.hookPath = p
	return nil
}

// ReleaseRoot returns the release $OCSERV_VERSION selects and the root
// file system its real files are in: "/" for the host's, else the cached
// Debian root (built on first use). For tests that read a version's files
// (its ocserv.conf, its fw script) without a bed.
func ReleaseRoot(t testing.TB) (distro.Release, string) {
	t.Helper()
	rel, err := distro.Selected()
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	if rel.Host {
		return rel, "/"
	}
	return rel, cachedRoot(t, rel)
}

func cachedRoot(t testing.TB, rel distro.Release) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	root, err := distro.EnsureRoot(ctx, rel, t.Logf)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	return root.Dir
}

// WritableRoot returns a private, writable copy of the Debian root of the
// release $OCSERV_VERSION selects (for the host's 1.1.6, a Debian 12 root
// with the same ocserv package), removed when the test ends: a real system
// root to install into (install.sh without --root) and to run the bed from
// (Options.SystemRoot). A copy, not an overlay mount, so nothing is
// mounted on the host and a crashed run leaves only files.
func WritableRoot(t testing.TB) string {
	t.Helper()
	rel, err := distro.Selected()
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	src := cachedRoot(t, rel)
	// Under the host's temporary directory, so the bed's mount of it
	// inside the root shows the same paths; traversable by ocserv's
	// unprivileged workers.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "root")
	if out, err := runCmd(5*time.Minute, "cp", "-a", "--reflink=auto", src, dst); err != nil {
		t.Fatalf("testbed: copy %s: %v\n%s", src, err, out)
	}
	return dst
}

// SetOcservEnv adds to the environment ocserv starts with from now on, as
// a systemd unit's Environment= lines would (for instance what an
// installed drop-in for ocserv.service sets); callable from PrepareConf.
func (b *Bed) SetOcservEnv(env ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.extraEnv = append(b.extraEnv, env...)
}
