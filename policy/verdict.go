package policy

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// VerdictVersion is the value of a verdict's "v".
const VerdictVersion = 1

// Reasons a user is denied, in the order they take precedence.
const (
	ReasonExpired = "expired" // the account's expiry has passed
	ReasonQuota   = "quota"   // the traffic quota of the period is used up
	ReasonTime    = "time"    // the connected time of the period is used up
)

// Verdict is the ledger's decision about one user, as published to the
// verdicts bucket and mirrored on every host (docs/policy.md). It says
// everything a host needs at a login, so the hook decides alone.
type Verdict struct {
	V       int    `json:"v"`
	User    string `json:"user"`
	Allowed bool   `json:"allowed"`
	// Reason and Message say why a user is denied (Message is for people
	// and goes into the refused connect event).
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Until is when a denial lifts by itself (the next period's start);
	// absent, it lasts until something changes (a reset, a new policy).
	// A host treats a denial whose Until has passed as allowed, without
	// waiting for the ledger.
	Until *time.Time `json:"until,omitempty"`
	// Sessions is set when a concurrent-session limit applies.
	Sessions *SessionsVerdict `json:"sessions,omitempty"`
	// Decided is when the ledger decided this verdict.
	Decided time.Time `json:"decided"`
}

// SessionsVerdict is what a host needs to apply a session limit at login.
type SessionsVerdict struct {
	Max      int    `json:"max"`
	OnExcess string `json:"on_excess"`
	// Held counts the user's open logical sessions per server_id.
	Held map[string]int `json:"held,omitempty"`
}

// Denies reports whether the verdict refuses a login at now.
func (v *Verdict) Denies(now time.Time) bool {
	return v != nil && !v.Allowed && (v.Until == nil || now.Before(*v.Until))
}

// RefusesSession reports whether a new login on server should be refused
// for the session limit: the limit refuses the excess, and the sessions
// the user already holds on other servers reach it. Sessions held on this
// server are not counted here: a cookie resumption or a roaming client
// reconnects to the server it was on, and the hook cannot tell it from a
// new login there, so those are left to ocserv's own max-same-clients and
// to the ledger, which ends the excess (docs/policy.md).
func (v *Verdict) RefusesSession(server string) bool {
	if v == nil || v.Sessions == nil || v.Sessions.OnExcess != ExcessRefuse {
		return false
	}
	elsewhere := 0
	for s, n := range v.Sessions.Held {
		if s != server {
			elsewhere += n
		}
	}
	return elsewhere >= v.Sessions.Max
}

// Equal reports whether two verdicts say the same (Decided aside): the
// engine publishes only changes.
func (v *Verdict) Equal(o *Verdict) bool {
	if v == nil || o == nil {
		return v == o
	}
	if v.User != o.User || v.Allowed != o.Allowed || v.Reason != o.Reason || v.Message != o.Message {
		return false
	}
	if (v.Until == nil) != (o.Until == nil) || v.Until != nil && !v.Until.Equal(*o.Until) {
		return false
	}
	a, b := v.Sessions, o.Sessions
	if (a == nil) != (b == nil) {
		return false
	}
	if a != nil {
		if a.Max != b.Max || a.OnExcess != b.OnExcess || len(a.Held) != len(b.Held) {
			return false
		}
		for k, n := range a.Held {
			if b.Held[k] != n {
				return false
			}
		}
	}
	return true
}

// Usage is an amount of traffic (in = from the client) and connected time.
type Usage struct {
	In      int64 `json:"bytes_in"`
	Out     int64 `json:"bytes_out"`
	Seconds int64 `json:"seconds"`
}

// Minus is u - b, never below zero.
func (u Usage) Minus(b Usage) Usage {
	return Usage{In: max(0, u.In-b.In), Out: max(0, u.Out-b.Out), Seconds: max(0, u.Seconds-b.Seconds)}
}

// Bytes is the traffic in direction dir.
func (u Usage) Bytes(dir string) int64 {
	switch dir {
	case DirIn:
		return u.In
	case DirOut:
		return u.Out
	}
	return u.In + u.Out
}

// OpenSession is one open worker session of the user, from the ledger.
type OpenSession struct {
	ServerID    string    `json:"server_id"`
	SessionUID  string    `json:"session_uid"`
	LogicalUID  string    `json:"logical_uid"`
	WorkerID    int64     `json:"worker_id"`
	ConnectedAt time.Time `json:"connected_at"`
}

// Inputs are the facts Evaluate needs about one user. Usage amounts are
// already limited to the kind's current window (Period.Window) with any
// reset taken off.
type Inputs struct {
	QuotaUsed Usage
	TimeUsed  Usage
	// FirstUse is the user's first connect seen by the ledger (zero:
	// never seen).
	FirstUse time.Time
	Open     []OpenSession
}

// QuotaStatus is where a user stands against a byte or time limit.
type QuotaStatus struct {
	Limit       int64     `json:"limit"`
	Used        int64     `json:"used"`
	Remaining   int64     `json:"remaining"`
	Direction   string    `json:"direction,omitempty"`
	Period      string    `json:"period"`
	WindowStart time.Time `json:"window_start,omitzero"`
	WindowEnd   time.Time `json:"window_end,omitzero"`
}

// Percent is how much of the limit is used, rounded down.
func (q *QuotaStatus) Percent() int {
	if q.Limit <= 0 {
		return 0
	}
	return int(min(float64(q.Used)/float64(q.Limit)*100, 1000)) // capped, for a limit lowered far below the use
}

// Evaluation is the whole outcome of evaluating one user: the verdict to
// publish, where the user stands, the sessions to end now, and when time
// alone may change the verdict.
type Evaluation struct {
	Verdict Verdict
	Quota   *QuotaStatus `json:"quota,omitempty"`
	Time    *QuotaStatus `json:"time,omitempty"`
	Expires time.Time    `json:"expires,omitzero"`
	// End lists the sessions to end now: every open one when the user is
	// denied, the excess over a session limit otherwise.
	End []OpenSession `json:"-"`
	// Excess is true when End is the excess over the session limit.
	Excess bool `json:"-"`
	// Next is the earliest instant at which the verdict can change with
	// the clock alone (an expiry, a period's end, an expiry notice); zero
	// when none is ahead.
	Next time.Time `json:"-"`
}

// Evaluate decides the verdict of the user of e from in at now.
func Evaluate(e *Effective, in Inputs, now time.Time) Evaluation {
	now = now.UTC()
	ev := Evaluation{Verdict: Verdict{V: VerdictVersion, User: e.User, Allowed: true, Decided: now}}
	v := &ev.Verdict
	deny := func(reason, msg string, until time.Time) {
		if !v.Allowed {
			return // the first reason (by precedence) stands
		}
		v.Allowed, v.Reason, v.Message = false, reason, msg
		if !until.IsZero() {
			u := until
			v.Until = &u
		}
	}
	next := func(t time.Time) {
		if !t.IsZero() && t.After(now) && (ev.Next.IsZero() || t.Before(ev.Next)) {
			ev.Next = t
		}
	}
	if x := e.Expiry; x != nil {
		at := x.At
		if x.DaysAfterFirstUse > 0 && !in.FirstUse.IsZero() {
			at = in.FirstUse.UTC().AddDate(0, 0, x.DaysAfterFirstUse)
		}
		if !at.IsZero() {
			ev.Expires = at
			if !now.Before(at) {
				deny(ReasonExpired, "the account expired on "+at.Format(time.RFC3339), time.Time{})
			}
			next(at)
			if w := x.WarnDays; w >= 0 {
				if w == 0 {
					w = DefaultWarnDays
				}
				next(at.AddDate(0, 0, -w))
			}
		}
	}
	if q := e.Quota; q != nil {
		start, end := q.Period.Window(now)
		dir := cmp.Or(q.Direction, DirTotal)
		used := in.QuotaUsed.Bytes(dir)
		ev.Quota = &QuotaStatus{Limit: q.Bytes, Used: used, Remaining: max(0, q.Bytes-used), Direction: dir,
			Period: q.Period.String(), WindowStart: start, WindowEnd: end}
		if used >= q.Bytes {
			deny(ReasonQuota, fmt.Sprintf("%s traffic quota of %s (%s) used", q.Period.Kind, FormatBytes(q.Bytes), dir), end)
		}
		next(end)
	}
	if t := e.Time; t != nil {
		start, end := t.Period.Window(now)
		used := in.TimeUsed.Seconds
		ev.Time = &QuotaStatus{Limit: t.Seconds, Used: used, Remaining: max(0, t.Seconds-used),
			Period: t.Period.String(), WindowStart: start, WindowEnd: end}
		if used >= t.Seconds {
			deny(ReasonTime, fmt.Sprintf("%s connected time of %s used", t.Period.Kind, FormatDuration(t.Seconds)), end)
		}
		next(end)
	}
	if s := e.Sessions; s != nil {
		sv := &SessionsVerdict{Max: s.Max, OnExcess: cmp.Or(s.OnExcess, ExcessRefuse)}
		seen := map[string]bool{}
		for _, o := range in.Open {
			k := o.ServerID + "\x00" + logical(o)
			if !seen[k] {
				seen[k] = true
				if sv.Held == nil {
					sv.Held = map[string]int{}
				}
				sv.Held[o.ServerID]++
			}
		}
		v.Sessions = sv
	}
	switch {
	case !v.Allowed:
		ev.End = append(ev.End, in.Open...)
	case e.Sessions != nil:
		ev.End, ev.Excess = excess(in.Open, e.Sessions.Max, v.Sessions.OnExcess), true
	}
	return ev
}

func logical(o OpenSession) string {
	if o.LogicalUID != "" {
		return o.LogicalUID
	}
	return o.SessionUID
}

// excess is the workers of the logical sessions past max: the newest ones
// when the limit refuses, the oldest when the newest wins. A logical
// session's age is its first worker's connect; ties go by uid, so every
// ledger instance picks the same.
func excess(open []OpenSession, limit int, onExcess string) []OpenSession {
	type group struct {
		uid     string
		started time.Time
		workers []OpenSession
	}
	byUID := map[string]*group{}
	var groups []*group
	for _, o := range open {
		g := byUID[logical(o)]
		if g == nil {
			g = &group{uid: logical(o), started: o.ConnectedAt}
			byUID[g.uid] = g
			groups = append(groups, g)
		}
		if o.ConnectedAt.Before(g.started) {
			g.started = o.ConnectedAt
		}
		g.workers = append(g.workers, o)
	}
	if len(groups) <= limit {
		return nil
	}
	slices.SortFunc(groups, func(a, b *group) int {
		if c := a.started.Compare(b.started); c != 0 {
			return c
		}
		return cmp.Compare(a.uid, b.uid)
	})
	var out []OpenSession
	n := len(groups) - limit
	pick := groups[len(groups)-n:] // the newest
	if onExcess == ExcessNewest {
		pick = groups[:n] // the oldest
	}
	for _, g := range pick {
		out = append(out, g.workers...)
	}
	return out
}

// Refusal texts the hook writes into a refused connect event's "refusal"
// (docs/events.md); the ledger recognises session-limit refusals by the
// prefix.
const (
	RefusalPrefix       = "policy: "
	RefusalSessionLimit = RefusalPrefix + "session limit"
	RefusalStale        = RefusalPrefix + "verdicts mirror stale"
)
