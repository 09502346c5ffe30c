package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/passprompt"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocpasswd"
)

// userCmds: `ctl user show NAME` (occtl show user) and account management
// through the servers' ocpasswd (`user add|passwd|delete|lock|unlock|group|
// list`), plus `ctl config get|set|delete` for per-user and per-group files.
func userCmds(g *globals) []*cobra.Command {
	force := func(c *cobra.Command) *cobra.Command {
		c.Flags().BoolVarP(&g.force, "force", "f", false, "do not ask for confirmation (required without a terminal)")
		return c
	}
	user := &cobra.Command{Use: "user", Short: "a user's sessions (show) and accounts in ocserv's password file"}
	var pwStdin bool
	var group string
	withPassword := func(c *cobra.Command) *cobra.Command {
		c.Flags().BoolVar(&pwStdin, "password-stdin", false, "read the password from the first line of stdin")
		return force(c)
	}
	add := withPassword(&cobra.Command{Use: "add NAME", Short: "add a user (the password is sealed to each server's key)", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, a []string) error {
			pw, err := g.readPassword(pwStdin)
			if err != nil {
				return err
			}
			args := map[string]string{"user": a[0]}
			if group != "" {
				args["group"] = group
			}
			return g.write("add user "+a[0], "user-add", args, &sealed{"password", pw})
		}})
	add.Flags().StringVar(&group, "group", "", "group(s), comma-separated")
	passwd := withPassword(&cobra.Command{Use: "passwd NAME", Short: "set a user's password (sealed), keeping the group", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, a []string) error {
			pw, err := g.readPassword(pwStdin)
			if err != nil {
				return err
			}
			return g.write("set the password of "+a[0], "user-passwd", map[string]string{"user": a[0]}, &sealed{"password", pw})
		}})
	simple := func(verb, action, short string) *cobra.Command {
		return force(&cobra.Command{Use: verb + " NAME", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(_ *cobra.Command, a []string) error {
				return g.write(verb+" user "+a[0], action, map[string]string{"user": a[0]}, nil)
			}})
	}
	setGroup := force(&cobra.Command{Use: "group NAME GROUPS", Short: "move a user to groups (\"\" for none, or g1,g2)", Args: cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, a []string) error {
			return g.write("move "+a[0]+" to group "+strconv.Quote(a[1]), "user-group", map[string]string{"user": a[0], "group": a[1]}, nil)
		}})
	user.AddCommand(
		&cobra.Command{Use: "show NAME", Short: "a user's sessions (occtl show user)", Args: cobra.ExactArgs(1),
			RunE: func(_ *cobra.Command, a []string) error {
				return g.gather("user", map[string]string{"user": a[0]}, printJSONResult)
			}},
		&cobra.Command{Use: "list", Short: "the accounts in the password file, a table per server", Args: cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error { return g.gather("user-list", nil, printAccounts) }},
		add, passwd,
		simple("delete", "user-delete", "delete a user (their sessions stay up: kick them too)"),
		simple("lock", "user-lock", "lock a user's password (cookie resumptions still work: kick them too)"),
		simple("unlock", "user-unlock", "unlock a user's password"),
		setGroup,
	)

	cfg := &cobra.Command{Use: "config", Short: "per-user and per-group ocserv config (whitelisted keys; read at the user's next login)"}
	var cu, cg string
	target := func() (map[string]string, string, error) {
		if (cu == "") == (cg == "") {
			return nil, "", usageErr("give exactly one of --user or --group")
		}
		if cu != "" {
			return map[string]string{"kind": "user", "name": cu}, "user " + cu, nil
		}
		return map[string]string{"kind": "group", "name": cg}, "group " + cg, nil
	}
	get := &cobra.Command{Use: "get (--user NAME | --group NAME)", Short: "read the file", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			args, _, err := target()
			if err != nil {
				return err
			}
			return g.gather("config-get", args, printJSONResult)
		}}
	set := force(&cobra.Command{Use: "set (--user NAME | --group NAME) KEY VALUE...", Short: "give KEY exactly these values", Args: cobra.MinimumNArgs(2),
		RunE: func(_ *cobra.Command, a []string) error {
			args, who, err := target()
			if err != nil {
				return err
			}
			args["key"] = a[0]
			for i, v := range a[1:] {
				if i == 0 {
					args["value"] = v
				} else {
					args["value_"+strconv.Itoa(i+1)] = v
				}
			}
			return g.write(fmt.Sprintf("set %s = %s for %s", a[0], strings.Join(a[1:], ", "), who), "config-set", args, nil)
		}})
	del := force(&cobra.Command{Use: "delete (--user NAME | --group NAME) KEY", Short: "remove every line of KEY", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, a []string) error {
			args, who, err := target()
			if err != nil {
				return err
			}
			args["key"] = a[0]
			return g.write("delete "+a[0]+" for "+who, "config-delete", args, nil)
		}})
	for _, c := range []*cobra.Command{get, set, del} {
		c.Flags().StringVar(&cu, "user", "", "the user's file")
		c.Flags().StringVar(&cg, "group", "", "the group's file")
	}
	cfg.AddCommand(get, set, del)
	return []*cobra.Command{user, cfg}
}

func printAccounts(w io.Writer, r result) error {
	var l []ocpasswd.Entry
	if err := json.Unmarshal(r.Result, &l); err != nil {
		return fmt.Errorf("%s: %w", r.ServerID, err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tGROUPS\tLOCKED")
	for _, e := range l {
		fmt.Fprintf(tw, "%s\t%s\t%v\n", clean(e.User), dash(clean(strings.Join(e.Groups, ","))), e.Locked)
	}
	return tw.Flush()
}

// readPassword reads one line from stdin (--password-stdin), or asks
// twice on the terminal with echo off. It is sealed before it leaves.
func (g *globals) readPassword(fromStdin bool) (string, error) {
	if fromStdin {
		pw, err := passprompt.Line(g.stdin)
		if err != nil {
			return "", usageErr("--password-stdin: no password on stdin")
		}
		if pw == "" {
			return "", usageErr("--password-stdin: empty password")
		}
		if !g.force {
			return "", usageErr("--password-stdin uses stdin, so there is no confirmation prompt; add --force")
		}
		return pw, nil
	}
	if !g.isTerminal() {
		return "", usageErr("no terminal to ask for the password; use --password-stdin")
	}
	a, err := passprompt.Twice(g.stderr, "password: ", "again: ")
	if errors.Is(err, passprompt.ErrMismatch) {
		return "", fmt.Errorf("the passwords differ")
	}
	if err != nil {
		return "", err
	}
	if a == "" {
		return "", fmt.Errorf("empty password")
	}
	return a, nil
}
