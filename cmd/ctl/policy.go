package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/api"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/engine"
)

// policyCmds are fleet policy's commands (docs/policy.md): policy
// set|get|list|delete|notices, and the shortcuts quota (with quota
// reset), expire and limit. They go to the ledger, signed with the
// operator key; setting needs a read-write key.
func policyCmds(g *globals) []*cobra.Command {
	pol := &cobra.Command{Use: "policy", Short: "fleet policy: quotas, expiry, session limits per user or group (the ledger decides, every host enforces)"}

	var set setFlags
	setCmd := &cobra.Command{Use: "set user|group NAME", Short: "change a user's or group's policy (only the kinds given change)",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, a []string) error {
			args, err := set.args(cmd, a[0], a[1])
			if err != nil {
				return err
			}
			if len(args) == 2 {
				return usageErr("policy set: nothing to change (give --quota, --expire, --sessions, --time or --unset)")
			}
			return g.policySet(args)
		}}
	set.bind(setCmd)

	get := &cobra.Command{Use: "get user|group NAME", Short: "a policy; for a user, the effective one (with their group's) and where they stand",
		Args: cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, a []string) error {
			var res api.PolicyResult
			return g.ledger("policy-get", map[string]string{"scope": a[0], "name": a[1]}, &res, func(w io.Writer) error {
				return printPolicyResult(w, res)
			})
		}}

	var scope, cursor string
	var limit int
	list := &cobra.Command{Use: "list", Short: "every policy, users and groups",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			args := map[string]string{"scope": scope, "cursor": cursor}
			if limit != 0 {
				args["limit"] = strconv.Itoa(limit)
			}
			var res api.PolicyListResult
			return g.ledger("policy-list", args, &res, func(w io.Writer) error {
				if err := printPolicies(w, res.Policies); err != nil {
					return err
				}
				morePages(w, res.NextCursor)
				return nil
			})
		}}
	list.Flags().StringVar(&scope, "scope", "", "user or group only")
	list.Flags().IntVar(&limit, "limit", 0, "policies per page (default 50, at most 1000)")
	list.Flags().StringVar(&cursor, "cursor", "", "the next page")

	del := &cobra.Command{Use: "delete user|group NAME", Short: "remove a policy (a user's group policy applies again)",
		Args: cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, a []string) error {
			var res api.PolicyResult
			return g.ledger("policy-delete", map[string]string{"scope": a[0], "name": a[1]}, &res, func(w io.Writer) error {
				fmt.Fprintf(w, "policy of %s %s deleted\n", a[0], a[1])
				return nil
			})
		}}

	var nuser, nkind string
	notices := &cobra.Command{Use: "notices", Short: "notices sent (quota 80%/100%, expiry soon, session limit), newest first, with their webhook delivery",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			args := map[string]string{"user": nuser, "kind": nkind, "cursor": cursor}
			if limit != 0 {
				args["limit"] = strconv.Itoa(limit)
			}
			var res api.NoticesResult
			return g.ledger("policy-notices", args, &res, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME (UTC)\tUSER\tKIND\tWEBHOOK\tMESSAGE")
				for _, r := range res.Notices {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", when(r.Notice.Time, false), clean(r.Notice.User), clean(r.Notice.Kind), clean(r.Webhook), clean(r.Notice.Message))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				morePages(w, res.NextCursor)
				return nil
			})
		}}
	notices.Flags().StringVar(&nuser, "user", "", "one user")
	notices.Flags().StringVar(&nkind, "kind", "", "quota, time, expiry_soon, expired or session_limit")
	notices.Flags().IntVar(&limit, "limit", 0, "notices per page")
	notices.Flags().StringVar(&cursor, "cursor", "", "the next page")
	pol.AddCommand(setCmd, get, list, del, notices)

	// Shortcuts.
	var qgroup, qperiod, qdir string
	quota := &cobra.Command{Use: "quota USER|--group GROUP SIZE|none", Short: "set a traffic quota (e.g. 50GiB monthly); ctl quota reset USER starts the user's count afresh",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(_ *cobra.Command, a []string) error {
			sc, name, val, err := shortcut(qgroup, a)
			if err != nil {
				return err
			}
			args := map[string]string{"scope": sc, "name": name, policy.ArgQuota: val}
			if qperiod != "" {
				args[policy.ArgQuotaPeriod] = qperiod
			}
			if qdir != "" {
				args[policy.ArgQuotaDirection] = qdir
			}
			return g.policySet(args)
		}}
	quota.Flags().StringVar(&qgroup, "group", "", "set the quota of this group instead of a user")
	quota.Flags().StringVar(&qperiod, "period", "", "monthly[:DAY] (default monthly:1), weekly[:DAY], daily or lifetime")
	quota.Flags().StringVar(&qdir, "direction", "", "total (default), in (from the clients) or out")
	var rtime bool
	reset := &cobra.Command{Use: "reset USER", Short: "start a user's quota count afresh for the rest of the period (lifts a quota denial everywhere)",
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, a []string) error {
			kind := policy.KindQuota
			if rtime {
				kind = policy.KindTime
			}
			var res api.ResetResult
			return g.ledger("policy-reset", map[string]string{"user": a[0], "kind": kind}, &res, func(w io.Writer) error {
				fmt.Fprintf(w, "%s's %s count reset at %s (%s and %s were counted in this period before)\n", a[0], kind,
					res.Reset.At.Format(time.RFC3339), bytesH(res.Reset.Base.In+res.Reset.Base.Out), (time.Duration(res.Reset.Base.Seconds) * time.Second).String())
				if res.Standing != nil {
					printStanding(w, *res.Standing)
				}
				return nil
			})
		}}
	reset.Flags().BoolVar(&rtime, "time", false, "reset the connected-time count instead")
	quota.AddCommand(reset)

	var egroup, ewarn string
	expire := &cobra.Command{Use: "expire USER|--group GROUP DATE|30d|none", Short: "set an account expiry: a date (works through that UTC day), an instant, or N days after the first connect",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(_ *cobra.Command, a []string) error {
			sc, name, val, err := shortcut(egroup, a)
			if err != nil {
				return err
			}
			args := map[string]string{"scope": sc, "name": name, policy.ArgExpire: val}
			if ewarn != "" {
				args[policy.ArgWarnDays] = ewarn
			}
			return g.policySet(args)
		}}
	expire.Flags().StringVar(&egroup, "group", "", "set the expiry of this group instead of a user")
	expire.Flags().StringVar(&ewarn, "warn-days", "", "days before the expiry for the notice (default 7; -1 never)")

	var lgroup, lexcess string
	var newest bool
	limitCmd := &cobra.Command{Use: "limit USER|--group GROUP N|none", Short: "limit concurrent sessions across the fleet; past it the new login is refused, or with --newest-wins the oldest session ends",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(_ *cobra.Command, a []string) error {
			sc, name, val, err := shortcut(lgroup, a)
			if err != nil {
				return err
			}
			args := map[string]string{"scope": sc, "name": name, policy.ArgSessions: val}
			switch {
			case newest && lexcess != "":
				return usageErr("limit: give --newest-wins or --on-excess, not both")
			case newest:
				args[policy.ArgOnExcess] = policy.ExcessNewest
			case lexcess != "":
				args[policy.ArgOnExcess] = lexcess
			}
			return g.policySet(args)
		}}
	limitCmd.Flags().StringVar(&lgroup, "group", "", "limit this group's users instead of a user")
	limitCmd.Flags().BoolVar(&newest, "newest-wins", false, "past the limit, end the oldest session instead of refusing the new login")
	limitCmd.Flags().StringVar(&lexcess, "on-excess", "", "refuse (default) or newest")
	return []*cobra.Command{pol, quota, expire, limitCmd}
}

// shortcut reads "USER VALUE" or, with --group, "VALUE".
func shortcut(group string, a []string) (scope, name, val string, err error) {
	switch {
	case group != "" && len(a) == 1:
		return string(policy.ScopeGroup), group, a[0], nil
	case group == "" && len(a) == 2:
		return string(policy.ScopeUser), a[0], a[1], nil
	case group != "":
		return "", "", "", usageErr("with --group, give only the value")
	}
	return "", "", "", usageErr("give a user and a value (or --group GROUP and a value)")
}

// setFlags are policy set's flags, one per argument of policy.ApplyArgs.
type setFlags struct {
	vals map[string]*string
}

var setFlagArgs = []struct{ flag, arg, help string }{
	{"quota", policy.ArgQuota, "traffic quota: 500MiB, 50GB, 1.5TiB, or none"},
	{"quota-period", policy.ArgQuotaPeriod, "monthly[:DAY] (default monthly:1), weekly[:DAY], daily or lifetime"},
	{"quota-direction", policy.ArgQuotaDirection, "total (default), in (from the clients) or out"},
	{"expire", policy.ArgExpire, "2026-12-31 (works through that UTC day), an RFC 3339 instant, 30d after the first connect, or none"},
	{"warn-days", policy.ArgWarnDays, "days before the expiry for its notice (default 7; -1 never)"},
	{"sessions", policy.ArgSessions, "most sessions at once across the fleet, or none"},
	{"on-excess", policy.ArgOnExcess, "past the session limit: refuse (default) the new login, or newest (end the oldest session)"},
	{"time", policy.ArgTime, "connected time per period: 40h, 30d, or none"},
	{"time-period", policy.ArgTimePeriod, "as --quota-period, for --time"},
	{"unset", policy.ArgUnset, "kinds to remove from this policy so the group's apply: quota,expiry,sessions,time"},
}

func (s *setFlags) bind(cmd *cobra.Command) {
	s.vals = map[string]*string{}
	for _, f := range setFlagArgs {
		s.vals[f.flag] = cmd.Flags().String(f.flag, "", f.help)
	}
}

func (s *setFlags) args(cmd *cobra.Command, scope, name string) (map[string]string, error) {
	if scope != string(policy.ScopeUser) && scope != string(policy.ScopeGroup) {
		return nil, usageErr("policy set: %q is not user or group", scope)
	}
	args := map[string]string{"scope": scope, "name": name}
	for _, f := range setFlagArgs {
		if cmd.Flags().Changed(f.flag) {
			args[f.arg] = *s.vals[f.flag]
		}
	}
	return args, nil
}

func (g *globals) policySet(args map[string]string) error {
	var res api.PolicyResult
	return g.ledger("policy-set", args, &res, func(w io.Writer) error {
		if res.Deleted {
			fmt.Fprintf(w, "policy of %s %s is now empty and was deleted\n", args["scope"], args["name"])
		}
		return printPolicyResult(w, res)
	})
}

func printPolicyResult(w io.Writer, res api.PolicyResult) error {
	if res.Policy != nil {
		p := res.Policy
		fmt.Fprintf(w, "%s %s (set %s by %s)\n", clean(string(p.Scope)), clean(p.Name), when(p.UpdatedAt, false), dash(clean(p.UpdatedBy)))
		for _, l := range describe(p.Quota, p.Expiry, p.Sessions, p.Time, nil) {
			fmt.Fprintln(w, "  "+clean(l))
		}
	}
	if res.Standing != nil {
		printStanding(w, *res.Standing)
	}
	return nil
}

func printStanding(w io.Writer, x engine.Standing) {
	fmt.Fprintf(w, "effective for %s (group %s):\n", clean(x.User), dash(clean(x.Group)))
	for _, l := range describe(x.Quota, x.Expiry, x.Sessions, x.Time, x.From) {
		fmt.Fprintln(w, "  "+clean(l))
	}
	v := x.Verdict
	state := "allowed"
	if !v.Allowed {
		state = "DENIED: " + clean(v.Message)
		if v.Until != nil {
			state += " (until " + v.Until.Format(time.RFC3339) + ")"
		}
	}
	fmt.Fprintf(w, "  now: %s; %d session(s) open\n", state, x.Open)
	if q := x.QuotaUsage; q != nil {
		fmt.Fprintf(w, "  quota: %s of %s used, %s left", bytesH(q.Used), bytesH(q.Limit), bytesH(q.Remaining))
		if !q.WindowEnd.IsZero() {
			fmt.Fprintf(w, " (the period ends %s)", q.WindowEnd.Format(time.DateOnly))
		}
		fmt.Fprintln(w)
	}
	if t := x.TimeUsage; t != nil {
		fmt.Fprintf(w, "  connected time: %s of %s used\n", policy.FormatDuration(t.Used), policy.FormatDuration(t.Limit))
	}
	if !x.Expires.IsZero() {
		fmt.Fprintf(w, "  expires: %s\n", x.Expires.Format(time.RFC3339))
	}
}

// describe writes each kind of a policy as one line.
func describe(q *policy.Quota, e *policy.Expiry, s *policy.SessionLimit, t *policy.TimeLimit, from map[string]policy.Scope) []string {
	src := func(kind string) string {
		if from == nil || from[kind] == "" {
			return ""
		}
		return " [" + string(from[kind]) + "]"
	}
	var out []string
	switch {
	case q == nil:
	case q.Off:
		out = append(out, "quota: none"+src(policy.KindQuota))
	default:
		out = append(out, fmt.Sprintf("quota: %s %s per %s%s", bytesH(q.Bytes), q.Direction, q.Period, src(policy.KindQuota)))
	}
	switch {
	case e == nil:
	case e.Off:
		out = append(out, "expiry: none"+src(policy.KindExpiry))
	case e.DaysAfterFirstUse > 0:
		out = append(out, fmt.Sprintf("expiry: %d days after the first connect%s", e.DaysAfterFirstUse, src(policy.KindExpiry)))
	default:
		out = append(out, "expiry: "+e.At.Format(time.RFC3339)+src(policy.KindExpiry))
	}
	switch {
	case s == nil:
	case s.Off:
		out = append(out, "sessions: no limit"+src(policy.KindSessions))
	default:
		out = append(out, fmt.Sprintf("sessions: at most %d, past it %s%s", s.Max, map[string]string{
			policy.ExcessRefuse: "the new login is refused", policy.ExcessNewest: "the newest wins"}[s.OnExcess], src(policy.KindSessions)))
	}
	switch {
	case t == nil:
	case t.Off:
		out = append(out, "connected time: no limit"+src(policy.KindTime))
	default:
		out = append(out, fmt.Sprintf("connected time: %s per %s%s", policy.FormatDuration(t.Seconds), t.Period, src(policy.KindTime)))
	}
	return out
}

func printPolicies(w io.Writer, l []policy.Policy) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCOPE\tNAME\tLIMITS\tSET (UTC)\tBY")
	for _, p := range l {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", clean(string(p.Scope)), clean(p.Name), clean(strings.Join(describe(p.Quota, p.Expiry, p.Sessions, p.Time, nil), "; ")),
			when(p.UpdatedAt, false), dash(clean(p.UpdatedBy)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(l) == 0 {
		fmt.Fprintln(w, "(no policies)")
	}
	return nil
}

// printLimits is ctl usage's block of where each user stands.
func printLimits(w io.Writer, m map[string]api.Limits) error {
	if len(m) == 0 {
		return nil
	}
	users := make([]string, 0, len(m))
	for u := range m {
		users = append(users, u)
	}
	sort.Strings(users)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tNOW\tQUOTA LEFT\tOF\tPERIOD ENDS\tTIME LEFT\tEXPIRES (UTC)\tMAX SESSIONS")
	for _, u := range users {
		l := m[u]
		now := "allowed"
		if !l.Allowed {
			now = "denied (" + l.Reason + ")"
		}
		left, of, ends, tleft, exp, maxs := "-", "-", "-", "-", "-", "-"
		if l.QuotaRemaining != nil {
			left, of = bytesH(*l.QuotaRemaining), bytesH(l.QuotaLimit)+" "+l.QuotaPeriod
		}
		if l.QuotaResets != nil {
			ends = l.QuotaResets.Format(time.DateOnly)
		}
		if l.TimeRemaining != nil {
			tleft = policy.FormatDuration(*l.TimeRemaining)
		}
		if l.Expires != nil {
			exp = when(*l.Expires, false)
		}
		if l.MaxSessions > 0 {
			maxs = strconv.Itoa(l.MaxSessions)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", clean(u), clean(now), left, clean(of), ends, tleft, exp, maxs)
	}
	return tw.Flush()
}
