//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
	"github.com/ocserv-telemetry/ocserv-telemetry/natsjs"
)

// Under a real systemd (docs/install.md, "Tested under a real systemd"):
// in a booted Debian (12, 13 or sid: the release of the ocserv version
// $OCSERV_VERSION selects) with Debian's ocserv as a systemd service, the package (dpkg -i, dpkg -r) and install.sh on the real root
// (install, rerun, --uninstall), the shipper as a Type=notify service with
// its watchdog and STATUS=, its sandbox in force, events of a real
// openconnect login on NATS, ocserv's restart and reload with the hook
// wired, and a removal that leaves the machine as it was.

// The package: dpkg -i runs install.sh (which starts the shipper and
// reloads ocserv), the operator sets NATS_URL; everything the unit
// promises holds under the real systemd; dpkg -r leaves the tree as before
// but for what removal keeps by design.
func TestSystemdPackage(t *testing.T) {
	testbed.RequireRoot(t)
	s := selectedSuite(t)
	t.Run(s.Suite, func(t *testing.T) { systemdPackage(t, s) })
}

func systemdPackage(t *testing.T, s sdSuite) {
	h := newSDHost(t, s)
	before := sdManifest(t, h)
	ocservPID := h.waitOcserv()

	out := h.exec(3*time.Minute, "dpkg", "-i", sdRelease+"/"+h.deb)
	t.Logf("dpkg -i:\n%s", out)
	for _, b := range []string{"hook", "shipper"} {
		if readFile(t, h.hostPath("/usr/local/share/ocserv-telemetry/bin/"+b)) != readFile(t, filepath.Join(repoRoot(t), "bin", b)) {
			t.Fatalf("%s in dist/ is not this build's bin/%s: run make package", h.deb, b)
		}
	}
	// install.sh saw systemd as PID 1: the shipper is enabled and started,
	// ocserv reloaded (not restarted: sessions stay up).
	if st := strings.TrimSpace(h.exec(10*time.Second, "systemctl", "is-enabled", shipperUnit)); st != "enabled" {
		t.Errorf("%s is %s after dpkg -i", shipperUnit, st)
	}
	if pid := h.waitOcserv(); pid != ocservPID {
		t.Errorf("dpkg -i restarted ocserv (MainPID %s -> %s); it should only reload it", ocservPID, pid)
	}
	if !strings.Contains(h.m.Journal("ocserv.service"), "Reload") {
		t.Errorf("ocserv was not reloaded by the install:\n%s", h.m.Journal("ocserv.service"))
	}
	if env := readFile(t, h.hostPath(instEnv)); !strings.Contains(env, "\nSERVER_ID="+sdServerID+"\n") {
		t.Errorf("agent.env: no SERVER_ID=%s (from the host name %s):\n%s", sdServerID, sdHostname, env)
	}

	h.setNATS()
	started := h.checkNotify()
	h.checkSandbox(sandbox{unit: shipperUnit, bounding: capDACOverride, exact: true,
		readOnly: append(sandboxReadOnly, "/etc/ocserv/ocserv-telemetry-probe", "/var/lib/ocserv-telemetry-probe"),
		writable: []string{instSpool}})

	// A real login: the hook wired by the package writes the events, the
	// shipper under systemd delivers them.
	h.loginShips("after dpkg -i")
	h.checkStatusLine()

	// ocserv reloaded (SIGHUP: same process, sessions stay up) and
	// restarted (new process): a session that spans the reload ends with
	// its disconnect event, new logins keep working with the hook, and
	// the events keep coming.
	pid := h.waitOcserv()
	from := h.ev.count()
	spanning, err := h.bed.Connect("alice", h.bed.Password("alice"))
	if err != nil {
		t.Fatal(err)
	}
	spanConn := h.ev.wait(t, "before systemctl reload ocserv", from, events.Connect, "alice")
	h.checkLiveState(1)
	h.exec(30*time.Second, "systemctl", "reload", "ocserv.service")
	if after := h.waitOcserv(); after != pid {
		t.Errorf("systemctl reload ocserv: MainPID %s -> %s", pid, after)
	}
	h.loginShips("after systemctl reload ocserv")
	if spanning.Exited() || spanning.Logins() != 1 {
		t.Errorf("the session across the reload did not stay up (exited %v, %d logins):\n%s", spanning.Exited(), spanning.Logins(), spanning.Output())
	}
	from = h.ev.count()
	if err := spanning.Disconnect(); err != nil {
		t.Fatal(err)
	}
	if d := h.ev.wait(t, "session across systemctl reload ocserv", from, events.Disconnect, "alice"); d.SessionUID != spanConn.SessionUID {
		t.Errorf("the disconnect after the reload has session_uid %s, its connect %s", d.SessionUID, spanConn.SessionUID)
	}
	h.exec(30*time.Second, "systemctl", "restart", "ocserv.service")
	if after := h.waitOcserv(); after == pid {
		t.Errorf("systemctl restart ocserv: MainPID still %s", pid)
	}
	h.loginShips("after systemctl restart ocserv")

	h.checkWatchdog(started)

	out = h.exec(3*time.Minute, "dpkg", "-r", "ocserv-telemetry")
	t.Logf("dpkg -r:\n%s", out)
	h.checkRemoved(before, kept{"/var/lib/dpkg/status-old", "dpkg's backup of its status file, rewritten by every dpkg run"})
}

// install.sh on the container's real root (the path every other install
// test replaces with --root): it enables and starts the shipper and
// reloads ocserv through the real systemctl, a login's events reach NATS,
// a rerun changes nothing, and --uninstall leaves the tree as it was.
func TestSystemdInstallScript(t *testing.T) {
	testbed.RequireRoot(t)
	s := selectedSuite(t)
	t.Run(s.Suite, func(t *testing.T) { systemdInstallScript(t, s) })
}

func systemdInstallScript(t *testing.T, s sdSuite) {
	h := newSDHost(t, s)
	before := sdManifest(t, h)
	ocservPID := h.waitOcserv()

	// As an operator runs it from a release directory (nothing is missing,
	// so it installs no package).
	install := []string{sdRelease + "/install.sh", "--bin-dir", sdRelease + "/bin"}
	out := h.exec(3*time.Minute, install...)
	t.Logf("install.sh:\n%s", out)
	if !strings.Contains(out, "the shipper is started") {
		t.Errorf("install.sh did not start the shipper under systemd:\n%s", out)
	}
	if st := strings.TrimSpace(h.exec(10*time.Second, "systemctl", "is-enabled", shipperUnit)); st != "enabled" {
		t.Errorf("%s is %s after install.sh", shipperUnit, st)
	}
	if pid := h.waitOcserv(); pid != ocservPID {
		t.Errorf("install.sh restarted ocserv (MainPID %s -> %s); it should only reload it", ocservPID, pid)
	}
	h.setNATS()
	h.checkNotify()
	h.loginShips("after install.sh")

	// A rerun changes nothing and leaves the running shipper alone (the
	// spool is left out of the comparison: the shipper works in it).
	installed := withoutTree(sdManifest(t, h), instSpool)
	shipperPID, _ := h.m.Show(shipperUnit, "MainPID")
	out = h.exec(3*time.Minute, install...)
	if !strings.Contains(out, "Nothing to change") {
		t.Errorf("rerun of install.sh:\n%s", out)
	}
	if d := snapDiff(installed, withoutTree(sdManifest(t, h), instSpool)); d != "" {
		t.Errorf("rerun of install.sh changed the tree:\n%s", d)
	}
	if p, _ := h.m.Show(shipperUnit, "MainPID"); p["MainPID"] != shipperPID["MainPID"] {
		t.Errorf("a rerun that changed nothing restarted the shipper (MainPID %s -> %s)", shipperPID["MainPID"], p["MainPID"])
	}

	out = h.exec(3*time.Minute, sdRelease+"/install.sh", "--uninstall")
	t.Logf("install.sh --uninstall:\n%s", out)
	h.checkRemoved(before)
}

// checkNotify: the shipper is a Type=notify service that reached READY=1
// (systemd keeps a notify service "activating" until then), runs with the
// unit's watchdog armed, and reports STATUS=. It returns the main PID and
// its start (monotonic µs) for checkWatchdog.
func (h *sdHost) checkNotify() [2]string {
	t := h.t
	p, err := h.m.WaitUnit(shipperUnit, 30*time.Second, func(p map[string]string) bool {
		return p["ActiveState"] == "active" && p["SubState"] == "running" &&
			strings.Contains(p["StatusText"], "NATS "+natsjs.StateConnected)
	}, "Type", "ActiveState", "SubState", "StatusText", "WatchdogUSec", "MainPID", "ExecMainStartTimestampMonotonic", "NRestarts")
	if err != nil {
		t.Fatal(err)
	}
	if p["Type"] != "notify" {
		t.Errorf("%s: Type=%s, want notify", shipperUnit, p["Type"])
	}
	if p["WatchdogUSec"] != "30s" {
		t.Errorf("%s: WatchdogUSec=%s, want the unit's 30s", shipperUnit, p["WatchdogUSec"])
	}
	t.Logf("%s: %v", shipperUnit, p)
	return [2]string{p["MainPID"], p["ExecMainStartTimestampMonotonic"]}
}

// checkLiveState: live state (LIVESTATE, on by default) works inside the
// unit's sandbox: occtl reaches ocserv's socket (owned by ocserv's
// run-as-user, mode 0711) and counts the connected sessions, as the
// shipper's status.json reports.
func (h *sdHost) checkLiveState(sessions int) {
	t := h.t
	var last string
	var err error
	deadline := time.Now().Add(30 * time.Second)
	for {
		var data []byte
		data, err = os.ReadFile(h.hostPath(instSpool + "/status.json"))
		if err == nil {
			var st struct {
				Live *struct {
					Occtl    string `json:"occtl"`
					Error    string `json:"occtl_error"`
					Sessions int    `json:"sessions"`
					Version  string `json:"ocserv_version"`
				} `json:"live_state"`
			}
			if err = json.Unmarshal(data, &st); err == nil && st.Live != nil {
				last = fmt.Sprintf("%+v", *st.Live)
				if st.Live.Occtl == "ok" && st.Live.Sessions == sessions {
					if st.Live.Version != h.suite.Ocserv {
						t.Errorf("live state: ocserv_version %q, want %s", st.Live.Version, h.suite.Ocserv)
					}
					t.Logf("live state under the sandbox: %s", last)
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("live state under the unit's sandbox: want occtl ok and %d session(s), last %s (%v)\n%s", sessions, last, err, h.m.Journal(shipperUnit))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkStatusLine: `systemctl status` shows the shipper's STATUS=, with
// the backlog drained after a delivery.
func (h *sdHost) checkStatusLine() {
	t := h.t
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := h.m.Systemctl("status", "--no-pager", "--lines=0", shipperUnit)
		if strings.Contains(out, "Status: \"backlog 0 events (0 bytes); NATS connected; last delivery ") &&
			!strings.Contains(out, "last delivery never") {
			t.Logf("systemctl status:\n%s", out)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemctl status shows no drained STATUS= line after a delivery:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkWatchdog: the shipper process that started (started[0] at
// started[1]) is still the one running, never restarted, and systemd
// recorded a watchdog ping later than one full WatchdogSec after its
// start: it ran past the watchdog's deadline because it was fed.
func (h *sdHost) checkWatchdog(started [2]string) {
	t := h.t
	props := []string{"MainPID", "NRestarts", "WatchdogTimestampMonotonic", "ExecMainStartTimestampMonotonic", "WatchdogUSec", "Result"}
	p, err := h.m.WaitUnit(shipperUnit, 75*time.Second, func(p map[string]string) bool {
		ping, err1 := strconv.ParseInt(p["WatchdogTimestampMonotonic"], 10, 64)
		start, err2 := strconv.ParseInt(started[1], 10, 64)
		return err1 == nil && err2 == nil && ping-start > 30_000_000 || p["MainPID"] != started[0]
	}, props...)
	if err != nil {
		t.Fatal(err)
	}
	if p["MainPID"] != started[0] || p["ExecMainStartTimestampMonotonic"] != started[1] || p["NRestarts"] != "0" || p["Result"] != "success" {
		t.Fatalf("the shipper did not run past WatchdogSec undisturbed: started as %v, now %v\n%s", started, p, h.m.Journal(shipperUnit))
	}
	t.Logf("watchdog: last ping %s µs after the start, same process, no restart", fmt.Sprint(mustInt(p["WatchdogTimestampMonotonic"])-mustInt(started[1])))
}

func mustInt(s string) int64 {
	v, _ := strconv.ParseInt(s, 10, 64)
	return v
}

// sandbox is what a unit's sandbox must hold for its running process.
type sandbox struct {
	unit string
	// bounding is the exact capability bounding set; the permitted,
	// effective and inheritable sets never exceed it, nothing is
	// ambient. exact: permitted and effective are the bounding set too.
	bounding uint64
	exact    bool
	// readOnly are paths the sandbox refuses to create (and the same
	// write outside the sandbox works); writable are paths it must let
	// the service write.
	readOnly, writable []string
}

// Capability bits (linux/capability.h).
const (
	capChown       = 1 << 0
	capDACOverride = 1 << 1
	capNetAdmin    = 1 << 12
	capNetRaw      = 1 << 13
)

// probes outside every unit's ReadWritePaths: ProtectSystem=strict and
// ProtectHome make them read-only.
var sandboxReadOnly = []string{"/etc/ocserv-telemetry-probe", "/etc/ocserv-telemetry/probe",
	"/usr/local/bin/ocserv-telemetry-probe", "/root/ocserv-telemetry-probe"}

// checkSandbox: the unit's running process has the capabilities, no new
// privileges, a seccomp filter, and the file system view its unit file
// promises, seen from inside its namespaces (nsenter into its mount, and
// user, namespace): a write outside its paths fails with EROFS.
func (h *sdHost) checkSandbox(want sandbox) {
	t := h.t
	p, err := h.m.Show(want.unit, "MainPID")
	if err != nil {
		t.Fatal(err)
	}
	cpid, _ := strconv.Atoi(p["MainPID"])
	pid, err := h.m.HostPID(cpid)
	if err != nil {
		t.Fatal(err)
	}
	status := readFile(t, fmt.Sprintf("/proc/%d/status", pid))
	// The inheritable set may hold capabilities too (systemd 257 copies
	// the bounding set there for a root service; 252 leaves it empty): it
	// never exceeds the bounding set, and nothing is ambient.
	caps := map[string]uint64{}
	for _, line := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(line, ":\t"); ok && strings.HasPrefix(k, "Cap") {
			caps[k], _ = strconv.ParseUint(v, 16, 64)
		}
	}
	b := want.bounding
	if caps["CapBnd"] != b || caps["CapAmb"] != 0 || (caps["CapPrm"]|caps["CapEff"]|caps["CapInh"])&^b != 0 ||
		want.exact && (caps["CapPrm"] != b || caps["CapEff"] != b) {
		t.Errorf("%s (pid %d): capabilities %x, want bounding %x (exact %v):\n%s", want.unit, pid, caps, b, want.exact, status)
	}
	for _, w := range []string{"NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(status, "\n"+w+"\n") {
			t.Errorf("%s (pid %d): no %q in /proc/pid/status:\n%s", want.unit, pid, w, status)
		}
	}
	const refusal = "Read-only file system"
	for _, path := range want.readOnly {
		out, err := h.m.ExecIn(pid, 10*time.Second, "touch", path)
		if err == nil {
			t.Errorf("the sandbox of %s lets %s be written", want.unit, path)
			h.m.ExecIn(pid, 10*time.Second, "rm", "-f", path)
			continue
		}
		if !strings.Contains(string(out), refusal) {
			t.Errorf("touch %s in the sandbox of %s: %v, want %q", path, want.unit, err, refusal)
		}
		// Outside the sandbox the same write works.
		if out, err := h.m.Exec(10*time.Second, "touch", path); err != nil {
			t.Errorf("control: touch %s outside the sandbox: %v %s", path, err, out)
		}
		h.m.Exec(10*time.Second, "rm", "-f", path)
	}
	for _, dir := range want.writable {
		probe := dir + "/.sandbox-probe"
		if out, err := h.m.ExecIn(pid, 10*time.Second, "touch", probe); err != nil {
			t.Errorf("%s is not writable in the sandbox of %s: %v %s", dir, want.unit, err, out)
		}
		h.m.ExecIn(pid, 10*time.Second, "rm", "-f", probe)
	}
	// ProtectHome: /root is not even visible.
	if out, err := h.m.ExecIn(pid, 10*time.Second, "ls", "-A", "/root"); err == nil && strings.TrimSpace(string(out)) != "" {
		t.Errorf("ProtectHome: /root lists %q in the sandbox of %s", out, want.unit)
	}
}

// sdExcluded are trees that change on their own while a machine runs
// (logs, the journal, caches, systemd's state, runtime and temporary
// files; ocserv's sec-mod socket, made anew with a random name at each
// start in its chroot's run/) and the release bind mount's mount point.
var sdExcluded = []string{"/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp", "/var/log", "/var/cache",
	"/var/lib/systemd", "/var/lib/ocserv/run", sdRelease}

// withoutTree is snap without dir and what is below it.
func withoutTree(snap map[string]string, dir string) map[string]string {
	for p := range snap {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			delete(snap, p)
		}
	}
	return snap
}

// sdManifest describes the container's tree (type, mode, owner, link
// target, content hash), without sdExcluded.
func sdManifest(t *testing.T, h *sdHost) map[string]string {
	t.Helper()
	snap := snapshot(t, h.m.Root())
	for _, x := range sdExcluded {
		withoutTree(snap, x)
	}
	return snap
}

// kept is a tree a removal leaves on purpose, and why.
type kept struct{ prefix, why string }

// sdKept: what every removal leaves (docs/install.md, "Uninstall").
var sdKept = []kept{
	{"/etc/ocserv-telemetry", "agent.env: the operator's configuration and secrets are kept"},
	{instSpool, "the spool: undelivered events and its state are kept"},
}

// checkRemoved: after removal the shipper is gone from systemd, ocserv
// still runs (and logs in), and the tree is as before but for sdKept.
func (h *sdHost) checkRemoved(before map[string]string, extra ...kept) {
	t := h.t
	if out, err := h.m.Systemctl("cat", shipperUnit); err == nil {
		t.Errorf("%s still known to systemd:\n%s", shipperUnit, out)
	}
	h.waitOcserv()
	if _, err := h.bed.Connect("alice", h.bed.Password("alice")); err != nil {
		t.Errorf("login after removal: %v", err)
	}
	after := sdManifest(t, h)
	var keys []string
	for k := range before {
		keys = append(keys, k)
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var named []string
	for _, k := range keys {
		if before[k] == after[k] {
			continue
		}
		why := ""
		// The caller's reasons first: they are the more specific.
		for _, kp := range append(append([]kept(nil), extra...), sdKept...) {
			if k == kp.prefix || strings.HasPrefix(k, kp.prefix+"/") {
				why = kp.why
				break
			}
		}
		change := fmt.Sprintf("%s: %q -> %q", k, before[k], after[k])
		if why == "" {
			t.Errorf("removal left a difference: %s", change)
			continue
		}
		named = append(named, change+" ("+why+")")
	}
	t.Logf("after removal, differences from before the install (all kept on purpose):\n  %s", strings.Join(named, "\n  "))
	if _, ok := after[instEnv]; !ok {
		t.Errorf("removal deleted %s (the operator's configuration)", instEnv)
	}
	if after[ocservConf] != before[ocservConf] {
		t.Errorf("ocserv.conf not restored byte for byte: %q, before %q", after[ocservConf], before[ocservConf])
	}
	if _, err := os.Stat(h.hostPath(instState)); err == nil {
		t.Errorf("%s still there", instState)
	}
}
