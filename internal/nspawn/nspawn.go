// Package nspawn boots a Debian root with systemd as PID 1 in a
// systemd-nspawn container, for end-to-end tests of what only a real
// systemd shows: Type=notify readiness, the watchdog, STATUS=, the unit's
// sandbox, the package's maintainer scripts and install.sh on a real root.
//
// The test machines do not run systemd as PID 1, so the container is
// started with `systemd-nspawn -D DIR --register=no --keep-unit -b` (no
// machined, no scope unit) and driven with `nsenter -t <its PID 1> -a`.
// Its root is an overlay over a cached, read-only debootstrap (package
// debroot): every container starts from the same pristine tree and leaves
// the cache untouched. Its network is a named namespace the test owns
// ("octs-<id>-sd"), so it shares nothing with the host's.
//
// Everything a Machine makes (the nspawn process and the container's
// processes, the overlay mount, the namespace, the scratch directory) is
// removed when the test ends, passed or failed, and a later run removes
// what a crashed run left (after the same age as the test bed's).
package nspawn

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/debroot"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
)

// overlaySource names our overlay mounts in /proc/self/mountinfo, so stale
// ones can be recognised (and nothing else is ever unmounted).
const overlaySource = "octs-nspawn"

// staleAge: as the test bed's (far longer than any suite run).
const staleAge = 90 * time.Minute

// Bind is a host directory made visible read-only inside the container.
type Bind struct {
	Host      string // absolute host path
	Container string // absolute path inside the container
}

// Options configure Boot.
type Options struct {
	// Root is the lower, read-only layer: a root from debroot.Ensure.
	Root string
	// Binds are read-only bind mounts (--bind-ro).
	Binds []Bind
	// BootTimeout bounds the boot up to multi-user.target (default 2m).
	BootTimeout time.Duration
	// Env is extra environment for systemd-nspawn itself (for example
	// SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=0 for the host's cgroup layout).
	Env []string
}

// Machine is one booted container.
type Machine struct {
	t       testing.TB
	id      string
	name    string // machine name
	dir     string // scratch: upper, work, root, console log
	root    string // the overlay: the container's / as the host sees it
	netns   string
	console *syncBuffer
	logFile *os.File
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	leader  int // host PID of the container's PID 1 (systemd)
	// What systemd-nspawn keeps in the host's /run while the container
	// runs, and removes when it exits in order, not when it is killed.
	runFiles []string
	mounted  bool
	hasNS    bool
	booted   bool // reached multi-user.target: an orderly shutdown works
}

// ErrBoot wraps a container that did not boot; its message carries
// systemd-nspawn's output (what the container's systemd printed).
type ErrBoot struct {
	Machine string // its machine name: its namespace is Machine+"-sd"
	Reason  string
	Console string
}

func (e *ErrBoot) Error() string {
	return fmt.Sprintf("nspawn: %s: %s\n--- console ---\n%s", e.Machine, e.Reason, e.Console)
}

// Start boots a container and returns it once its systemd has reached
// multi-user.target; the test's cleanup stops it and removes everything.
// A container that does not boot returns *ErrBoot (after cleaning up), so
// a caller can report why.
func Start(t testing.TB, o Options) (*Machine, error) {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("nspawn: needs root")
	}
	for _, tool := range []string{"systemd-nspawn", "nsenter", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("nspawn: %s not installed (apt-get install systemd-container util-linux iproute2): %w", tool, err)
		}
	}
	if o.BootTimeout == 0 {
		o.BootTimeout = 2 * time.Minute
	}
	cleanStale(t.Logf)
	testbed.CleanStaleNetns(t.Logf)

	id := testbed.RandHex(3)
	m := &Machine{t: t, id: id, name: testbed.NamePrefix + id, done: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			m.cleanup()
		}
	}()
	dir, err := os.MkdirTemp("", testbed.NamePrefix+id+"-sd-")
	if err != nil {
		return nil, err
	}
	m.dir = dir
	if err := m.mountRoot(o.Root); err != nil {
		return nil, err
	}
	m.netns = testbed.NamePrefix + id + "-sd"
	if err := testbed.AddNetns(m.netns); err != nil {
		return nil, err
	}
	m.hasNS = true
	if err := m.spawn(o); err != nil {
		return nil, err
	}
	if err := m.waitBoot(o.BootTimeout); err != nil {
		return nil, err
	}
	ok = true
	t.Cleanup(m.cleanup)
	return m, nil
}

// Boot is Start that fails the test when the container does not boot.
func Boot(t testing.TB, o Options) *Machine {
	t.Helper()
	m, err := Start(t, o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// mountRoot lays a writable overlay over the cached root.
func (m *Machine) mountRoot(lower string) error {
	if _, err := os.Stat(filepath.Join(lower, "sbin/init")); err != nil {
		return fmt.Errorf("nspawn: %s is not a root with systemd as init: %w", lower, err)
	}
	m.root = filepath.Join(m.dir, "root")
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.Mkdir(filepath.Join(m.dir, d), 0o755); err != nil {
			return err
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + filepath.Join(m.dir, "upper") + ",workdir=" + filepath.Join(m.dir, "work")
	if err := unix.Mount(overlaySource, m.root, "overlay", 0, opts); err != nil {
		return fmt.Errorf("nspawn: mount overlay on %s (%s): %w", m.root, opts, err)
	}
	m.mounted = true
	// The scratch dir is 0700 (MkdirTemp); the container's root must
	// look like a root to the services inside.
	if err := os.Chmod(m.root, 0o755); err != nil {
		return err
	}
	// systemd-nspawn locks the image by its directory's device and inode,
	// and keeps a mount propagation dir named for the machine.
	var st unix.Stat_t
	if err := unix.Stat(m.root, &st); err != nil {
		return err
	}
	m.runFiles = []string{
		fmt.Sprintf("/run/systemd/nspawn/locks/inode-%d:%d", st.Dev, st.Ino),
		"/run/systemd/nspawn/propagate/" + m.name,
	}
	return nil
}

func (m *Machine) spawn(o Options) error {
	argv := []string{"systemd-nspawn",
		"--directory=" + m.root,
		"--machine=" + m.name,
		"--register=no", "--keep-unit",
		"--network-namespace-path=/run/netns/" + m.netns,
		// nspawn keeps CAP_NET_ADMIN only for the networking options it
		// sets up itself, not for a namespace it is given; ocserv needs
		// it for its tun devices (TUNSETIFF) and systemd for loopback.
		"--capability=CAP_NET_ADMIN",
		// Output only: nothing reads a login prompt, and no terminal is
		// needed for the test binary's pipes.
		"--console=read-only",
		"--boot",
	}
	for _, b := range o.Binds {
		if !filepath.IsAbs(b.Host) || !filepath.IsAbs(b.Container) || strings.ContainsAny(b.Host+b.Container, ":\n") {
			return fmt.Errorf("nspawn: bind %q → %q: absolute paths without ':'", b.Host, b.Container)
		}
		argv = append(argv[:len(argv)-1], "--bind-ro="+b.Host+":"+b.Container, "--boot")
	}
	f, err := os.OpenFile(filepath.Join(m.dir, "console.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	m.logFile = f
	m.console = &syncBuffer{file: f}
	cmd := exec.Command(argv[0], argv[1:]...)
	// A pure cgroup v2 hierarchy in the container (the host's unified
	// one), as a Debian host boots with. Without it, systemd-nspawn copies
	// a host's hybrid v1/v2 layout, which systemd 258 and later refuse
	// ("Detected unsupported legacy cgroup hierarchy, refusing
	// execution.") and 256 and 257 run on tainted "cgroupsv1".
	cmd.Env = append(append(os.Environ(), "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1"), o.Env...)
	cmd.Stdout = m.console
	cmd.Stderr = m.console
	// Its own process group; killed with the test binary if that dies
	// without running its cleanups (the container's processes are then
	// found through its network namespace: see cleanStale).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("nspawn: start %s: %w", strings.Join(argv, " "), err)
	}
	m.cmd = cmd
	go func() {
		m.waitErr = cmd.Wait()
		close(m.done)
	}()
	m.t.Logf("nspawn: %s", strings.Join(argv, " "))
	return nil
}

func (m *Machine) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// waitBoot finds the container's PID 1 and waits until its systemd has
// finished booting with multi-user.target active.
func (m *Machine) waitBoot(d time.Duration) error {
	deadline := time.Now().Add(d)
	bootErr := func(reason string) error {
		return &ErrBoot{Machine: m.name, Reason: reason, Console: m.console.String()}
	}
	for m.leader == 0 {
		if m.exited() {
			return bootErr(fmt.Sprintf("systemd-nspawn exited during boot (%v)", m.waitErr))
		}
		if pid := containerInit(m.cmd.Process.Pid); pid > 0 {
			m.leader = pid
			break
		}
		if time.Now().After(deadline) {
			return bootErr(fmt.Sprintf("no container PID 1 under systemd-nspawn within %s", d))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// is-system-running --wait returns once the boot has finished
	// (running, or degraded when some unit failed: Debian's ocserv.service
	// fails until a certificate is configured).
	for {
		if m.exited() {
			return bootErr(fmt.Sprintf("systemd-nspawn exited during boot (%v)", m.waitErr))
		}
		left := time.Until(deadline)
		if left <= 0 {
			return bootErr(fmt.Sprintf("not booted within %s", d))
		}
		out, _ := m.Exec(min(left, 30*time.Second), "systemctl", "is-system-running", "--wait")
		state := strings.TrimSpace(string(out))
		if state == "running" || state == "degraded" {
			break
		}
		// "offline" until the container's PID 1 has exec'd systemd (it
		// starts as systemd-nspawn's own code); "initializing" and
		// "starting" while booting.
		if state == "maintenance" || state == "stopping" {
			return bootErr("systemd is " + state)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := m.Exec(10*time.Second, "systemctl", "is-active", "multi-user.target"); err != nil {
		return bootErr(fmt.Sprintf("multi-user.target not active: %v %s", err, out))
	}
	m.booted = true
	return nil
}

// containerInit is the host PID of the container's PID 1: the child of
// systemd-nspawn that is PID 1 in its own PID namespace.
func containerInit(nspawn int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", nspawn, nspawn))
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(st), "\n") {
			if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
				ids := strings.Fields(rest)
				if len(ids) >= 2 && ids[len(ids)-1] == "1" {
					return pid
				}
			}
		}
	}
	return 0
}

// env is the environment of every command run in the container: a plain
// root shell's, without the test binary's.
var env = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root", "LANG=C.UTF-8", "TERM=dumb",
	"SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "DEBIAN_FRONTEND=noninteractive",
}

// Exec runs argv (no shell) inside the container: in all its namespaces
// (nsenter -a), as root, with a plain environment, bounded by timeout. It
// returns the combined output; the error names the command.
func (m *Machine) Exec(timeout time.Duration, argv ...string) ([]byte, error) {
	return m.ExecIn(m.leader, timeout, argv...)
}

// ExecIn is Exec in the namespaces of another process of the container
// (host PID), for example a service's private mount namespace.
func (m *Machine) ExecIn(pid int, timeout time.Duration, argv ...string) ([]byte, error) {
	return m.run(pid, timeout, "", argv)
}

// ExecInput is Exec with input on the command's standard input (for
// example a password for ocpasswd).
func (m *Machine) ExecInput(input string, timeout time.Duration, argv ...string) ([]byte, error) {
	return m.run(m.leader, timeout, input, argv)
}

func (m *Machine) run(pid int, timeout time.Duration, input string, argv []string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	full := append([]string{"nsenter", "-t", strconv.Itoa(pid), "-a", "--", "/usr/bin/env", "-i"}, env...)
	full = append(full, argv...)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.WaitDelay = time.Second
	cmd.Stdin = strings.NewReader(input)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if ctx.Err() != nil {
		return out.Bytes(), fmt.Errorf("in container: %s: timed out after %s: %s", strings.Join(argv, " "), timeout, strings.TrimSpace(out.String()))
	}
	if err != nil {
		return out.Bytes(), fmt.Errorf("in container: %s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(out.String()))
	}
	return out.Bytes(), nil
}

// Systemctl runs systemctl with args in the container (30s bound).
func (m *Machine) Systemctl(args ...string) (string, error) {
	out, err := m.Exec(30*time.Second, append([]string{"systemctl"}, args...)...)
	return string(out), err
}

// Show returns unit properties (systemctl show -p …) by name.
func (m *Machine) Show(unit string, props ...string) (map[string]string, error) {
	out, err := m.Systemctl("show", unit, "-p", strings.Join(props, ","))
	if err != nil {
		return nil, err
	}
	res := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			res[k] = v
		}
	}
	return res, nil
}

// WaitUnit polls unit's properties until cond holds, bounded by d; the
// error carries the last properties and the unit's journal.
func (m *Machine) WaitUnit(unit string, d time.Duration, cond func(map[string]string) bool, props ...string) (map[string]string, error) {
	deadline := time.Now().Add(d)
	for {
		p, err := m.Show(unit, props...)
		if err == nil && cond(p) {
			return p, nil
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("%s: condition not met within %s (last: %v, %v)\n%s", unit, d, p, err, m.Journal(unit))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Journal is the unit's journal of this boot ("" unit: the whole boot),
// for failure messages.
func (m *Machine) Journal(unit string) string {
	argv := []string{"journalctl", "-b", "--no-pager", "-o", "short-monotonic", "-n", "300"}
	if unit != "" {
		argv = append(argv, "-u", unit)
	}
	out, err := m.Exec(20*time.Second, argv...)
	if err != nil {
		return fmt.Sprintf("(journal: %v)", err)
	}
	return string(out)
}

// Root is the container's / as the host sees it (the overlay), for
// reading and writing its files from the test.
func (m *Machine) Root() string { return m.root }

// Path is a container path as the host sees it.
func (m *Machine) Path(p string) string { return filepath.Join(m.root, p) }

// NetNS is the container's network namespace (a name under /run/netns).
func (m *Machine) NetNS() string { return m.netns }

// ID is the random part of the machine's names; Name is its machine name.
func (m *Machine) ID() string   { return m.id }
func (m *Machine) Name() string { return m.name }

// Leader is the host PID of the container's systemd.
func (m *Machine) Leader() int { return m.leader }

// HostPID translates a PID as the container's systemd reports it (for
// example a unit's MainPID) into the host's PID.
func (m *Machine) HostPID(pid int) (int, error) {
	// In the host's /proc, a container process's NSpid line lists its
	// PID in each namespace, the host's first and the container's second.
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	want := strconv.Itoa(pid)
	leaderNS, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", m.leader))
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		hp, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", hp))
		if err != nil || ns != leaderNS {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", hp))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(st), "\n") {
			if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
				ids := strings.Fields(rest)
				if len(ids) >= 2 && ids[1] == want {
					return hp, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("nspawn: no process %d in the container", pid)
}

// Traces lists what the machine makes on the host, for tests that check
// nothing is left after it: its scratch dir (with the overlay's mount
// point), its network namespace, nspawn's files in /run, and the host
// PIDs of systemd-nspawn and the container's PID 1.
func (m *Machine) Traces() (dir, netns string, runFiles []string, pids []int) {
	if m.cmd != nil {
		pids = append(pids, m.cmd.Process.Pid)
	}
	if m.leader > 0 {
		pids = append(pids, m.leader)
	}
	return m.dir, m.netns, m.runFiles, pids
}

// Console is what systemd-nspawn and the container's console printed.
func (m *Machine) Console() string {
	if m.console == nil {
		return ""
	}
	return m.console.String()
}

// cleanup stops the container and removes everything Start made. On a
// failed test it first logs the boot's journal and the console.
func (m *Machine) cleanup() {
	t := m.t
	if t.Failed() && m.leader > 0 && !m.exited() {
		t.Logf("=== journal of %s ===\n%s", m.name, m.Journal(""))
	}
	if t.Failed() && m.console != nil {
		t.Logf("=== console of %s ===\n%s", m.name, tail(m.console.String(), 60))
	}
	if err := m.stop(); err != nil {
		t.Errorf("nspawn cleanup: %v", err)
	} else {
		// Left behind only when systemd-nspawn was killed.
		for _, f := range m.runFiles {
			if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
				t.Errorf("nspawn cleanup: %v", err)
			}
		}
	}
	if m.hasNS {
		if err := testbed.DelNetns(m.netns); err != nil {
			t.Errorf("nspawn cleanup: %v", err)
		}
	}
	if m.mounted {
		if err := unmount(m.root); err != nil {
			t.Errorf("nspawn cleanup: %v", err)
			return // never delete through a mount
		}
	}
	if m.logFile != nil {
		m.logFile.Close()
	}
	if m.dir != "" {
		if err := os.RemoveAll(m.dir); err != nil {
			t.Errorf("nspawn cleanup: %v", err)
		}
	}
}

// stop powers the container off: systemd-nspawn turns SIGTERM into an
// orderly shutdown of the container's systemd. A container that never
// finished booting is killed at once (a PID 1 that has not set up its
// signal handlers yet ignores the halt request), and so is one that has not
// shut down after 30s.
func (m *Machine) stop() error {
	if m.cmd == nil {
		return nil
	}
	kill := func() error {
		if m.leader > 0 {
			_ = syscall.Kill(m.leader, syscall.SIGKILL)
		}
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-m.done:
			return nil
		case <-time.After(10 * time.Second):
			return fmt.Errorf("systemd-nspawn of %s still running after SIGKILL", m.name)
		}
	}
	if !m.exited() {
		if !m.booted {
			if err := kill(); err != nil {
				return err
			}
		} else {
			_ = m.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-m.done:
			case <-time.After(30 * time.Second):
				m.t.Logf("nspawn: %s did not shut down within 30s; killing it", m.name)
				if err := kill(); err != nil {
					return err
				}
			}
		}
	}
	// The container's PID 1 dies with its PID namespace; make sure.
	if m.leader > 0 {
		deadline := time.Now().Add(10 * time.Second)
		for Alive(m.leader) && isInit(m.leader) {
			if time.Now().After(deadline) {
				return fmt.Errorf("container PID 1 (%d) of %s still alive", m.leader, m.name)
			}
			_ = syscall.Kill(m.leader, syscall.SIGKILL)
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// Alive reports whether pid is a running process: not gone, and not a
// zombie waiting for a parent (the container's PID 1 is reparented to the
// host's init when systemd-nspawn dies).
func Alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return false
	}
	return data[i+2] != 'Z' && data[i+2] != 'X'
}

// isInit reports whether pid is still a PID 1 of some namespace (and not
// an unrelated process that reused the number).
func isInit(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(st), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			ids := strings.Fields(rest)
			return len(ids) >= 2 && ids[len(ids)-1] == "1"
		}
	}
	return false
}

// unmount detaches the overlay and whatever the container left below it.
func unmount(root string) error {
	for i := 0; i < 3; i++ {
		mounts, err := debroot.MountsUnder(root)
		if err != nil {
			return err
		}
		if len(mounts) == 0 {
			return nil
		}
		for j := len(mounts) - 1; j >= 0; j-- {
			_ = unix.Unmount(mounts[j], unix.MNT_DETACH)
		}
	}
	return fmt.Errorf("nspawn: %s is still mounted", root)
}

// cleanStale removes overlays (and their scratch dirs) of containers whose
// test died without cleaning up long ago. Their processes are killed with
// their network namespace by testbed.CleanStaleNetns.
func cleanStale(logf func(string, ...any)) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		// mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - TYPE SOURCE SUPER
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 2 || qf[0] != "overlay" || qf[1] != overlaySource {
			continue
		}
		mp := pf[4]
		dir := filepath.Dir(mp)
		if filepath.Base(mp) != "root" || !strings.HasPrefix(filepath.Base(dir), testbed.NamePrefix) {
			continue
		}
		fi, err := os.Stat(dir)
		if err != nil || time.Since(fi.ModTime()) < staleAge {
			continue
		}
		// The container's netns is octs-<id>-sd, <id> being the part of
		// the dir name after the prefix ("octs-<id>-sd-XXXX").
		id, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), testbed.NamePrefix), "-")
		_ = testbed.DelNetns(testbed.NamePrefix + id + "-sd")
		if err := unmount(mp); err != nil {
			logf("nspawn: stale container root %s: %v", mp, err)
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			logf("nspawn: stale container dir %s: %v", dir, err)
			continue
		}
		logf("nspawn: removed stale container %s", dir)
	}
}

// syncBuffer collects output for polling while the process runs, and
// mirrors it into a log file.
type syncBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	file *os.File
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.file != nil {
		_, _ = b.file.Write(p)
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
