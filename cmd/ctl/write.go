package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
)

func stdinIsTerminal() bool {
	_, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS)
	return err == nil
}

// confirm asks on a terminal; without one it needs --force and never
// prompts (a script must say what it means).
func (g *globals) confirm(what string, targets []cmdsvc.ServerInfo) error {
	if g.force {
		return nil
	}
	if !g.isTerminal() {
		return usageErr("%s: refusing to prompt without a terminal; add --force", what)
	}
	var ids []string
	for _, t := range targets {
		ids = append(ids, t.ServerID)
	}
	fmt.Fprintf(g.stderr, "%s on %s? [y/N] ", clean(what), clean(strings.Join(ids, ", ")))
	line, _ := bufio.NewReader(g.stdin).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return &exitError{exitFail, fmt.Errorf("%s: not confirmed", what)}
}

// write runs a read-write action after confirmation. Write actions need
// the servers named (--server) or --all explicitly.
func (g *globals) write(what, action string, args map[string]string, secret *sealed) error {
	s, err := g.open(true)
	if err != nil {
		return err
	}
	defer s.close()
	targets, err := g.targets(s, false)
	if err != nil {
		return err
	}
	if err := g.confirm(what, targets); err != nil {
		return err
	}
	rs := s.scatter(targets, action, args, secret)
	return g.report(rs, func(w io.Writer, r result) error {
		_, err := fmt.Fprintf(w, "%s: %s: %s\n", clean(r.ServerID), action, clean(string(r.Result)))
		return err
	})
}

func writeCmds(g *globals) []*cobra.Command {
	force := func(c *cobra.Command) *cobra.Command {
		c.Flags().BoolVarP(&g.force, "force", "f", false, "do not ask for confirmation (required without a terminal)")
		return c
	}
	var reason, dur string
	kick := force(&cobra.Command{Use: "kick USER", Short: "kick a user: refused at every connect (cookie resumptions too) until unkick, sessions ended",
		Args: cobra.ExactArgs(1), RunE: func(_ *cobra.Command, a []string) error {
			args := map[string]string{"user": a[0]}
			if reason != "" {
				args["reason"] = reason
			}
			if dur != "" {
				args["for"] = dur
			}
			return g.write("kick "+a[0], "kick", args, nil)
		}})
	kick.Flags().StringVar(&reason, "reason", "", "why (kept in the kick list and the audit)")
	kick.Flags().StringVar(&dur, "for", "", "end the kick by itself after this long (e.g. 24h)")

	var user, id string
	userOrID := func(verb string) func(*cobra.Command, []string) error {
		return func(_ *cobra.Command, _ []string) error {
			if (user == "") == (id == "") {
				return usageErr("%s: give exactly one of --user or --id", verb)
			}
			if user != "" {
				return g.write(verb+" user "+user, verb, map[string]string{"user": user}, nil)
			}
			if _, err := strconv.Atoi(id); err != nil {
				return usageErr("--id %q is not a number", id)
			}
			return g.write(verb+" id "+id, verb, map[string]string{"id": id}, nil)
		}
	}
	disconnect := force(&cobra.Command{Use: "disconnect (--user NAME | --id ID)", Short: "disconnect sessions (the client may come back with its cookie: see kick)",
		Args: cobra.NoArgs, RunE: userOrID("disconnect")})
	terminate := force(&cobra.Command{Use: "terminate (--user NAME | --id ID)", Short: "disconnect and invalidate the cookie (ocserv 1.4.2+)",
		Args: cobra.NoArgs, RunE: userOrID("terminate")})
	for _, c := range []*cobra.Command{disconnect, terminate} {
		c.Flags().StringVar(&user, "user", "", "user name")
		c.Flags().StringVar(&id, "id", "", "worker ID (ctl users)")
	}
	return []*cobra.Command{
		kick, disconnect, terminate,
		force(&cobra.Command{Use: "unkick USER", Short: "take a user off the kick list", Args: cobra.ExactArgs(1),
			RunE: func(_ *cobra.Command, a []string) error {
				return g.write("unkick "+a[0], "unkick", map[string]string{"user": a[0]}, nil)
			}}),
		force(&cobra.Command{Use: "unban IP", Short: "lift a ban (occtl unban ip)", Args: cobra.ExactArgs(1),
			RunE: func(_ *cobra.Command, a []string) error {
				return g.write("unban "+a[0], "unban", map[string]string{"ip": a[0]}, nil)
			}}),
		force(&cobra.Command{Use: "reload", Short: "occtl reload (ocserv says success whatever happens next)", Args: cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error { return g.write("reload", "reload", nil, nil) }}),
		force(&cobra.Command{Use: "firewall-removeall", Short: "remove every firewall rule the hook made (connected restricted users become unrestricted)", Args: cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error {
				return g.write("remove all firewall rules", "firewall-removeall", nil, nil)
			}}),
	}
}
