package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/api"
)

// ledgerCmds are the fleet questions the ledger answers (docs/ledger.md):
// history, who, usage, audit. They go to the ledger service, not to the
// servers; --server (-s) filters by server_id.
func ledgerCmds(g *globals) []*cobra.Command {
	var (
		user, ip, logical, from, to, cursor, at, kind, by, action, key, month, auditUser, actor string
		open, refused, perServer                                                                bool
		limit, top                                                                              int
	)
	history := &cobra.Command{Use: "history", Short: "sessions across the fleet from the ledger, newest first (filters: --user, -s, --ip, --from/--to, --open)",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			args := map[string]string{"user": user, "ip": ip, "logical": logical, "cursor": cursor}
			if err := g.timeArgs(args, "from", from, "to", to); err != nil {
				return err
			}
			if err := g.serverArg(args); err != nil {
				return err
			}
			if open {
				args["open"] = "true"
			}
			if limit != 0 {
				args["limit"] = strconv.Itoa(limit)
			}
			var res api.HistoryResult
			return g.ledger("history", args, &res, func(w io.Writer) error {
				if err := printSessions(w, res.Sessions); err != nil {
					return err
				}
				morePages(w, res.NextCursor)
				return nil
			})
		}}
	hf := history.Flags()
	hf.StringVar(&user, "user", "", "user name")
	hf.StringVar(&ip, "ip", "", "real or VPN address")
	hf.StringVar(&logical, "logical", "", "a logical session's uid: every worker of one roaming session")
	hf.StringVar(&from, "from", "", "sessions overlapping from this time (RFC 3339, a date, or a duration ago like 24h)")
	hf.StringVar(&to, "to", "", "… up to this time")
	hf.BoolVar(&open, "open", false, "only sessions still open")
	hf.IntVar(&limit, "limit", 0, "sessions per page (default 50, at most 1000)")
	hf.StringVar(&cursor, "cursor", "", "the next page (printed at the end of the previous one)")

	who := &cobra.Command{Use: "who", Short: "who held a VPN address, or came from a real address, at an instant, across the fleet",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if ip == "" || at == "" {
				return usageErr("who needs --ip ADDRESS and --at TIME")
			}
			args := map[string]string{"ip": ip, "kind": kind}
			if err := g.timeArgs(args, "at", at); err != nil {
				return err
			}
			var res api.WhoResult
			return g.ledger("who", args, &res, func(w io.Writer) error {
				if len(res.Sessions) == 0 {
					fmt.Fprintf(w, "nobody held or came from %s at %s\n", clean(res.IP), res.At.Format(time.RFC3339))
					return nil
				}
				return printSessions(w, res.Sessions)
			})
		}}
	wf := who.Flags()
	wf.StringVar(&ip, "ip", "", "the address (IPv4 or IPv6)")
	wf.StringVar(&at, "at", "", "the instant (RFC 3339, a date, or a duration ago like 2h)")
	wf.StringVar(&kind, "kind", "", "any (default), vpn (tunnel address) or real (client address)")

	usage := &cobra.Command{Use: "usage", Short: "traffic and connected time per user across the fleet (this month unless told)",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			args := map[string]string{"user": user, "by": by}
			if month != "" {
				m, err := time.Parse("2006-01", month)
				if err != nil {
					return usageErr("--month %q is not YYYY-MM", month)
				}
				from, to = m.Format(time.DateOnly), m.AddDate(0, 1, 0).Format(time.DateOnly)
			}
			if err := g.timeArgs(args, "from", from, "to", to); err != nil {
				return err
			}
			if err := g.serverArg(args); err != nil {
				return err
			}
			if perServer {
				args["per_server"] = "true"
			}
			if top != 0 {
				args["top"] = strconv.Itoa(top)
			}
			var res api.UsageResult
			return g.ledger("usage", args, &res, func(w io.Writer) error {
				fmt.Fprintf(w, "usage %s to %s (UTC days, to exclusive)\n", clean(res.From), clean(res.To))
				if err := printUsage(w, res.Rows, perServer); err != nil {
					return err
				}
				return printLimits(w, res.Limits)
			})
		}}
	uf := usage.Flags()
	uf.StringVar(&user, "user", "", "one user")
	uf.StringVar(&from, "from", "", "first day (YYYY-MM-DD; default the 1st of this month)")
	uf.StringVar(&to, "to", "", "day after the last (default the 1st of next month)")
	uf.StringVar(&month, "month", "", "a month (YYYY-MM), instead of --from/--to")
	uf.StringVar(&by, "by", "", "range (default), month or day")
	uf.BoolVar(&perServer, "per-server", false, "a row per server too")
	uf.IntVar(&top, "top", 0, "only the N users with the most traffic")

	audit := &cobra.Command{Use: "audit", Short: "who ran which command where, accepted or refused, from the ledger (newest first)",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			args := map[string]string{"action": action, "key": key, "cursor": cursor, "user": auditUser, "actor": actor}
			if err := g.timeArgs(args, "from", from, "to", to); err != nil {
				return err
			}
			if err := g.serverArg(args); err != nil {
				return err
			}
			if refused {
				args["refused"] = "true"
			}
			if limit != 0 {
				args["limit"] = strconv.Itoa(limit)
			}
			var res api.AuditResult
			return g.ledger("audit", args, &res, func(w io.Writer) error {
				if err := printAudit(w, res.Entries); err != nil {
					return err
				}
				morePages(w, res.NextCursor)
				return nil
			})
		}}
	af := audit.Flags()
	af.StringVar(&action, "action", "", "one action (kick, disconnect, …)")
	af.StringVar(&key, "key", "", "an operator's public key or key name")
	af.BoolVar(&refused, "refused", false, "only refused or failed commands")
	af.StringVar(&auditUser, "user", "", "only commands about this VPN user")
	af.StringVar(&actor, "actor", "", "only commands the web console ran for this web user")
	af.StringVar(&from, "from", "", "from this time (RFC 3339, a date, or a duration ago)")
	af.StringVar(&to, "to", "", "up to this time")
	af.IntVar(&limit, "limit", 0, "entries per page (default 50)")
	af.StringVar(&cursor, "cursor", "", "the next page")
	return []*cobra.Command{history, who, usage, audit}
}

// serverArg passes one --server as the server filter.
func (g *globals) serverArg(args map[string]string) error {
	switch {
	case g.all:
		return usageErr("--all means nothing to the ledger: it answers for the whole fleet (filter with --server)")
	case len(g.servers) > 1:
		return usageErr("the ledger filters by one server at a time")
	case len(g.servers) == 1:
		args["server"] = g.servers[0]
	}
	return nil
}

// timeArgs turns pairs of (argument, flag value) into RFC 3339 or date
// arguments; a duration means that long ago.
func (g *globals) timeArgs(args map[string]string, pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		name, v := pairs[i], pairs[i+1]
		if v == "" {
			continue
		}
		switch {
		case v == "now":
			args[name] = time.Now().UTC().Format(time.RFC3339Nano)
		case isDate(v):
			args[name] = v
		default:
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				args[name] = t.UTC().Format(time.RFC3339Nano)
			} else if d, err := time.ParseDuration(v); err == nil && d > 0 {
				args[name] = time.Now().Add(-d).UTC().Format(time.RFC3339Nano)
			} else {
				return usageErr("--%s %q is not a time (RFC 3339 like 2026-11-24T14:05:00Z, a date, now, or a duration ago like 2h)", name, v)
			}
		}
	}
	return nil
}

func isDate(v string) bool {
	_, err := time.Parse(time.DateOnly, v)
	return err == nil
}

// ledger sends one query and prints the result (or JSON).
func (g *globals) ledger(action string, args map[string]string, out any, print func(io.Writer) error) error {
	for k, v := range args {
		if v == "" {
			delete(args, k)
		}
	}
	s, err := g.open(true)
	if err != nil {
		return err
	}
	defer s.close()
	c := &api.Client{NC: s.nc, Prefix: s.st.Agent.SubjectPrefix, Key: s.cl.Key}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	rep, err := c.Query(ctx, action, args, out)
	if errors.Is(err, api.ErrNoLedger) {
		return &exitError{exitPartial, err}
	}
	if err != nil {
		return err
	}
	if !rep.OK {
		return replyErr(rep)
	}
	if g.json {
		var v any
		json.Unmarshal(rep.Result, &v)
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return print(g.stdout)
}

func replyErr(rep *cmdsvc.Reply) error {
	e := rep.Error
	if e == nil {
		return &exitError{exitFail, errors.New("the ledger answered without a result")}
	}
	code := exitFail
	switch {
	case securityCodes[e.Code]:
		code = exitRefused
	case e.Code == ledger.ECodeInvalid:
		code = exitUsage
	}
	return &exitError{code, fmt.Errorf("ledger: %s: %s", e.Code, e.Message)}
}

// when prints a time in UTC, "~" marking a coarse one.
func when(t time.Time, coarse bool) string {
	if t.IsZero() {
		return "-"
	}
	s := t.UTC().Format("2006-01-02 15:04:05")
	if coarse {
		s = "~" + s
	}
	return s
}

// The ledger's tables print what VPN users and remote parties put in
// events (user names, refused requests' arguments): every such field goes
// through clean, so its newlines and tabs cannot forge rows or columns
// (termsafe.go).

func printSessions(w io.Writer, l []ledger.Session) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONNECTED (UTC)\tENDED\tSTATE\tUSER\tSERVER\tREAL IP\tVPN IP\tIN\tOUT\tDURATION\tSESSION")
	for _, s := range l {
		vpn := dash(clean(s.VPNIPv4))
		if s.VPNIPv6 != "" {
			vpn += "," + clean(s.VPNIPv6)
		}
		ended := when(s.EndedAt, s.EndedCoarse)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", when(s.ConnectedAt, s.ConnectedCoarse), ended, clean(s.State),
			dash(clean(s.Username)), clean(s.ServerID), dash(clean(s.IPReal)), vpn, bytesH(s.BytesIn), bytesH(s.BytesOut),
			(time.Duration(s.Seconds) * time.Second).String(), clean(short8(s.UID)+joined(s)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(l) == 0 {
		fmt.Fprintln(w, "(no sessions)")
	}
	return nil
}

func joined(s ledger.Session) string {
	if s.LogicalUID != "" && s.LogicalUID != s.UID {
		return " (roamed from " + short8(s.LogicalUID) + ")"
	}
	return ""
}

// short8 is a uid's last 8 characters: UUIDv7s share their leading
// (time) digits, their random tail tells them apart.
func short8(uid string) string {
	if len(uid) > 8 {
		return uid[len(uid)-8:]
	}
	return uid
}

func printUsage(w io.Writer, rows []ledger.UsageRow, perServer bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "PERIOD\tUSER\t"
	if perServer {
		head += "SERVER\t"
	}
	fmt.Fprintln(tw, head+"IN\tOUT\tTOTAL\tCONNECTED\tSESSIONS")
	for _, r := range rows {
		line := clean(r.Period) + "\t" + dash(clean(r.Username)) + "\t"
		if perServer {
			line += clean(r.ServerID) + "\t"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%d\n", line, bytesH(r.BytesIn), bytesH(r.BytesOut), bytesH(r.BytesIn+r.BytesOut),
			(time.Duration(r.Seconds) * time.Second).String(), r.Sessions)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rows) == 0 {
		fmt.Fprintln(w, "(no usage)")
	}
	return nil
}

func printAudit(w io.Writer, l []ledger.AuditEntry) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME (UTC)\tSERVER\tACTION\tPHASE\tOK\tBY\tARGS\tCODE\tMESSAGE")
	for _, a := range l {
		by := a.KeyName
		if by == "" {
			by = short8(a.Key)
		}
		if a.Actor != "" {
			by += " for " + a.Actor // a service key (the console) acting for a person
		}
		var args []string
		for k, v := range a.Args {
			args = append(args, k+"="+v)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%s\t%s\t%s\t%s\n", when(a.Time, false), clean(a.ServerID), clean(a.Action), clean(a.Phase), a.OK,
			dash(clean(by)), dash(clean(strings.Join(sorted(args), " "))), dash(clean(a.Code)), dash(clean(a.Message)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(l) == 0 {
		fmt.Fprintln(w, "(no audit entries)")
	}
	return nil
}

func sorted(l []string) []string {
	sort.Strings(l)
	return l
}

// bytesH prints a byte count in binary units.
func bytesH(n int64) string {
	const u = 1024
	if n < u {
		return strconv.FormatInt(n, 10) + " B"
	}
	f, i := float64(n), 0
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}
	for f /= u; f >= u && i < len(units)-1; i++ {
		f /= u
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + " " + units[i]
}

// morePages tells how to ask for the next page of a paged ledger answer
// (nothing on the last page).
func morePages(w io.Writer, next string) {
	if next != "" {
		fmt.Fprintf(w, "(more: add --cursor %s)\n", clean(next))
	}
}
