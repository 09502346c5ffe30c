package console

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/engine"
)

// LedgerActor sends signed requests to the ledger's query service for a
// web user (api.Client with the console's key): the policy changes go
// through the same signature, trusted-key role and nonce checks as ctl's,
// and the ledger records the key and the web user on what changed.
type LedgerActor interface {
	DoAs(ctx context.Context, actor, action string, args map[string]string) (*cmdsvc.Reply, error)
}

// policyView is where a user stands against their policy, as the user
// page shows it: built from engine.Explain, the ledger's own evaluation,
// computed from the database at the request.
type policyView struct {
	Group   string
	Allowed bool
	Reason  string
	Message string
	Until   time.Time // when a denial lifts by itself; zero: until something changes

	Quota    *usageView
	Time     *usageView
	Expiry   *expiryView
	Sessions *sessionsView
	// Off lists kinds set to "none" (no limit of this kind), with the
	// scope that says so (the user's own policy, over their group's).
	Off []offKind
	// Actionable: the ledger's policy commands can name this user (a
	// group's policy also binds members whose names they cannot take,
	// "jörg smith"; the page shows where those stand, without actions).
	Actionable bool
}

// usageView is a quota or a connected-time limit in its current period.
type usageView struct {
	Kind                    string // quota or time
	Limit, Used, Remaining  int64  // bytes or seconds
	Percent                 int
	Direction, Period, From string
	WindowStart, WindowEnd  time.Time
}

type expiryView struct {
	At      time.Time // the instant the account stops working
	Through string    // "2026-12-31" when At is a UTC midnight (the account works through that day)
	Rule    string    // how it is set: a date, or N days after the first connect
	From    string
	Expired bool
	// WarnDays is the effective policy's, carried into an extension so
	// the notice keeps its lead time.
	WarnDays int
}

type offKind struct{ Kind, From string }

type sessionsView struct {
	Max      int
	OnExcess string
	Open     int
	From     string
}

// standing evaluates one user; nil when no policy applies to them.
func (s *Server) standing(ctx context.Context, user string) (*engine.Standing, error) {
	if policy.ValidUser(user) != nil {
		return nil, nil // not a name ocserv can pass: no verdict is ever about it
	}
	// Only the user's own policy and their group's are read: the page's
	// cost does not grow with the fleet's number of policies.
	x, ok, err := engine.ExplainUser(ctx, s.o.Policies, user, s.o.Now())
	if err != nil || !ok {
		return nil, err
	}
	return &x, nil
}

func newPolicyView(x *engine.Standing, now time.Time) *policyView {
	v := &policyView{Group: x.Group, Allowed: x.Verdict.Allowed, Reason: x.Verdict.Reason, Message: x.Verdict.Message,
		Actionable: policy.ValidName(x.User) == nil}
	if x.Verdict.Until != nil {
		v.Until = *x.Verdict.Until
	}
	from := func(kind string) string { return string(x.From[kind]) }
	if q := x.QuotaUsage; q != nil {
		v.Quota = &usageView{Kind: policy.KindQuota, Limit: q.Limit, Used: q.Used, Remaining: q.Remaining, Percent: q.Percent(),
			Direction: q.Direction, Period: q.Period, From: from(policy.KindQuota), WindowStart: q.WindowStart, WindowEnd: q.WindowEnd}
	}
	if t := x.TimeUsage; t != nil {
		v.Time = &usageView{Kind: policy.KindTime, Limit: t.Limit, Used: t.Used, Remaining: t.Remaining, Percent: t.Percent(),
			Period: t.Period, From: from(policy.KindTime), WindowStart: t.WindowStart, WindowEnd: t.WindowEnd}
	}
	if e := x.Expiry; e != nil && !e.Off {
		ev := &expiryView{At: x.Expires, From: from(policy.KindExpiry), WarnDays: e.WarnDays}
		if e.DaysAfterFirstUse > 0 {
			ev.Rule = fmt.Sprintf("%d days after the first connect", e.DaysAfterFirstUse)
		} else {
			ev.Rule = "a date"
		}
		if !x.Expires.IsZero() {
			ev.Through = throughDay(x.Expires)
			ev.Expired = !now.Before(x.Expires)
		}
		v.Expiry = ev
	}
	if sl := x.Sessions; sl != nil && !sl.Off {
		v.Sessions = &sessionsView{Max: sl.Max, OnExcess: sl.OnExcess, Open: x.Open, From: from(policy.KindSessions)}
	}
	// A kind turned off ("none") is absent from the effective policy but
	// named in From.
	set := map[string]bool{policy.KindQuota: x.Quota != nil, policy.KindExpiry: x.Expiry != nil,
		policy.KindSessions: x.Sessions != nil, policy.KindTime: x.Time != nil}
	for _, kind := range policy.Kinds {
		if from := x.From[kind]; from != "" && !set[kind] {
			v.Off = append(v.Off, offKind{Kind: kind, From: string(from)})
		}
	}
	return v
}

// throughDay is the last UTC day an account works when it stops at a UTC
// midnight ("" otherwise): a date given as 2026-12-31 stops at
// 2027-01-01T00:00Z.
func throughDay(at time.Time) string {
	at = at.UTC()
	if at.Hour() != 0 || at.Minute() != 0 || at.Second() != 0 || at.Nanosecond() != 0 {
		return ""
	}
	return at.AddDate(0, 0, -1).Format(time.DateOnly)
}

// Bounds of an extension through the console (ctl expire sets anything
// the policy model allows).
const maxExtendDays = 3660

// extendExpiry computes the new expiry an extension asks for: days after
// the current expiry (after the end of today when it has passed), or the
// end of a given UTC day. Exactly one of days and until is given. The
// result is always later than both the current expiry and now: the
// console extends, it never shortens.
func extendExpiry(cur, now time.Time, days, until string) (time.Time, string) {
	days, until = strings.TrimSpace(days), strings.TrimSpace(until)
	switch {
	case days == "" && until == "":
		return time.Time{}, "give a number of days to extend by, or the last day the account should work"
	case days != "" && until != "":
		return time.Time{}, "give a number of days or a date, not both"
	}
	if cur.IsZero() {
		return time.Time{}, "the user has no expiry date yet (it counts from a first connect the ledger has not seen)"
	}
	now = now.UTC()
	if days != "" {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 || n > maxExtendDays {
			return time.Time{}, fmt.Sprintf("days: %q is not a whole number of days from 1 to %d (an extension cannot shorten the account; ctl expire sets any date)", short(days), maxExtendDays)
		}
		base := cur.UTC()
		if !now.Before(base) {
			base = time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
		}
		return base.AddDate(0, 0, n), ""
	}
	day, err := time.Parse(time.DateOnly, until)
	if err != nil {
		return time.Time{}, fmt.Sprintf("until: %q is not a date like 2026-12-31 (the last UTC day the account works)", short(until))
	}
	at := day.AddDate(0, 0, 1)
	switch {
	case !at.After(now):
		return time.Time{}, fmt.Sprintf("until: %s is in the past", until)
	case !at.After(cur):
		return time.Time{}, fmt.Sprintf("until: the account already works until %s; a later date extends it (ctl expire sets any date)", expiryText(cur))
	case at.After(now.AddDate(0, 0, maxExtendDays+1)):
		return time.Time{}, fmt.Sprintf("until: %s is more than %d days ahead", until, maxExtendDays)
	}
	return at, ""
}

// expiryText writes an expiry the way an operator thinks of it.
func expiryText(at time.Time) string {
	if at.IsZero() {
		return "—"
	}
	if d := throughDay(at); d != "" {
		return "the end of " + d + " (UTC)"
	}
	return at.UTC().Format("2006-01-02 15:04:05") + " UTC"
}

// describePolicy writes each kind a policy sets, for the policies list.
func describePolicy(p policy.Policy) []string {
	var out []string
	switch q := p.Quota; {
	case q == nil:
	case q.Off:
		out = append(out, "quota: none")
	default:
		out = append(out, fmt.Sprintf("quota: %s %s per %s", policy.FormatBytes(q.Bytes), q.Direction, q.Period))
	}
	switch e := p.Expiry; {
	case e == nil:
	case e.Off:
		out = append(out, "expiry: none")
	case e.DaysAfterFirstUse > 0:
		out = append(out, fmt.Sprintf("expiry: %d days after the first connect", e.DaysAfterFirstUse))
	default:
		out = append(out, "expiry: "+expiryText(e.At))
	}
	switch sl := p.Sessions; {
	case sl == nil:
	case sl.Off:
		out = append(out, "sessions: no limit")
	default:
		out = append(out, fmt.Sprintf("sessions: at most %d (%s)", sl.Max, excessText(sl.OnExcess)))
	}
	switch t := p.Time; {
	case t == nil:
	case t.Off:
		out = append(out, "connected time: no limit")
	default:
		out = append(out, fmt.Sprintf("connected time: %s per %s", policy.FormatDuration(t.Seconds), t.Period))
	}
	return out
}

func excessText(onExcess string) string {
	if onExcess == policy.ExcessNewest {
		return "past it the oldest session ends"
	}
	return "past it a new login is refused"
}
