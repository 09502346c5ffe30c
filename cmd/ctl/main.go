// Command ctl is the operator's CLI for a fleet of ocserv hosts: discovery
// of the servers' command services, reads across one or all servers
// (scatter-gather with a deadline), signed write actions, a live tail of the
// events stream, operator key generation, and `ctl status`, which reads the
// local spool and works offline on a VPN host. docs/commands.md is the
// reference; exit codes are below.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ocserv-telemetry/ocserv-telemetry/hook"
)

// Exit codes (docs/commands.md).
const (
	exitOK      = 0 // everything asked for succeeded
	exitFail    = 1 // a command failed (on a server, or locally)
	exitUsage   = 2 // bad usage: unknown command or flag, missing argument, no --force without a terminal
	exitPartial = 3 // some servers did not answer within the deadline (or none was found)
	exitRefused = 4 // a server's security layer refused the command (signature, key, role, expiry, replay)
)

// exitError carries an exit code to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, a ...any) error {
	return &exitError{exitUsage, fmt.Errorf(format, a...)}
}

// globals are the flags every command has.
type globals struct {
	config  string
	json    bool
	servers []string
	all     bool
	timeout string
	force   bool

	stdin io.Reader
	// stdout escapes control characters (safeWriter) unless --json,
	// when it is rawStdout; stderr always escapes them.
	stdout    io.Writer
	rawStdout io.Writer
	stderr    io.Writer
	getenv    func(string) string
	// isTerminal reports whether stdin is a terminal (tests replace it).
	isTerminal func() bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	return runWith(args, os.Stdin, stdout, stderr, os.Getenv, stdinIsTerminal)
}

func runWith(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string, isTerm func() bool) int {
	safeOut, safeErr := &safeWriter{w: stdout}, &safeWriter{w: stderr}
	defer safeOut.flush()
	defer safeErr.flush()
	stderr = safeErr
	g := &globals{stdin: stdin, stdout: safeOut, rawStdout: stdout, stderr: stderr, getenv: getenv, isTerminal: isTerm}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(safeOut)
	root.SetErr(safeErr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	code := exitFail
	switch {
	case errors.As(err, &ee):
		code = ee.code
	case isCobraUsage(err):
		code = exitUsage
	}
	if err.Error() != "" {
		fmt.Fprintf(stderr, "ctl: %v\n", err)
	}
	if code == exitUsage {
		fmt.Fprintln(stderr, "Run 'ctl --help' for usage.")
	}
	return code
}

// isCobraUsage recognises cobra's own usage errors (unknown command, flag
// or argument count), which it returns as plain errors.
func isCobraUsage(err error) bool {
	var ue *usageError
	return errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command ") ||
		strings.HasPrefix(err.Error(), "unknown flag") || strings.HasPrefix(err.Error(), "unknown shorthand flag")
}

type usageError struct{ err error }

func (u *usageError) Error() string { return u.err.Error() }

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "ctl",
		Short: "Operate a fleet of ocserv servers over NATS: signed, audited commands; live events; local spool status",
		Long: `ctl talks to each server's command service over NATS (signed with your operator key)
and reads the events stream. 'ctl status' without --server reads the local spool and
works offline on a VPN host.

Exit codes: 0 ok; 1 a command failed; 2 bad usage; 3 some servers did not answer in time
(or none was found); 4 refused by a server's security layer.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       hook.Version,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.Help()
			return usageErr("no command given")
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	// --json is the data, exactly: no escaping layer in its way.
	root.PersistentPreRun = func(*cobra.Command, []string) {
		if g.json {
			g.stdout = g.rawStdout
		}
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.config, "config", "", "ctl configuration file, or the agent's (default $"+ctlConfigEnv+", ~/.config/ocserv-telemetry/ctl.env, else the agent's file)")
	pf.BoolVar(&g.json, "json", false, "print JSON")
	pf.StringSliceVarP(&g.servers, "server", "s", nil, "server_id to act on (repeatable, or comma-separated)")
	pf.BoolVar(&g.all, "all", false, "act on every server that answers discovery")
	pf.StringVar(&g.timeout, "timeout", "", "deadline for servers' answers (default CTL_TIMEOUT or 5s)")
	root.AddCommand(
		statusCmd(g), serversCmd(g), keygenCmd(g), tailCmd(g),
	)
	root.AddCommand(readCmds(g)...)
	root.AddCommand(writeCmds(g)...)
	root.AddCommand(userCmds(g)...)
	root.AddCommand(ledgerCmds(g)...)
	root.AddCommand(policyCmds(g)...)
	// Wrong argument counts are usage errors too.
	for _, c := range root.Commands() {
		wrapArgs(c)
	}
	return root
}

func wrapArgs(c *cobra.Command) {
	if c.Args != nil {
		inner := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := inner(cmd, args); err != nil {
				return &usageError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		wrapArgs(sub)
	}
}
