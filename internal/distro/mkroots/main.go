// Command mkroots builds (or finds) the cached root file systems of the
// tested ocserv versions that the host does not have, so that `make e2e`
// and CI pay for debootstrap once, before the timed test runs:
//
//	go run ./internal/distro/mkroots [VERSION...]
//
// Without arguments, every tested version. It prints one line per root.
// Needs root (debootstrap, chroot) and the Debian archive on a cache miss.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/distro"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("mkroots: ")
	versions := os.Args[1:]
	if len(versions) == 0 {
		versions = distro.Versions()
	}
	c := distro.DefaultCache()
	c.Logf = log.Printf
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	for _, v := range versions {
		r, err := distro.Lookup(v)
		if err != nil {
			log.Fatal(err)
		}
		if r.Host {
			fmt.Printf("ocserv %s (%s): the host's\n", r.Version, r.Distribution)
			continue
		}
		start := time.Now()
		root, err := c.Ensure(ctx, r)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("ocserv %s (%s): %s, package %s (%s)\n", r.Version, r.Distribution, root.Dir, root.Package, time.Since(start).Round(100*time.Millisecond))
	}
}
