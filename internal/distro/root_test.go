package distro

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstalledVersion(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "var/lib/dpkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	status := "Package: ocserv-doc\nVersion: 9.9-1\n\nPackage: libc6\nVersion: 2.41-1\n\nPackage: ocserv\nStatus: install ok installed\nVersion: 1:1.3.0-2+b1\n\n"
	if err := os.WriteFile(filepath.Join(dir, "var/lib/dpkg/status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	if v, err := installedVersion(dir); err != nil || v != "1:1.3.0-2+b1" || UpstreamVersion(v) != "1.3.0" {
		t.Fatalf("installedVersion = %q, %v", v, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "var/lib/dpkg/status"), []byte("Package: libc6\nVersion: 2.41-1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := installedVersion(dir); err == nil || !strings.Contains(err.Error(), "no ocserv package") {
		t.Fatalf("root without ocserv: %v", err)
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
