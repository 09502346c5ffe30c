package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/ocserv-telemetry/ocserv-telemetry/console"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/passprompt"
)

// consoleUserCmd manages the web console's accounts file:
//
//	ledger console-user add NAME [--role viewer|operator] [--password-stdin]
//	ledger console-user passwd NAME [--password-stdin]
//	ledger console-user delete NAME
//	ledger console-user list
//
// Passwords are asked twice with echo off on a terminal, or read from
// standard input (one line) with --password-stdin; never from an argument,
// which other users could read in the process list. Changes apply at the
// console's next request (it re-reads the file); a deleted account's
// sessions end then too.
type consoleUserCmd struct {
	env
	stdin io.Reader
}

func (c *consoleUserCmd) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError{errors.New("console-user: want add, passwd, delete or list")}
	}
	sub, rest := args[0], args[1:]
	fs := flag.NewFlagSet("console-user "+sub, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	cfgPath := fs.String("config", "", "configuration file (default $"+configEnv+" or "+defaultConfigPath+")")
	file := fs.String("file", "", "accounts file (default LEDGER_CONSOLE_USERS of the configuration)")
	role := fs.String("role", "viewer", "add: viewer or operator")
	stdin := fs.Bool("password-stdin", false, "read the password from standard input")
	// Flags may follow the name: parse the name out first.
	var name string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		name, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return usageError{err}
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	}
	path := *file
	if path == "" {
		st, _, err := loadSettings(configPath(*cfgPath, c.getenv))
		if err != nil {
			return err
		}
		path = st.Console.Users
	}
	switch sub {
	case "list":
		return c.list(path)
	case "add", "passwd", "delete":
	default:
		return usageError{fmt.Errorf("console-user: unknown subcommand %q (add, passwd, delete, list)", sub)}
	}
	if err := console.ValidUsername(name); err != nil {
		return usageError{fmt.Errorf("console-user %s: %v", sub, err)}
	}
	switch sub {
	case "delete":
		return console.EditAccounts(path, func(m map[string]console.Account) error {
			if _, ok := m[name]; !ok {
				return fmt.Errorf("console-user delete: no account %s in %s", name, path)
			}
			delete(m, name)
			fmt.Fprintf(c.stdout, "deleted %s\n", name)
			return nil
		})
	case "add":
		r, err := console.ParseRole(*role)
		if err != nil {
			return usageError{err}
		}
		pw, err := c.password(*stdin)
		if err != nil {
			return err
		}
		hash, err := console.HashPassword(pw, console.DefaultArgon2)
		if err != nil {
			return err
		}
		return console.EditAccounts(path, func(m map[string]console.Account) error {
			if _, ok := m[name]; ok {
				return fmt.Errorf("console-user add: %s exists; use passwd to change its password", name)
			}
			m[name] = console.Account{Name: name, Role: r, Hash: hash}
			fmt.Fprintf(c.stdout, "added %s (%s) to %s\n", name, r, path)
			return nil
		})
	default: // passwd
		pw, err := c.password(*stdin)
		if err != nil {
			return err
		}
		hash, err := console.HashPassword(pw, console.DefaultArgon2)
		if err != nil {
			return err
		}
		return console.EditAccounts(path, func(m map[string]console.Account) error {
			a, ok := m[name]
			if !ok {
				return fmt.Errorf("console-user passwd: no account %s in %s", name, path)
			}
			a.Hash = hash
			m[name] = a
			fmt.Fprintf(c.stdout, "changed the password of %s\n", name)
			return nil
		})
	}
}

func (c *consoleUserCmd) list(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("console-user list: %w", err)
	}
	m, err := console.ParseAccounts(b)
	if err != nil {
		return fmt.Errorf("console-user list: %s: %w", path, err)
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(c.stdout, "%-24s %s\n", n, m[n].Role)
	}
	return nil
}

// password reads the new password: one line of stdin, or twice from the
// terminal with echo off. Without a terminal and without --password-stdin
// it refuses rather than wait.
func (c *consoleUserCmd) password(fromStdin bool) (string, error) {
	in := c.stdin
	if in == nil {
		in = os.Stdin
	}
	if fromStdin {
		return passprompt.Line(in)
	}
	pw, err := passprompt.Twice(c.stderr, "Password: ", "Again: ")
	if errors.Is(err, passprompt.ErrNoTerminal) {
		return "", usageError{errors.New("no terminal to ask for the password: use --password-stdin")}
	}
	return pw, err
}
