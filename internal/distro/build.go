package distro

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// debootstrap builds a root of r in dir: a minimal base system of r's
// suite, then Packages with apt inside it. Needs root and the archive.
func debootstrap(ctx context.Context, r Release, dir string, w io.Writer) error {
	if err := runLogged(ctx, 15*time.Minute, w, nil, "debootstrap", "--variant=minbase", r.Suite, dir, Mirror); err != nil {
		return err
	}
	// No package may start a service inside the root.
	policy := filepath.Join(dir, "usr/sbin/policy-rc.d")
	if err := os.WriteFile(policy, []byte("#!/bin/sh\n# ocserv-telemetry test root: start no services\nexit 101\n"), 0o755); err != nil {
		return err
	}
	// sid's Release file can be past its Valid-Until on a machine whose
	// mirror lags; the archive's signature is still checked.
	if r.Suite == "sid" || r.Suite == "unstable" {
		conf := filepath.Join(dir, "etc/apt/apt.conf.d/99ocserv-telemetry-test")
		if err := os.WriteFile(conf, []byte("Acquire::Check-Valid-Until \"false\";\n"), 0o644); err != nil {
			return err
		}
	}
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive"}
	// Inside the root, with /proc mounted (maintainer scripts such as
	// systemd-tmpfiles in sid's ocserv need it) in a private mount
	// namespace, so the mount ends with the command, also after a crash.
	in := func(argv ...string) []string {
		return append([]string{"unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
			`mount -t proc proc "$1/proc" && exec chroot "$@"`, "sh", dir}, argv...)
	}
	for _, argv := range [][]string{
		in("apt-get", "update"),
		in(append([]string{"apt-get", "install", "-y", "--no-install-recommends"}, Packages...)...),
		in("apt-get", "clean"),
	} {
		if err := runLogged(ctx, 10*time.Minute, w, env, argv...); err != nil {
			return err
		}
	}
	if err := os.Remove(policy); err != nil {
		return err
	}
	return os.RemoveAll(filepath.Join(dir, "var/lib/apt/lists"))
}

// runLogged runs argv (no shell) with a timeout, its output into w.
func runLogged(ctx context.Context, timeout time.Duration, w io.Writer, env []string, argv ...string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fmt.Fprintf(w, "+ %s\n", strings.Join(argv, " "))
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = w, w
	if env != nil {
		cmd.Env = env
	}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", strings.Join(argv, " "), ctx.Err())
		}
		return fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return nil
}
