//go:build e2e

package distro

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRootsHoldTheirRelease builds (or finds) the shared cache's root of
// every release the host does not have, and checks each build against the
// table, on the real binaries: `ocserv --version` and `occtl --version`
// name the version, occtl, ocpasswd and the fw script are there (the fw
// script owned by the ocserv package), and the ocserv binary holds the fw
// script path it runs and, exactly where the table says so, the
// "OCSERV_FW_SCRIPT" name it reads from the environment. The host's
// ocserv is checked the same way.
func TestRootsHoldTheirRelease(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (debootstrap, chroot): run make e2e as root")
	}
	for _, r := range Releases {
		t.Run(r.Version, func(t *testing.T) {
			root := "/"
			if !r.Host {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
				defer cancel()
				got, err := EnsureRoot(ctx, r, t.Logf)
				if err != nil {
					t.Fatal(err)
				}
				root = got.Dir
				t.Logf("%s: %s (package %s)", r.Version, got.Dir, got.Package)
			}
			run := func(argv ...string) string {
				t.Helper()
				if root != "/" {
					argv = append([]string{"chroot", root}, argv...)
				}
				out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
				if err != nil {
					t.Fatalf("%v: %v\n%s", argv, err, out)
				}
				return string(out)
			}
			first := strings.SplitN(run("ocserv", "--version"), "\n", 2)[0]
			wantFirst := "OpenConnect VPN Server " + r.Version
			if r.Version == "1.1.6" {
				wantFirst = "ocserv 1.1.6"
			}
			if first != wantFirst {
				t.Errorf("ocserv --version starts %q, want %q", first, wantFirst)
			}
			// The recorded output install.sh's tests read is this build's.
			if rec := strings.SplitN(releaseOutput(t, r), "\n", 2)[0]; rec != first {
				t.Errorf("testdata/ocserv-version/%s.txt starts %q, the binary prints %q", r.Version, rec, first)
			}
			// install.sh reads the same facts from the real binary.
			args := []string{installSh, "--detect"}
			if !r.Host {
				args = append(args, "--root", root)
			}
			det, err := exec.Command("/bin/sh", args...).CombinedOutput()
			reads := map[bool]string{true: "yes", false: "no"}[r.FwScriptEnv]
			if want := "ocserv " + r.Version + "\nfw script: " + r.FwScript + " (read from /usr/sbin/ocserv)\nreads OCSERV_FW_SCRIPT: " + reads + "\n"; err != nil || !strings.HasPrefix(string(det), want) {
				t.Errorf("install.sh --detect on the real %s: %v\n%s\nwant it to start\n%s", r.Version, err, det, want)
			}
			if out := run("occtl", "--version"); !strings.Contains(out, "version "+r.Version) {
				t.Errorf("occtl --version:\n%s", out)
			}
			run("sh", "-c", "command -v ocpasswd")
			if out := run("dpkg", "-S", r.FwScript); !strings.HasPrefix(out, "ocserv: "+r.FwScript) {
				t.Errorf("dpkg -S %s: %s", r.FwScript, out)
			}
			bin, err := os.ReadFile(filepath.Join(root, "usr/sbin/ocserv"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(bin, []byte(r.FwScript+"\x00")) {
				t.Errorf("the ocserv binary does not hold %q", r.FwScript)
			}
			for _, other := range []string{"/usr/bin/ocserv-fw", "/usr/libexec/ocserv-fw"} {
				if other != r.FwScript && bytes.Contains(bin, []byte(other+"\x00")) {
					t.Errorf("the ocserv binary holds %q too", other)
				}
			}
			if got := bytes.Contains(bin, []byte("OCSERV_FW_SCRIPT\x00")); got != r.FwScriptEnv {
				t.Errorf("the binary names OCSERV_FW_SCRIPT: %v, table says it reads it: %v", got, r.FwScriptEnv)
			}
			fw, err := os.ReadFile(filepath.Join(root, r.FwScript))
			if err != nil {
				t.Fatal(err)
			}
			if uses := map[bool]string{true: "nftables", false: "iptables"}[bytes.Contains(fw, []byte("nft -f"))]; uses != r.FwBackend {
				t.Errorf("%s uses %s, table says %s", r.FwScript, uses, r.FwBackend)
			}
		})
	}
}
