// Command hook is ocserv's connect, disconnect and host-update script. See
// package hook; install it behind the /bin/sh wrapper that install.sh
// writes (ocserv-fw runs scripts through /bin/sh).
package main

import (
	"os"
	"strings"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/hook"
)

func main() {
	start := time.Now()
	env := make(map[string]string, 64)
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	r := &hook.Run{Args: os.Args[1:], Env: env, Stderr: os.Stderr, Start: start, Exit: os.Exit}
	r.Main()
}
