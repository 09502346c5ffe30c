// Command ledger is the fleet ledger (package ledger): `ledger serve` runs
// the service (a durable consumer of every server's events into SQLite or
// PostgreSQL, and the signed query endpoints ctl uses); `ledger migrate`
// applies the database schema; `ledger replay` re-applies the stream from
// a sequence or a time; `ledger status` reports the database's position
// against the stream. One file per subcommand, each a Run(ctx, args);
// only main exits. docs/ledger.md is the reference.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/ocserv-telemetry/ocserv-telemetry/hook"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/crashpoint"
)

type usageError struct{ error }

// env is what a subcommand gets from main.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// signals delivers SIGTERM/SIGINT after the first (a second one
	// aborts the drain).
	signals <-chan os.Signal
}

const usage = `usage: ledger <command> [flags]

commands:
  serve    run the ledger service (consumer, queries, retention, metrics)
  migrate  apply the database schema's missing versions
  replay   re-apply the events stream from --from SEQ|TIME
  status   the database's position, the stream and the consumer
  console-user add|passwd|delete|list  the web console's accounts
  version  print the version
Run 'ledger <command> -h' for a command's flags.`

func main() {
	crashpoint.Arm(os.Getenv(crashpoint.Env))
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-sig; cancel() }()
	e := env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, signals: sig}
	err := run(ctx, os.Args[1:], e)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "ledger:", err)
	var u usageError
	if errors.As(err, &u) {
		os.Exit(2)
	}
	os.Exit(1)
}

func run(ctx context.Context, args []string, e env) error {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, usage)
		return usageError{errors.New("no command given")}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return (&serveCmd{env: e}).Run(ctx, rest)
	case "migrate":
		return (&migrateCmd{env: e}).Run(ctx, rest)
	case "replay":
		return (&replayCmd{env: e}).Run(ctx, rest)
	case "status":
		return (&statusCmd{env: e}).Run(ctx, rest)
	case "console-user":
		return (&consoleUserCmd{env: e}).Run(ctx, rest)
	case "version", "--version", "-version":
		fmt.Fprintln(e.stdout, "ocserv-telemetry ledger", hook.Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprintln(e.stdout, usage)
		return nil
	}
	fmt.Fprintln(e.stderr, usage)
	return usageError{fmt.Errorf("unknown command %q", cmd)}
}
