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

// install.sh (docs/install.md) on the ocserv version the run selects
// ($OCSERV_VERSION; see internal/testbed), two ways:
//
//   - into throwaway roots (--root): a DESTDIR-style directory holding that
//     version's real ocserv.conf (plus an operator's own connect-script and
//     a virtual host section), its real fw script at the path it runs, and
//     an empty dpkg database; every file, mode and edit is checked, then
//     --uninstall;
//   - on that version's real system root (a private copy of its Debian
//     root, install.sh run inside it as on a real host: its `ocserv
//     --version`, its ocserv binary, its dpkg): a real ocserv then runs the
//     installed files and a restricted openconnect user's events reach NATS
//     through the installed shipper, in both firewall modes; --uninstall
//     leaves the root as it was.
//
// The host's /etc, /usr and /var are never written.

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

// realisticConf is the version's Debian ocserv.conf with an operator's
// active connect-script next to the package's commented example, and a
// virtual host section at the end (global lines must stay above it).
func realisticConf(t *testing.T) []byte {
	t.Helper()
	_, src := testbed.ReleaseRoot(t)
	deb, err := os.ReadFile(filepath.Join(src, ocservConf))
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

// newRoot makes a throwaway root: etc/ocserv/ocserv.conf (mode 0640), the
// version's own fw script at the path it runs (read from its Debian root)
// and var/lib/dpkg.
func newRoot(t *testing.T, conf []byte) string {
	t.Helper()
	rel, src := testbed.ReleaseRoot(t)
	root := t.TempDir()
	// ocserv's workers (nobody) traverse the bed's paths.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"etc/ocserv", filepath.Dir(rel.FwScript), "var/lib/dpkg"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, ocservConf), conf, 0o640); err != nil {
		t.Fatal(err)
	}
	fw, err := os.ReadFile(filepath.Join(src, rel.FwScript))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, rel.FwScript), fw, 0o755); err != nil {
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

// An install into a throwaway root with firewall mode c wired the way the
// version needs (dpkg-divert of the fw script it runs, or the
// OCSERV_FW_SCRIPT drop-in where it reads that): every file, mode, owner
// and the ocserv.conf edits; a second run changes nothing; --dry-run
// changes nothing; --uninstall of an untouched install gives ocserv.conf
// and the fw script back byte for byte and leaves only the operator's
// configuration (and dpkg's own backup file).
func TestInstallIntoRoot(t *testing.T) {
	testbed.RequireRoot(t)
	rel, src := testbed.ReleaseRoot(t)
	repo := repoRoot(t)
	orig := realisticConf(t)
	root := newRoot(t, orig)
	before := snapshot(t, root)
	fwScript := rel.FwScript

	// --dry-run plans and changes nothing.
	out := runInstall(t, true, "--root", root, "--bin-dir", filepath.Join(repo, "bin"), "--no-packages",
		"--firewall=on", "--ocserv-version", rel.Version, "--server-id", "vpn1.example.com", "--dry-run")
	if d := snapDiff(before, snapshot(t, root)); d != "" {
		t.Fatalf("--dry-run changed the root:\n%s\n%s", d, out)
	}
	wantPlan := "dpkg-divert"
	if rel.FwScriptEnv {
		wantPlan = "OCSERV_FW_SCRIPT"
	}
	if !strings.Contains(out, "would") || !strings.Contains(out, wantPlan) {
		t.Errorf("--dry-run printed no plan (%s):\n%s", wantPlan, out)
	}

	out = runInstall(t, true, "--root", root, "--bin-dir", filepath.Join(repo, "bin"), "--no-packages",
		"--firewall=on", "--ocserv-version", rel.Version, "--server-id", "vpn1.example.com")
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

	// Mode (c): on a version that ignores OCSERV_FW_SCRIPT, our fw wrapper
	// at the path it runs, Debian's script diverted (recorded in the
	// root's dpkg database); on one that reads it, the drop-in and the fw
	// script untouched.
	debFw := readFile(t, filepath.Join(src, fwScript))
	if rel.FwScriptEnv {
		checkEntry(t, root, instDropin, 0o644)
		if d := readFile(t, filepath.Join(root, instDropin)); !strings.Contains(d, "[Service]\nEnvironment=OCSERV_FW_SCRIPT="+instFwSh+"\n") {
			t.Errorf("drop-in:\n%s", d)
		}
		if readFile(t, filepath.Join(root, fwScript)) != debFw {
			t.Errorf("%s changed although ocserv %s reads OCSERV_FW_SCRIPT", fwScript, rel.Version)
		}
		if d := readFile(t, filepath.Join(root, "/var/lib/dpkg/diversions")); d != "" {
			t.Errorf("diverted on ocserv %s: %q", rel.Version, d)
		}
	} else {
		if got := readFile(t, filepath.Join(root, fwScript)); got != readFile(t, filepath.Join(root, instFwSh)) {
			t.Errorf("%s is not our fw wrapper:\n%s", fwScript, got)
		}
		if readFile(t, filepath.Join(root, fwScript+".distrib")) != debFw {
			t.Errorf("%s.distrib is not Debian's ocserv-fw", fwScript)
		}
		if d := readFile(t, filepath.Join(root, "/var/lib/dpkg/diversions")); d != fwScript+"\n"+fwScript+".distrib\n:\n" {
			t.Errorf("dpkg diversions:\n%q", d)
		}
		if _, err := os.Lstat(filepath.Join(root, instDropin)); err == nil {
			t.Errorf("a drop-in on ocserv %s, which ignores OCSERV_FW_SCRIPT", rel.Version)
		}
	}

	// A second run (same options; firewall and conf remembered) changes
	// nothing, byte for byte.
	installed := snapshot(t, root)
	out = runInstall(t, true, "--root", root, "--bin-dir", filepath.Join(repo, "bin"), "--no-packages",
		"--ocserv-version", rel.Version)
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
	if after[fwScript] != before[fwScript] {
		t.Errorf("%s %q, before install %q", fwScript, after[fwScript], before[fwScript])
	}
	leftover := map[string]bool{"/etc/ocserv-telemetry": true, instEnv: true}
	if !rel.FwScriptEnv {
		leftover["/var/lib/dpkg/diversions-old"] = true
	}
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

// Mode (c) follows the fw script each version runs (docs/firewall.md):
// 1.1.6 diverts /usr/bin/ocserv-fw; an upgrade to 1.3.0, which runs
// /usr/libexec/ocserv-fw and ignores OCSERV_FW_SCRIPT, gives /usr/bin back
// and diverts /usr/libexec; 1.5.0, which reads the variable, gives that
// back too and uses the drop-in. Switching to --firewall=off needs the
// operator's FIREWALL changed first (refused before any change otherwise)
// and takes the drop-in and the fw wrapper away; --uninstall leaves the
// root as it was.
func TestInstallFwWiringFollowsTheVersion(t *testing.T) {
	testbed.RequireRoot(t)
	repo := repoRoot(t)
	root := newRoot(t, realisticConf(t))
	bin := filepath.Join(repo, "bin")
	// Both fw script paths, as a host upgraded from 1.1.6 to 1.3.0 may
	// briefly have; each a distinct file, so a mix-up shows.
	paths := []string{"/usr/bin/ocserv-fw", "/usr/libexec/ocserv-fw"}
	for _, p := range paths {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte("#!/bin/sh\n# Debian's "+p+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, root)
	fwWrapper := func() string { return readFile(t, filepath.Join(root, instFwSh)) }
	diversions := func() string { return readFile(t, filepath.Join(root, "/var/lib/dpkg/diversions")) }
	debian := func(p string) string { return "#!/bin/sh\n# Debian's " + p + "\n" }

	out := runInstall(t, true, "--root", root, "--bin-dir", bin, "--no-packages", "--firewall=on", "--ocserv-version", "1.1.6")
	if !strings.Contains(out, "ocserv 1.1.6 runs /usr/bin/ocserv-fw and ignores OCSERV_FW_SCRIPT") {
		t.Errorf("1.1.6:\n%s", out)
	}
	if readFile(t, filepath.Join(root, paths[0])) != fwWrapper() || readFile(t, filepath.Join(root, paths[1])) != debian(paths[1]) ||
		diversions() != "/usr/bin/ocserv-fw\n/usr/bin/ocserv-fw.distrib\n:\n" {
		t.Errorf("1.1.6: want /usr/bin/ocserv-fw diverted alone; diversions %q", diversions())
	}

	out = runInstall(t, true, "--root", root, "--bin-dir", bin, "--no-packages", "--ocserv-version", "1.3.0")
	if !strings.Contains(out, "ocserv 1.3.0 runs /usr/libexec/ocserv-fw and ignores OCSERV_FW_SCRIPT") {
		t.Errorf("1.3.0:\n%s", out)
	}
	if readFile(t, filepath.Join(root, paths[0])) != debian(paths[0]) || readFile(t, filepath.Join(root, paths[1])) != fwWrapper() ||
		diversions() != "/usr/libexec/ocserv-fw\n/usr/libexec/ocserv-fw.distrib\n:\n" {
		t.Errorf("1.3.0: want /usr/libexec/ocserv-fw diverted alone, /usr/bin/ocserv-fw back; diversions %q", diversions())
	}
	if _, err := os.Lstat(filepath.Join(root, instDropin)); err == nil {
		t.Errorf("1.3.0: a drop-in, which 1.3.0 ignores")
	}

	out = runInstall(t, true, "--root", root, "--bin-dir", bin, "--no-packages", "--ocserv-version", "1.5.0")
	if !strings.Contains(out, "ocserv 1.5.0 runs $OCSERV_FW_SCRIPT when set") {
		t.Errorf("1.5.0:\n%s", out)
	}
	for _, p := range paths {
		if readFile(t, filepath.Join(root, p)) != debian(p) {
			t.Errorf("1.5.0: %s is not Debian's", p)
		}
	}
	if diversions() != "" {
		t.Errorf("1.5.0: diversions %q", diversions())
	}
	checkEntry(t, root, instDropin, 0o644)
	if d := readFile(t, filepath.Join(root, instDropin)); !strings.Contains(d, "[Service]\nEnvironment=OCSERV_FW_SCRIPT="+instFwSh+"\n") {
		t.Errorf("drop-in:\n%s", d)
	}

	// FIREWALL in agent.env is the operator's: switching needs it changed.
	envPath := filepath.Join(root, instEnv)
	out = runInstall(t, false, "--root", root, "--bin-dir", bin, "--no-packages", "--firewall=off")
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

	runInstall(t, true, "--root", root, "--uninstall")
	after := snapshot(t, root)
	for p, was := range before {
		if after[p] != was {
			t.Errorf("after --uninstall %s is %q, was %q", p, after[p], was)
		}
	}
	leftover := map[string]bool{"/etc/ocserv-telemetry": true, instEnv: true, "/var/lib/dpkg/diversions-old": true}
	for p := range after {
		if _, was := before[p]; !was && !leftover[p] {
			t.Errorf("uninstall left %s (%s)", p, after[p])
		}
	}
}

// TestInstalledOnBedShipsEvents: install.sh on the version's real system
// root, as an operator runs it (no --root, no --ocserv-version: it asks
// that root's ocserv and reads its binary), on Debian's real ocserv.conf
// with the site's settings (the bed's addresses, certificates and users).
// A real ocserv with restrict-user-to-routes then runs the installed files
// and admits a real openconnect client in each firewall mode, and the
// events reach NATS through the installed shipper reading the installed
// configuration. --uninstall leaves every file of the root as it was
// after the operator's edit.
func TestInstalledOnBedShipsEvents(t *testing.T) {
	testbed.RequireRoot(t)
	for _, fw := range []string{"off", "on"} {
		t.Run("firewall="+fw, func(t *testing.T) { installedOnBed(t, fw) })
	}
}

// siteKeys are the keys of Debian's ocserv.conf that tie it to Debian's
// paths and addresses; the site's own file replaces them (the bed sets
// most of them).
var siteKeys = map[string]bool{"chroot-dir": true, "ca-cert": true, "cert-user-oid": true, "ipv4-netmask": true,
	"log-level": true, "ban-time": true, "default-domain": true, "camouflage": true, "camouflage_secret": true, "camouflage_realm": true}

// siteConf is Debian's ocserv.conf as an operator makes it theirs: each
// active line of a key the site sets (or one of siteKeys) commented out,
// the site's lines at the end.
func siteConf(debian, site string) string {
	keyOf := func(l string) string {
		k, _, ok := strings.Cut(l, "=")
		if !ok || strings.HasPrefix(strings.TrimSpace(l), "#") {
			return ""
		}
		return strings.TrimSpace(k)
	}
	set := map[string]bool{}
	for _, l := range strings.Split(site, "\n") {
		if k := keyOf(l); k != "" {
			set[k] = true
		}
	}
	var out strings.Builder
	for _, l := range strings.SplitAfter(debian, "\n") {
		if k := keyOf(l); k != "" && (set[k] || siteKeys[k]) {
			out.WriteString("#site: " + l)
			continue
		}
		out.WriteString(l)
	}
	out.WriteString("\n# The site's settings (the e2e bed's).\n" + site)
	return out.String()
}

// releaseDir copies what install.sh needs next to it (the script, the
// binaries, packaging/agent.env.example, the units) to a directory the
// version's root sees at the same path, as a release tarball would be.
func releaseDir(t *testing.T) string {
	t.Helper()
	repo := repoRoot(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := []string{"install.sh", "packaging/agent.env.example", "systemd/ocserv-telemetry-shipper.service",
		"systemd/ocserv-telemetry-commander.service", "bin/hook", "bin/shipper", "bin/ctl", "bin/commander"}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(repo, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(filepath.Join(repo, f))
		if err := os.WriteFile(filepath.Join(dir, f), data, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// dropinEnv reads the Environment= assignments of the installed drop-ins
// for ocserv.service, which systemd would give ocserv.
func dropinEnv(t *testing.T, root string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(root, "etc/systemd/system/ocserv.service.d/*.conf"))
	var env []string
	for _, f := range files {
		for _, l := range strings.Split(readFile(t, f), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Environment="); ok {
				env = append(env, strings.Fields(v)...)
			}
		}
	}
	return env
}

func installedOnBed(t *testing.T, fw string) {
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
	root := testbed.WritableRoot(t)
	release := releaseDir(t)
	var installOut string
	var edited map[string]string // the root after the operator's edit

	o := testbed.Options{
		RestrictToRoutes: true,
		Target:           true,
		VPNCScript:       true,
		SystemRoot:       root,
		PrepareConf: func(b *testbed.Bed, conf string) (string, error) {
			site, err := os.ReadFile(conf)
			if err != nil {
				return "", err
			}
			dst := filepath.Join(root, ocservConf)
			debian, err := os.ReadFile(dst)
			if err != nil {
				return "", err
			}
			if err := os.WriteFile(dst, []byte(siteConf(string(debian), string(site))), 0o640); err != nil {
				return "", err
			}
			edited = snapshot(t, root)
			// As on a host of that distribution: the version is detected
			// from its own ocserv, the fw script read from its binary.
			out, err := b.RunInRoot(3*time.Minute, "/bin/sh", filepath.Join(release, "install.sh"),
				"--bin-dir", filepath.Join(release, "bin"), "--no-packages", "--firewall="+fw)
			installOut = string(out)
			if err != nil {
				return "", fmt.Errorf("install.sh: %v\n%s", err, out)
			}
			// What systemd would do with the installed drop-in.
			b.SetOcservEnv(dropinEnv(t, root)...)
			// What an operator does next: NATS_URL.
			f, err := os.OpenFile(filepath.Join(root, instEnv), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return "", err
			}
			defer f.Close()
			_, err = fmt.Fprintf(f, "NATS_URL=%s\n", srv.ClientURL())
			return ocservConf, err
		},
	}
	b := testbed.New(t, o)
	rel := b.Release()
	t.Logf("install.sh:\n%s", installOut)
	if fw == "on" {
		way := "ignores OCSERV_FW_SCRIPT (read from /usr/sbin/ocserv): " + rel.FwScript + " diverted"
		if rel.FwScriptEnv {
			way = "runs $OCSERV_FW_SCRIPT when set (read from /usr/sbin/ocserv)"
		}
		if !strings.Contains(installOut, "ocserv "+rel.Version+" ") || !strings.Contains(installOut, way) {
			t.Errorf("install.sh did not detect ocserv %s and wire it (%q):\n%s", rel.Version, way, installOut)
		}
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
	o2 := deviceOf(t, b, "alice")
	rs := ruleset(t, b)
	switch fw {
	case "off":
		// Mode (b): the version's ocserv-fw applied the rules and ran our wrapper.
		if e.Firewall.Mode != "off" || e.Firewall.Action != "none" {
			t.Errorf("firewall=off: event firewall %+v, want mode off, action none", *e.Firewall)
		}
		if !strings.Contains(rs, b.OcservFwMark(o2.Device)) || hasOurs(rs) {
			t.Errorf("firewall=off: want ocserv-fw's %q and none of ours:\n%s", b.OcservFwMark(o2.Device), rs)
		}
	case "on":
		// Mode (c): ocserv ran the installed fw wrapper (diverted over its
		// fw script, or named by the drop-in's OCSERV_FW_SCRIPT).
		if e.Firewall.Mode != "on" || e.Firewall.Action != "applied" {
			t.Errorf("firewall=on: event firewall %+v, want mode on, action applied", *e.Firewall)
		}
		if testbed.HasOcservFw(rs) || !hasOurs(rs) {
			t.Errorf("firewall=on: want our rules and none of ocserv-fw's:\n%s", rs)
		}
	}
	if err := alice.Disconnect(); err != nil {
		t.Fatal(err)
	}
	d, _ := wait(events.Disconnect)
	if fw == "on" && (d.Firewall == nil || d.Firewall.Action != "removed") {
		t.Errorf("disconnect firewall %+v, want removed", d.Firewall)
	}

	// --uninstall on the real root: every file as after the operator's
	// edit, but the operator's agent.env, the events in the spool, and
	// the wtmp records ocserv itself wrote of the sessions.
	out, err := b.RunInRoot(3*time.Minute, "/bin/sh", filepath.Join(release, "install.sh"), "--uninstall")
	if err != nil {
		t.Fatalf("install.sh --uninstall: %v\n%s", err, out)
	}
	after := snapshot(t, root)
	kept := func(p string) bool {
		return p == "/etc/ocserv-telemetry" || p == instEnv || p == instSpool || strings.HasPrefix(p, instSpool+"/") ||
			p == "/var/lib/dpkg/diversions-old" || p == "/var/log/wtmp"
	}
	for p, was := range edited {
		if after[p] != was && !kept(p) {
			t.Errorf("after --uninstall %s is %q, was %q", p, after[p], was)
		}
	}
	for p := range after {
		if _, was := edited[p]; !was && !kept(p) {
			t.Errorf("--uninstall left %s (%s)", p, after[p])
		}
	}
	if t.Failed() {
		t.Logf("uninstall:\n%s", out)
	}
}

// startInstalledShipper runs the installed shipper binary with the
// installed configuration, as the unit's ExecStart does, on the host (it
// needs only the spool and NATS): SPOOL_DIR is the root's spool seen from
// here, in a copy of the configuration.
func startInstalledShipper(t *testing.T, root string) {
	t.Helper()
	env := readFile(t, filepath.Join(root, instEnv)) + "\nSPOOL_DIR=" + filepath.Join(root, instSpool) + "\n"
	cfg := filepath.Join(t.TempDir(), "shipper.env")
	if err := os.WriteFile(cfg, []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(root, instShipper), "--config", cfg)
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
