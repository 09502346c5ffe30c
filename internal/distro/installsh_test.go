package distro

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// install.sh keeps its own copy of the facts in Releases (it is a shell
// script on a host without this module). These tests hold the two
// together, on the real `ocserv --version` outputs of each release
// (testdata/ocserv-version, checked against the real binaries by
// TestRootsHoldTheirRelease).

const installSh = "../../install.sh"

// fakeOcserv writes an "ocserv" that prints a real --version output (on
// stderr, as every release does) and whose file holds extra, as a binary
// holds its strings.
func fakeOcserv(t *testing.T, versionOut, extra string) string {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "version.txt")
	if err := os.WriteFile(out, []byte(versionOut), 0o644); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\n# " + extra + "\ncat '" + out + "' >&2\n"
	if err := os.WriteFile(filepath.Join(dir, "ocserv"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func detect(t *testing.T, pathDir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{installSh, "--detect"}, args...)...)
	cmd.Env = []string{"PATH=" + pathDir + ":/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func releaseOutput(t *testing.T, r Release) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("../../testdata/ocserv-version", r.Version+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// install.sh --detect reads each release's real --version output and, with
// nothing to read in the binary, wires --firewall=on as the table says.
func TestInstallShDetectsEachRelease(t *testing.T) {
	for _, r := range Releases {
		t.Run(r.Version, func(t *testing.T) {
			out, err := detect(t, fakeOcserv(t, releaseOutput(t, r), "no paths here"))
			if err != nil {
				t.Fatalf("install.sh --detect: %v\n%s", err, out)
			}
			reads := map[bool]string{true: "yes", false: "no"}[r.FwScriptEnv]
			for _, want := range []string{
				"ocserv " + r.Version + "\n",
				"fw script: " + r.FwScript + " (read from version " + r.Version + ")\n",
				"reads OCSERV_FW_SCRIPT: " + reads + "\n",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("install.sh --detect lacks %q:\n%s", want, out)
				}
			}
			wantWay := "--firewall=on: dpkg-divert " + r.FwScript + " to " + r.FwScript + ".distrib"
			if r.FwScriptEnv {
				wantWay = "--firewall=on: Environment=OCSERV_FW_SCRIPT="
			}
			if !strings.Contains(out, wantWay) {
				t.Errorf("install.sh --detect: want %q:\n%s", wantWay, out)
			}
		})
	}
}

// What the binary holds wins over the version: a build with another
// libexecdir that reads the variable.
func TestInstallShReadsTheBinary(t *testing.T) {
	dir := fakeOcserv(t, "OpenConnect VPN Server 1.3.0\n", "/opt/ocserv/libexec/ocserv-fw OCSERV_FW_SCRIPT")
	out, err := detect(t, dir)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := "fw script: /opt/ocserv/libexec/ocserv-fw (read from " + filepath.Join(dir, "ocserv") + ")\nreads OCSERV_FW_SCRIPT: yes\n"
	if !strings.Contains(out, want) {
		t.Errorf("want %q:\n%s", want, out)
	}
	// --ocserv-version skips the binary: Ubuntu 24.04's 1.2.4 by its
	// version alone.
	out, err = detect(t, dir, "--ocserv-version", "1.2.4")
	if err != nil || !strings.Contains(out, "fw script: /usr/libexec/ocserv-fw (read from version 1.2.4)\nreads OCSERV_FW_SCRIPT: no\n") {
		t.Errorf("--ocserv-version 1.2.4: %v\n%s", err, out)
	}
}

// An output install.sh does not understand is an error that says what to
// do, not a guess.
func TestInstallShUnknownVersionOutput(t *testing.T) {
	out, err := detect(t, fakeOcserv(t, "Server 2\n", ""))
	if err == nil || !strings.Contains(out, "cannot tell the version") || !strings.Contains(out, "--ocserv-version") {
		t.Fatalf("err %v:\n%s", err, out)
	}
}
