// Command ctl is the operator's CLI. This first version has the local,
// offline part: `ctl status` on the VPN host reads the spool and the
// shipper's status file, so it works while NATS is down. Fleet commands
// over NATS arrive with the commands issue.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ocserv-telemetry/ocserv-telemetry/hook"
)

// Exit codes: 0 ok, 1 the command failed, 2 bad usage.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

var errUsage = errors.New("usage")

const usage = `usage: ctl <command> [flags]

commands:
  status [--config FILE] [--json]   local spool backlog and shipper status (works offline)
  version                           print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "status":
		err = statusCmd(args[1:], stdout)
	case "version", "--version":
		fmt.Fprintln(stdout, "ocserv-telemetry ctl", hook.Version)
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "ctl: %v\n%s", err, usage)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "ctl: %v\n", err)
		return exitFail
	}
}
