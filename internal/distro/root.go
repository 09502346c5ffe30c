package distro

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/debroot"
)

// Packages go into every root on top of the minimal base: ocserv (ocserv,
// occtl, ocpasswd, ocserv-fw), iptables for the iptables ocserv-fw and the
// hook's iptables backend, nftables for the nftables ocserv-fw.
var Packages = []string{"ocserv", "iptables", "nftables"}

// Spec is r's root in the shared cache of Debian roots (package debroot:
// built once by debootstrap --variant=minbase with Packages, published by
// one rename when complete, never written afterwards). debootstrap itself
// installs Packages, so no apt runs inside the root and sid's Release file
// being past its Valid-Until on a lagging mirror does not matter (apt
// would refuse it without Acquire::Check-Valid-Until=false).
func Spec(r Release) debroot.Spec {
	return debroot.Spec{Kind: "chroot", Suite: r.Suite, Include: Packages}
}

// Root is a complete root file system of one release.
type Root struct {
	Dir     string
	Release Release
	Package string // the Debian package version of ocserv, e.g. "1.3.0-2"
}

// EnsureRoot returns r's root, building it first when the cache has none,
// and checks that it holds r's ocserv version: a suite that moved on (sid
// does) is an error naming both versions, never a silent run of another
// version.
func EnsureRoot(ctx context.Context, r Release, logf func(string, ...any)) (Root, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	dir, err := debroot.Ensure(ctx, Spec(r), logf)
	if err != nil {
		return Root{}, fmt.Errorf("root of ocserv %s (%s): %w", r.Version, r.Suite, err)
	}
	pkg, err := installedVersion(dir)
	if err != nil {
		return Root{}, fmt.Errorf("root of ocserv %s: %w", r.Version, err)
	}
	if got := UpstreamVersion(pkg); got != r.Version {
		return Root{}, fmt.Errorf("root %s holds ocserv %s, not %s: %s has moved on; update distro.Releases (or remove the root to build it again)",
			dir, pkg, r.Version, r.Suite)
	}
	return Root{Dir: dir, Release: r, Package: pkg}, nil
}

// installedVersion reads the ocserv package version from a root's dpkg
// database.
func installedVersion(dir string) (string, error) {
	f, err := os.Open(filepath.Join(dir, "var/lib/dpkg/status"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	inOcserv := false
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "":
			inOcserv = false
		case l == "Package: ocserv":
			inOcserv = true
		case inOcserv && strings.HasPrefix(l, "Version: "):
			return strings.TrimPrefix(l, "Version: "), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("no ocserv package in %s/var/lib/dpkg/status", dir)
}
