// Package crashpoint lets tests kill a real process at a named point, to
// prove what the spool and the shipper find on disk afterwards. It is for
// tests only: a program arms it from OCSERV_TELEMETRY_CRASHPOINT, and when
// that is unset (always, in production) Hit is one string comparison.
package crashpoint

import (
	"os"
	"syscall"
)

// Env names the crash point to hit.
const Env = "OCSERV_TELEMETRY_CRASHPOINT"

var armed string

// Arm sets the crash point; main calls it with the value of Env. (Not read
// in an init function: the first os.Getenv copies the whole environment,
// a cost the hook's start-up does not need to pay.)
func Arm(name string) { armed = name }

// Hit kills the process with SIGKILL, as a power cut or the OOM killer
// would (no deferred code, no flush), when name is the armed point.
func Hit(name string) {
	if armed != "" && armed == name {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL is not delivered synchronously everywhere
	}
}

// Armed reports whether name is the armed point (for a caller that must
// prepare, say, half a write before dying).
func Armed(name string) bool { return armed != "" && armed == name }
