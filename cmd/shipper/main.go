// Command shipper is the systemd service that drains the spool to NATS
// JetStream: see package shipper for the loop, package natsjs for the NATS
// side and docs/shipper.md for operation.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
)

func main() {
	err := (&Daemon{Args: os.Args[1:], Getenv: os.Getenv, Stderr: os.Stderr}).Run(context.Background())
	var usage usageError
	switch {
	case err == nil:
	case errors.As(err, &usage):
		fmt.Fprintln(os.Stderr, "ocserv-telemetry-shipper:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "ocserv-telemetry-shipper:", err)
		os.Exit(1)
	}
}

type usageError struct{ error }
