//go:build e2e

package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
)

// install.sh (docs/install.md) into throwaway roots: a DESTDIR-style
// directory with its own etc/ocserv/ocserv.conf (Debian's, as the ocserv
// package installs it, plus an operator's own connect-script and a virtual
// host section), usr/bin/ocserv-fw (Debian's) and an empty dpkg database.
// Then, on the test bed, a real ocserv runs with the installed files laid
// over the host's in its private mount namespace, a real openconnect client
// logs in with restrict-user-to-routes, and the event reaches NATS through
// the installed shipper and configuration. The host's /etc, /usr/bin and
// /usr/local are never written.

const (
	instHook    = "/usr/local/sbin/ocserv-telemetry-hook"
	instShipper = "/usr/local/bin/ocserv-telemetry-shipper"
	instCtl     = "/usr/local/bin/ocserv-telemetry-ctl"
	instHookSh  = "/usr/local/libexec/ocserv-telemetry/hook.sh"
	instFwSh    = "/usr/local/libexec/ocserv-telemetry/fw.sh"
	instEnv     = "/etc/ocserv-telemetry/agent.env"
	instExample = "/etc/ocserv-telemetry/agent.env.example"
	instSpool   = "/var/spool/ocserv-telemetry"
	instUnit    = "/etc/systemd/system/ocserv-telemetry-shipper.service"
	instWants   = "/etc/systemd/system/multi-user.target.wants/ocserv-telemetry-shipper.service"
	instState   = "/var/lib/ocserv-telemetry/install"
	instDropin  = "/etc/systemd/system/ocserv.service.d/ocserv-telemetry.conf"
	ocservConf  = "/etc/ocserv/ocserv.conf"
	operatorCS  = "connect-script = /usr/local/bin/site-connect"
	vhostHeader = "[vhost:vpn2.example.com]"
)

// repoRoot is the module root (install.sh, bin/, systemd/).
func repoRoot(t *testing.T) string {
	t.Helper()
	hook, err := testbed.HookBinary()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(filepath.Dir(hook))
}

// realisticConf is Debian's ocserv.conf with an operator's active
// connect-script next to the package's commented example, and a virtual
// host section at the end (global lines must stay above it).
func realisticConf(t *testing.T) []byte {
	t.Helper()
	deb, err := os.ReadFile("/etc/ocserv/ocserv.conf")
	if err != nil {
		t.Fatalf("Debian's ocserv.conf (ocserv package): %v", err)
	}
	const anchor = "#connect-script = /usr/bin/myscript\n"
	if !bytes.Contains(deb, []byte(anchor)) {
		t.Fatalf("Debian's ocserv.conf has no %q line to put the operator's script next to", anchor)
	}
	conf := bytes.Replace(deb, []byte(anchor), []byte(anchor+operatorCS+"\n"), 1)
	return append(conf, []byte("\n"+vhostHeader+"\nbanner = \"second host\"\n")...)
}

// newRoot makes a throwaway root: etc/ocserv/ocserv.conf (mode 0640),
// usr/bin/ocserv-fw (Debian's) and var/lib/dpkg.
func newRoot(t *testing.T, conf []byte) string {
	t.Helper()
	root := t.TempDir()
	// ocserv's workers (nobody) traverse the bed's paths.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"etc/ocserv", "usr/bin", "var/lib/dpkg"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, ocservConf), conf, 0o640); err != nil {
		t.Fatal(err)
	}
	fw, err := os.ReadFile(testbed.OcservFw)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, testbed.OcservFw), fw, 0o755); err != nil {
		t.Fatal(err)
	}
	// dpkg's (empty) diversion database, as on a Debian host.
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/diversions"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// runInstall runs install.sh with args and returns its output; wantOK says
// whether it must succeed or fail.
func runInstall(t *testing.T, wantOK bool, args ...string) string {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{filepath.Join(repoRoot(t), "install.sh")}, args...)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("install.sh %v: timed out:\n%s", args, out)
	}
	if wantOK && err != nil {
		t.Fatalf("install.sh %v: %v\n%s", args, err, out)
	}
	if !wantOK && err == nil {
		t.Fatalf("install.sh %v succeeded, want a refusal:\n%s", args, out)
	}
	return string(out)
}

// snapshot describes every entry under root: type, mode, owner, symlink
// target and content hash, one line each, sorted.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(p, root)
		if rel == "" {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v %d:%d", fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			desc += " " + hex.EncodeToString(sum[:8])
		}
		snap[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// snapDiff lists the differences between two snapshots ("" when equal).
func snapDiff(a, b map[string]string) string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var s strings.Builder
	for _, k := range keys {
		if a[k] != b[k] {
			fmt.Fprintf(&s, "  %s: %q -> %q\n", k, a[k], b[k])
		}
	}
	return s.String()
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// checkEntry fails unless root+rel has the type, mode and owner root.
func checkEntry(t *testing.T, root, rel string, mode fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(root, rel))
	if err != nil {
		t.Errorf("%s: %v", rel, err)
		return
	}
	if fi.Mode() != mode {
		t.Errorf("%s: mode %v, want %v", rel, fi.Mode(), mode)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 {
		t.Errorf("%s: owner %d:%d, want root", rel, st.Uid, st.Gid)
	}
}

// wiredConf is what install.sh must make of realisticConf: the operator's
// line commented out with the marker, our block above the first section.
func wiredConf(orig []byte) string {
	s := strings.Replace(string(orig), operatorCS+"\n", "# ocserv-telemetry disabled: "+operatorCS+"\n", 1)
	block := "# ocserv-telemetry begin: added by install.sh; install.sh --uninstall removes this block\n" +
		"connect-script = " + instHookSh + "\n" +
		"disconnect-script = " + instHookSh + "\n" +
		"host-update-script = " + instHookSh + "\n" +
		"# ocserv-telemetry end\n"
	return strings.Replace(s, vhostHeader+"\n", block+vhostHeader+"\n", 1)
}

// An install into a throwaway root (firewall mode c on ocserv 1.1.6, by
// dpkg-divert): every file, mode, owner and the ocserv.conf edits; a second
// run changes nothing; --dry-run changes nothing; --uninstall of an
// untouched install gives ocserv.conf and ocserv-fw back byte for byte and
// leaves only the operator's configuration (and dpkg's own backup file).
func TestInstallIntoRoot(t *testing.T) {
	testbed.RequireRoot(t)
	repo := repoRoot(t)
	orig := realisticConf(t)
	root := newRoot(t, orig)
	before := snapshot(t, root)

	// --dry-run plans and changes nothing.
	out := runInstall(t, true, "--root", root, "--bin-dir", filepath.Join(repo, "bin"), "--no-packages",
		"--firewall=on", "--ocserv-version", "1.1.6", "--server-id", "vpn1.example.com", "--dry-run")
	if d := snapDiff(before, snapshot(t, root)); d != "" {
		t.Fatalf("--dry-run changed the root:\n%s\n%s", d, out)
	}
	if !strings.Contains(out, "would") || !strings.Contains(out, "dpkg-divert") {
		t.Errorf("--dry-run printed no plan:\n%s", out)
	}

	out = runInstall(t, true, "--root", root, "--bin-dir", filepath.Join(repo, "bin"), "--no-packages",
		"--firewall=on", "--ocserv-version", "1.1.6", "--server-id", "vpn1.example.com")
	t.Logf("install:\n%s", out)

	// Binaries: the build's bytes, 0755 root.
	for rel, src := range map[string]string{instHook: "bin/hook", instShipper: "bin/shipper", instCtl: "bin/ctl"} {
		checkEntry(t, root, rel, 0o755)
		if readFile(t, filepath.Join(root, rel)) != readFile(t, filepath.Join(repo, src)) {
			t.Errorf("%s is not %s", rel, src)
		}
	}
	for _, rel := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/local/libexec/ocserv-telemetry", "/etc/ocserv-telemetry"} {
		checkEntry(t, root, rel, fs.ModeDir|0o755)
	}
	// No temporary file of the atomic install is left behind.
	for _, dir := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/local/libexec/ocserv-telemetry", "/usr/bin", "/etc/ocserv"} {
		ents, _ := os.ReadDir(filepath.Join(root, dir))
		for _, e := range ents {
			if strings.Contains(e.Name(), "ocserv-telemetry-new") {
				t.Errorf("temporary file left: %s/%s", dir, e.Name())
			}
		}
	}

	// Wrappers: /bin/sh scripts exec'ing the installed hook.
	wantHookSh := "exec " + instHook + " --config " + instEnv + " \"$@\"\n"
	wantFwSh := "exec " + instHook + " --fw --config " + instEnv + " \"$@\"\n"
	for rel, want := range map[string]string{instHookSh: wantHookSh, instFwSh: wantFwSh} {
		checkEntry(t, root, rel, 0o755)
		got := readFile(t, filepath.Join(root, rel))
		if !strings.HasPrefix(got, "#!/bin/sh\n") || !strings.HasSuffix(got, want) {
			t.Errorf("%s:\n%s\nwant a #!/bin/sh script ending %q", rel, got, want)
		}
		if out, err := exec.Command("sh", "-n", filepath.Join(root, rel)).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v %s", rel, err, out)
		}
	}

	// agent.env: 0600, SERVER_ID from --server-id as a subject token,
	// FIREWALL=on, every key there (commented), and it loads clean.
	checkEntry(t, root, instEnv, 0o600)
	checkEntry(t, root, instExample, 0o644)
	env := readFile(t, filepath.Join(root, instEnv))
	cfg, probs, err := config.Load(filepath.Join(root, instEnv))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		t.Errorf("installed agent.env: %v", p)
	}
	if cfg.ServerID != "vpn1_example_com" || cfg.Firewall != "on" {
		t.Errorf("agent.env: SERVER_ID %q FIREWALL %q, want vpn1_example_com on", cfg.ServerID, cfg.Firewall)
	}
	for _, k := range config.Keys() {
		if k.Key == "SERVER_ID" || k.Key == "FIREWALL" {
			continue
		}
		if !strings.Contains(env, "\n#"+k.Key+"=") {
			t.Errorf("agent.env has no commented example of %s", k.Key)
		}
	}
	if !strings.Contains(readFile(t, filepath.Join(root, instExample)), "\n#SERVER_ID=") {
		t.Errorf("agent.env.example lacks SERVER_ID")
	}

	// Spool 0750 root; state 0700.
	checkEntry(t, root, instSpool, fs.ModeDir|0o750)
	checkEntry(t, root, instState, fs.ModeDir|0o700)

	// The unit as in systemd/, enabled; its ExecStart is the installed shipper.
	checkEntry(t, root, instUnit, 0o644)
	unit := readFile(t, filepath.Join(root, instUnit))
	if unit != readFile(t, filepath.Join(repo, "systemd", "ocserv-telemetry-shipper.service")) {
		t.Errorf("installed unit differs from systemd/")
	}
	if !strings.Contains(unit, "\nExecStart="+instShipper+" --config "+instEnv+"\n") {
		t.Errorf("the unit's ExecStart does not run %s --config %s", instShipper, instEnv)
	}
	if target, err := os.Readlink(filepath.Join(root, instWants)); err != nil || target != instUnit {
		t.Errorf("the unit is not enabled: %s -> %q (%v)", instWants, target, err)
	}

	// ocserv.conf: exactly the wired text, mode and owner kept.
	conf := readFile(t, filepath.Join(root, ocservConf))
	if conf != wiredConf(orig) {
		t.Errorf("wired ocserv.conf differs from the expected edit:\n%s", snapDiffText(wiredConf(orig), conf))
	}
	checkEntry(t, root, ocservConf, 0o640)

	// Mode (c) on 1.1.6: our fw wrapper at /usr/bin/ocserv-fw, Debian's
	// script diverted (recorded in the root's dpkg database).
	if got := readFile(t, filepath.Join(root, testbed.OcservFw)); got != readFile(t, filepath.Join(root, instFwSh)) {
		t.Errorf("/usr/bin/ocserv-fw is not our fw wrapper:\n%s", got)
	}
	if readFile(t, filepath.Join(root, "/usr/bin/ocserv-fw.distrib")) != readFile(t, testbed.OcservFw) {
		t.Errorf("/usr/bin/ocserv-fw.distrib is not Debian's ocserv-fw")
	}
	if d := readFile(t, filepath.Join(root, "/var/lib/dpkg/diversions")); d != "/usr/bin/ocserv-fw\n/usr/bin/ocserv-fw.distrib\n:\n" {
		t.Errorf("dpkg diversions:\n%q", d)
	}

	// A second run (same options; firewall and conf remembered) changes
	// nothing, byte for byte.
	installed := snapshot(t, root)
	out = runInstall(t, true, "--root", root, "--bin-dir", filepath.Join(repo, "bin"), "--no-packages",
		"--ocserv-version", "1.1.6")
	if d := snapDiff(installed, snapshot(t, root)); d != "" {
		t.Fatalf("second install changed the root:\n%s\n%s", d, out)
	}
	if !strings.Contains(out, "Nothing to change") {
		t.Errorf("second install did not say it had nothing to change:\n%s", out)
	}

	// --uninstall --dry-run changes nothing.
	runInstall(t, true, "--root", root, "--uninstall", "--dry-run")
	if d := snapDiff(installed, snapshot(t, root)); d != "" {
		t.Fatalf("--uninstall --dry-run changed the root:\n%s", d)
	}

	// --uninstall: ocserv.conf and ocserv-fw back byte for byte; what is
	// left is the operator's configuration and dpkg's backup of its
	// database, nothing else.
	out = runInstall(t, true, "--root", root, "--uninstall")
	t.Logf("uninstall:\n%s", out)
	after := snapshot(t, root)
	if got := readFile(t, filepath.Join(root, ocservConf)); got != string(orig) {
		t.Errorf("ocserv.conf after uninstall differs from the original:\n%s", snapDiffText(string(orig), got))
	}
	if after[ocservConf] != before[ocservConf] {
		t.Errorf("ocserv.conf entry %q, before install %q", after[ocservConf], before[ocservConf])
	}
	if after[testbed.OcservFw] != before[testbed.OcservFw] {
		t.Errorf("/usr/bin/ocserv-fw %q, before install %q", after[testbed.OcservFw], before[testbed.OcservFw])
	}
	leftover := map[string]bool{"/etc/ocserv-telemetry": true, instEnv: true, "/var/lib/dpkg/diversions-old": true}
	for p := range after {
		if _, was := before[p]; !was && !leftover[p] {
			t.Errorf("uninstall left %s (%s)", p, after[p])
		}
	}
	for p := range before {
		if _, is := after[p]; !is {
			t.Errorf("uninstall removed %s, which it had not installed", p)
		}
	}
	if d := readFile(t, filepath.Join(root, "/var/lib/dpkg/diversions")); d != "" {
		t.Errorf("diversion still recorded: %q", d)
	}
}

// snapDiffText shows the first differing line of two texts.
func snapDiffText(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d: want %q, got %q", i+1, wl, gl)
		}
	}
	return "(equal)"
}

// An operator edits another line of ocserv.conf after the install:
// --uninstall keeps that edit, takes out our block and gives the operator's
// own connect-script back, and leaves the pre-uninstall file as a backup.
func TestUninstallKeepsOperatorEdits(t *testing.T) {
	testbed.RequireRoot(t)
	repo := repoRoot(t)
	orig := realisticConf(t)
	root := newRoot(t, orig)
	runInstall(t, true, "--root", root, "--bin-dir", filepath.Join(repo, "bin"), "--no-packages")

	p := filepath.Join(root, ocservConf)
	wired := readFile(t, p)
	const from, to = "\nmax-clients = 16\n", "\nmax-clients = 99\n"
	if !strings.Contains(wired, from) {
		t.Fatalf("ocserv.conf has no %q line to edit", strings.TrimSpace(from))
	}
	edited := strings.Replace(wired, from, to, 1) + "# the operator's note\n"
	if err := os.WriteFile(p, []byte(edited), 0o640); err != nil {
		t.Fatal(err)
	}
	runInstall(t, true, "--root", root, "--uninstall")
	want := strings.Replace(string(orig), from, to, 1) + "# the operator's note\n"
	if got := readFile(t, p); got != want {
		t.Errorf("after uninstall:\n%s", snapDiffText(want, got))
	}
	if got := readFile(t, p+".ocserv-telemetry-uninstall.bak"); got != edited {
		t.Errorf("the backup is not the file as it was before uninstall")
	}
	checkEntry(t, root, ocservConf, 0o640)
}

// ocserv ≥ 1.2.3: mode (c) by an OCSERV_FW_SCRIPT drop-in for ocserv's
// unit, /usr/bin/ocserv-fw untouched; a rerun with --firewall=off takes the
// drop-in and the fw wrapper away again. An agent.env saying FIREWALL=off
// refuses --firewall=on before anything is changed.
func TestInstallFirewallDropinAndRefusal(t *testing.T) {
	testbed.RequireRoot(t)
	repo := repoRoot(t)
	root := newRoot(t, realisticConf(t))
	bin := filepath.Join(repo, "bin")
	runInstall(t, true, "--root", root, "--bin-dir", bin, "--no-packages", "--firewall=on", "--ocserv-version", "1.3.0")
	checkEntry(t, root, instDropin, 0o644)
	if d := readFile(t, filepath.Join(root, instDropin)); !strings.Contains(d, "[Service]\nEnvironment=OCSERV_FW_SCRIPT="+instFwSh+"\n") {
		t.Errorf("drop-in:\n%s", d)
	}
	if readFile(t, filepath.Join(root, testbed.OcservFw)) != readFile(t, testbed.OcservFw) {
		t.Errorf("/usr/bin/ocserv-fw changed with ocserv 1.3.0")
	}
	if _, err := os.Stat(filepath.Join(root, "/usr/bin/ocserv-fw.distrib")); err == nil {
		t.Errorf("diverted with ocserv 1.3.0")
	}

	// FIREWALL in agent.env is the operator's: switching needs it changed.
	envPath := filepath.Join(root, instEnv)
	out := runInstall(t, false, "--root", root, "--bin-dir", bin, "--no-packages", "--firewall=off")
	if !strings.Contains(out, "FIREWALL=on") || !strings.Contains(out, "nothing was changed") {
		t.Errorf("refusal does not explain itself:\n%s", out)
	}
	env := strings.Replace(readFile(t, envPath), "\nFIREWALL=on\n", "\nFIREWALL=off\n", 1)
	if err := os.WriteFile(envPath, []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	runInstall(t, true, "--root", root, "--bin-dir", bin, "--no-packages", "--firewall=off")
	for _, rel := range []string{instDropin, filepath.Dir(instDropin), instFwSh} {
		if _, err := os.Lstat(filepath.Join(root, rel)); err == nil {
			t.Errorf("%s still there with --firewall=off", rel)
		}
	}
	if s := readFile(t, filepath.Join(root, instState, "settings")); !strings.Contains(s, "firewall=off\n") {
		t.Errorf("settings: %s", s)
	}

	// Refusal before any change: FIREWALL=off in agent.env, --firewall=on.
	snap := snapshot(t, root)
	out = runInstall(t, false, "--root", root, "--bin-dir", bin, "--no-packages", "--firewall=on", "--ocserv-version", "1.1.6")
	if d := snapDiff(snap, snapshot(t, root)); d != "" {
		t.Errorf("a refused install changed the root:\n%s", d)
	}
	if !strings.Contains(out, "FIREWALL=off") {
		t.Errorf("refusal:\n%s", out)
	}
}

// After an install into a bed-local root, a real ocserv with
// restrict-user-to-routes = true runs the installed files (laid over /etc,
// /usr/local and, for mode c, /usr/bin in its private mount namespace),
// admits a real openconnect client in each firewall mode, and the events
// reach NATS through the installed shipper reading the installed config.
func TestInstalledOnBedShipsEvents(t *testing.T) {
	testbed.RequireRoot(t)
	for _, fw := range []string{"off", "on"} {
		t.Run("firewall="+fw, func(t *testing.T) { installedOnBed(t, fw) })
	}
}

func installedOnBed(t *testing.T, fw string) {
	repo := repoRoot(t)
	hostBefore := hostInstallPaths()
	t.Cleanup(func() {
		hostClean(t)
		if after := hostInstallPaths(); after != hostBefore {
			t.Errorf("the host's install paths changed:\nbefore %s\nafter  %s", hostBefore, after)
		}
	})
	srv := natstest.Run(t)
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	serverID := config.SanitizeToken(hostname)
	root := newRoot(t, nil)
	var installOut string

	o := testbed.Options{
		RestrictToRoutes: true,
		Target:           true,
		VPNCScript:       true,
		Layers:           map[string]string{"/etc": filepath.Join(root, "etc"), "/usr/local": filepath.Join(root, "usr/local")},
		PrepareConf: func(conf string) (string, error) {
			data, err := os.ReadFile(conf)
			if err != nil {
				return "", err
			}
			dst := filepath.Join(root, ocservConf)
			if err := os.WriteFile(dst, data, 0o600); err != nil {
				return "", err
			}
			// The ocserv version is detected (`ocserv --version`).
			cmd := exec.Command("/bin/sh", filepath.Join(repo, "install.sh"), "--root", root,
				"--bin-dir", filepath.Join(repo, "bin"), "--no-packages", "--firewall="+fw)
			out, err := cmd.CombinedOutput()
			installOut = string(out)
			if err != nil {
				return "", fmt.Errorf("install.sh: %v\n%s", err, out)
			}
			// What an operator does next: NATS_URL. SPOOL_DIR points at the
			// installed spool dir through the root, so the shipper (outside
			// ocserv's mount namespace) reads what the hook wrote.
			f, err := os.OpenFile(filepath.Join(root, instEnv), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return "", err
			}
			defer f.Close()
			_, err = fmt.Fprintf(f, "NATS_URL=%s\nSPOOL_DIR=%s\n", srv.ClientURL(), filepath.Join(root, instSpool))
			return dst, err
		},
	}
	if fw == "on" {
		o.Layers["/usr/bin"] = filepath.Join(root, "usr/bin")
	}
	b := testbed.New(t, o)
	t.Logf("install.sh:\n%s", installOut)
	if !strings.Contains(installOut, "ocserv 1.1.6") && fw == "on" {
		t.Errorf("install.sh did not detect ocserv 1.1.6:\n%s", installOut)
	}

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	var got []events.Event
	var subjects []string
	sub, err := nc.Subscribe("ocserv.events.>", func(m *nats.Msg) {
		var e events.Event
		if json.Unmarshal(m.Data, &e) == nil {
			mu.Lock()
			got = append(got, e)
			subjects = append(subjects, m.Subject)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	startInstalledShipper(t, root)

	find := func(typ events.Type) (events.Event, string, bool) {
		mu.Lock()
		defer mu.Unlock()
		for i, e := range got {
			if e.Type == typ && e.Session != nil && e.Session.Username == "alice" {
				return e, subjects[i], true
			}
		}
		return events.Event{}, "", false
	}
	wait := func(typ events.Type) (events.Event, string) {
		t.Helper()
		deadline := time.Now().Add(eventWait)
		for {
			if e, s, ok := find(typ); ok {
				return e, s
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s event of alice on NATS within %v (spool: %v)", typ, eventWait, spoolListing(filepath.Join(root, instSpool)))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	alice, err := b.Connect("alice", b.Password("alice"))
	if err != nil {
		t.Fatalf("restricted login refused with firewall=%s: %v", fw, err)
	}
	e, subj := wait(events.Connect)
	if want := "ocserv.events." + serverID + ".connect"; subj != want {
		t.Errorf("subject %s, want %s (SERVER_ID derived from the host name %q)", subj, want, hostname)
	}
	if e.Admitted == nil || !*e.Admitted {
		t.Errorf("connect event: admitted %v", e.Admitted)
	}
	if e.Firewall == nil {
		t.Fatalf("connect event without firewall outcome")
	}
	ruleset, err := b.InServerNSRuleset()
	if err != nil {
		t.Fatal(err)
	}
	switch fw {
	case "off":
		// Mode (b): Debian's ocserv-fw applied the rules and ran our wrapper.
		if e.Firewall.Mode != "off" || e.Firewall.Action != "none" {
			t.Errorf("firewall=off: event firewall %+v, want mode off, action none", *e.Firewall)
		}
		if !strings.Contains(ruleset, "FORWARD-ocserv-fw-") || strings.Contains(ruleset, "octel_") || strings.Contains(ruleset, "OCTEL-") {
			t.Errorf("firewall=off: want ocserv-fw's chains and none of ours:\n%s", ruleset)
		}
	case "on":
		// Mode (c): the installed fw wrapper at /usr/bin/ocserv-fw ran the hook.
		if e.Firewall.Mode != "on" || e.Firewall.Action != "applied" {
			t.Errorf("firewall=on: event firewall %+v, want mode on, action applied", *e.Firewall)
		}
		if strings.Contains(ruleset, "ocserv-fw") || !(strings.Contains(ruleset, "octel_") || strings.Contains(ruleset, "OCTEL-")) {
			t.Errorf("firewall=on: want our rules and none of ocserv-fw's:\n%s", ruleset)
		}
	}
	if err := alice.Disconnect(); err != nil {
		t.Fatal(err)
	}
	d, _ := wait(events.Disconnect)
	if fw == "on" && (d.Firewall == nil || d.Firewall.Action != "removed") {
		t.Errorf("disconnect firewall %+v, want removed", d.Firewall)
	}
}

// startInstalledShipper runs the installed shipper binary with the
// installed configuration, as the unit's ExecStart does.
func startInstalledShipper(t *testing.T, root string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(root, instShipper), "--config", filepath.Join(root, instEnv))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the installed shipper: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
		if t.Failed() {
			t.Logf("shipper log:\n%s", stderr.String())
		}
	})
}

// spoolListing names the files in a spool dir (for failure messages).
func spoolListing(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, dir+"/"))
		}
		return nil
	})
	return out
}

// hostInstallPaths describes the host's own install paths, which the bed
// tests must never create or change.
func hostInstallPaths() string {
	var s strings.Builder
	for _, p := range []string{instHook, instShipper, instCtl, instHookSh, instEnv, instSpool, instUnit, instState, "/usr/bin/ocserv-fw.distrib"} {
		if fi, err := os.Lstat(p); err == nil {
			fmt.Fprintf(&s, "%s:%v ", p, fi.Mode())
		}
	}
	fw, _ := os.ReadFile(testbed.OcservFw)
	sum := sha256.Sum256(fw)
	fmt.Fprintf(&s, "ocserv-fw:%x", sum[:8])
	return s.String()
}

// --commands adds the command service (binary and enabled unit); a rerun
// remembers it; --no-commands takes both away again.
func TestInstallCommands(t *testing.T) {
	testbed.RequireRoot(t)
	repo := repoRoot(t)
	root := newRoot(t, realisticConf(t))
	bin := filepath.Join(repo, "bin")
	const cmdBin = "/usr/local/bin/ocserv-telemetry-commander"
	const cmdUnit = "/etc/systemd/system/ocserv-telemetry-commander.service"
	const cmdWants = "/etc/systemd/system/multi-user.target.wants/ocserv-telemetry-commander.service"
	runInstall(t, true, "--root", root, "--bin-dir", bin, "--no-packages", "--commands")
	checkEntry(t, root, cmdBin, 0o755)
	checkEntry(t, root, cmdUnit, 0o644)
	if readFile(t, filepath.Join(root, cmdBin)) != readFile(t, filepath.Join(bin, "commander")) {
		t.Errorf("%s is not bin/commander", cmdBin)
	}
	if target, err := os.Readlink(filepath.Join(root, cmdWants)); err != nil || target != cmdUnit {
		t.Errorf("command service not enabled: %q %v", target, err)
	}
	snap := snapshot(t, root)
	runInstall(t, true, "--root", root, "--bin-dir", bin, "--no-packages")
	if d := snapDiff(snap, snapshot(t, root)); d != "" {
		t.Errorf("rerun without --commands changed the root:\n%s", d)
	}
	runInstall(t, true, "--root", root, "--bin-dir", bin, "--no-packages", "--no-commands")
	for _, p := range []string{cmdBin, cmdUnit, cmdWants} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s still there after --no-commands", p)
		}
	}
	checkEntry(t, root, instUnit, 0o644)
}
