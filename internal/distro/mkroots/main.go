// Command mkroots builds (or finds) the cached Debian root of each tested
// ocserv version (the bed runs 1.3.0 and 1.5.0 from theirs; the install
// tests use every version's, Debian 12's for the host's 1.1.6), so that
// `make e2e` and CI pay for debootstrap once, before the timed test runs:
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
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	for _, v := range versions {
		r, err := distro.Lookup(v)
		if err != nil {
			log.Fatal(err)
		}
		start := time.Now()
		root, err := distro.EnsureRoot(ctx, r, log.Printf)
		if err != nil {
			log.Fatal(err)
		}
		use := "the bed's"
		if r.Host {
			use = "the install tests' (the bed runs the host's)"
		}
		fmt.Printf("ocserv %s (%s): %s, package %s, %s root (%s)\n", r.Version, r.Distribution, root.Dir, root.Package, use, time.Since(start).Round(100*time.Millisecond))
	}
}
