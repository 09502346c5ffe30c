// Package distro knows the ocserv versions operators run (the Debian and
// Ubuntu builds in the field) and makes Debian root file systems holding
// them, so the end-to-end bed can run each version's real ocserv, occtl,
// ocpasswd and ocserv-fw: debootstrap --variant=minbase of the suite that
// ships the version, plus the ocserv package and what its fw script needs,
// in the cache of Debian roots that CI and every test run share (package
// debroot; root.go).
//
// Everything about a version that the product and its tests depend on is
// in one table here, with the source lines it was read from
// (docs/firewall.md has the same findings for operators).
package distro

import (
	"fmt"
	"os"
	"strings"
)

// Release is one ocserv build in the field.
type Release struct {
	// Version is ocserv's upstream version, as `ocserv --version` prints it.
	Version string
	// Suite is the Debian suite whose ocserv package is this version.
	Suite string
	// Distribution names where operators meet this build.
	Distribution string
	// Host: the machine the tests run on (Debian 12) has this version
	// installed, so the bed runs the host's binaries instead of a root.
	Host bool

	// FwScript is the fw script this build runs for restricted users: the
	// path compiled into ocserv (OCSERV_FW_SCRIPT in src/main-user.c).
	FwScript string
	// FwScriptEnv: the build reads an OCSERV_FW_SCRIPT environment
	// variable (non-empty) that overrides FwScript (upstream commit
	// bb4e91c5, first released in 1.4.2).
	FwScriptEnv bool
	// FwBackend is what the build's own ocserv-fw uses: "iptables" (the
	// shell script of 1.1.6 to 1.4.1) or "nftables" (meson's default from
	// 1.4.2 where nft is available; one "inet ocserv_<dev>" table per
	// user).
	FwBackend string
}

// The tested releases. Sources (docs/firewall.md cites the lines):
//   - 1.1.6 (Debian 12): src/main-user.c of the 1.1.6 release defines
//     OCSERV_FW_SCRIPT "/usr/bin/ocserv-fw"; no getenv.
//   - 1.3.0 (Debian 13): upstream defines "/usr/libexec/ocserv-fw" (commit
//     8ada82ff, from 1.2.3); Debian's patch 0004 makes it
//     ${libexecdir}/ocserv-fw, /usr/libexec with debhelper compat 13; no
//     getenv (the binary has no "OCSERV_FW_SCRIPT" string).
//   - 1.5.0 (Debian sid): meson sets OCSERV_FW_SCRIPT to
//     prefix/libexecdir/ocserv-fw and main-user.c's ocserv_fw_script()
//     prefers getenv("OCSERV_FW_SCRIPT") when it is not empty.
var Releases = []Release{
	{Version: "1.1.6", Suite: "bookworm", Distribution: "Debian 12", Host: true,
		FwScript: "/usr/bin/ocserv-fw", FwBackend: "iptables"},
	{Version: "1.3.0", Suite: "trixie", Distribution: "Debian 13",
		FwScript: "/usr/libexec/ocserv-fw", FwBackend: "iptables"},
	{Version: "1.5.0", Suite: "sid", Distribution: "Debian sid",
		FwScript: "/usr/libexec/ocserv-fw", FwScriptEnv: true, FwBackend: "nftables"},
}

// EnvVersion selects the version the end-to-end suite runs
// (OCSERV_VERSION=1.3.0); unset means DefaultVersion.
const EnvVersion = "OCSERV_VERSION"

// DefaultVersion is the host's ocserv.
const DefaultVersion = "1.1.6"

// Lookup returns the release of an upstream version.
func Lookup(version string) (Release, error) {
	for _, r := range Releases {
		if r.Version == version {
			return r, nil
		}
	}
	return Release{}, fmt.Errorf("ocserv %q is not a tested version (tested: %s)", version, strings.Join(Versions(), ", "))
}

// Versions lists the tested upstream versions, oldest first.
func Versions() []string {
	vs := make([]string, len(Releases))
	for i, r := range Releases {
		vs[i] = r.Version
	}
	return vs
}

// Selected is the release named by $OCSERV_VERSION (DefaultVersion when
// unset or empty).
func Selected() (Release, error) {
	v := strings.TrimSpace(os.Getenv(EnvVersion))
	if v == "" {
		v = DefaultVersion
	}
	r, err := Lookup(v)
	if err != nil {
		return Release{}, fmt.Errorf("%s: %w", EnvVersion, err)
	}
	return r, nil
}

// UpstreamVersion is the upstream part of a Debian package version:
// "1:1.3.0-2+b1" → "1.3.0" (epoch and Debian revision dropped).
func UpstreamVersion(pkg string) string {
	if _, after, ok := strings.Cut(pkg, ":"); ok {
		pkg = after
	}
	if i := strings.LastIndexByte(pkg, '-'); i >= 0 {
		pkg = pkg[:i]
	}
	return pkg
}
