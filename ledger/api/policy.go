package api

import (
	"context"
	"sort"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/engine"
)

// PolicyHooks connect the policy endpoints to this instance's engine; the
// functions may be nil (a standby: the active instance's engine sees the
// change through the policy revision within a second).
type PolicyHooks struct {
	Touch     func(users ...string)
	SweepSoon func()
	// Settle waits until the engine acted on what was touched, so a
	// change answers once its verdict is published.
	Settle func(ctx context.Context) error
	// Stats reports the engine (the status action).
	Stats func() any
	Now   func() time.Time
}

// PolicyActions are the policy endpoints and the role each needs
// (docs/policy.md, "Commands").
var PolicyActions = map[string]opauth.Role{
	"policy-set":     opauth.ReadWrite,
	"policy-delete":  opauth.ReadWrite,
	"policy-reset":   opauth.ReadWrite,
	"policy-get":     opauth.ReadOnly,
	"policy-list":    opauth.ReadOnly,
	"policy-status":  opauth.ReadOnly,
	"policy-notices": opauth.ReadOnly,
}

// Results of the policy actions.
type (
	// PolicyResult is one policy, and for a user where they stand.
	PolicyResult struct {
		Policy   *policy.Policy   `json:"policy,omitempty"`
		Standing *engine.Standing `json:"standing,omitempty"`
		Deleted  bool             `json:"deleted,omitempty"`
	}
	PolicyListResult struct {
		Policies   []policy.Policy `json:"policies"`
		NextCursor string          `json:"next_cursor,omitempty"`
	}
	PolicyStatusResult struct {
		User     string              `json:"user"`
		Standing *engine.Standing    `json:"standing,omitempty"`
		Kicks    []ledger.PolicyKick `json:"kicks"`
	}
	ResetResult struct {
		Reset    ledger.UsageReset `json:"reset"`
		Standing *engine.Standing  `json:"standing,omitempty"`
	}
	NoticesResult struct {
		Notices    []ledger.PolicyNoticeRow `json:"notices"`
		NextCursor string                   `json:"next_cursor,omitempty"`
	}
)

func (s *Service) now() time.Time {
	if h := s.o.Policy; h != nil && h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// settle lets the engine act on a change before the answer (bounded: a
// standby has no engine, and a busy one must not hold the operator).
func (s *Service) settle(ctx context.Context, users []string, group bool) {
	h := s.o.Policy
	switch {
	case group && h.SweepSoon != nil:
		h.SweepSoon()
	case !group && h.Touch != nil:
		h.Touch(users...)
	}
	if h.Settle != nil {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		h.Settle(c)
	}
}

func (s *Service) standing(ctx context.Context, user string) (*engine.Standing, error) {
	// ExplainUser reads the user's and their group's policies only, so
	// an answer about one user costs the same in a fleet of many policies.
	x, ok, err := engine.ExplainUser(ctx, s.o.Store, user, s.now())
	if err != nil || !ok {
		return nil, err
	}
	return &x, nil
}

func scopeName(a *args) (policy.Scope, string, error) {
	sc, err := policy.ParseScope(a.m["scope"])
	if err != nil {
		return "", "", ledger.Errorf(ledger.ECodeInvalid, "scope: %v", err)
	}
	name := a.m["name"]
	if err := policy.ValidName(name); err != nil {
		return "", "", ledger.Errorf(ledger.ECodeInvalid, "name: %v", err)
	}
	return sc, name, nil
}

// preparePolicy checks a policy action's arguments as far as they can be
// checked without the database (names, scope, the arguments known), so a
// refused request does not use up a nonce; the query does the rest.
func (s *Service) preparePolicy(action string, m map[string]string, by string) (func(context.Context) (any, error), error) {
	a := &args{m: m}
	var err error
	switch action {
	case "policy-set":
		if err = a.known(policy.SetArgs...); err == nil {
			_, _, err = scopeName(a)
		}
	case "policy-delete", "policy-get":
		if err = a.known("scope", "name"); err == nil {
			_, _, err = scopeName(a)
		}
	case "policy-reset", "policy-status":
		known := []string{"user"}
		if action == "policy-reset" {
			known = append(known, "kind")
		}
		if err = a.known(known...); err == nil {
			if e := policy.ValidName(m["user"]); e != nil {
				err = ledger.Errorf(ledger.ECodeInvalid, "user: %v", e)
			}
		}
	case "policy-list":
		err = a.known("scope", "limit", "cursor")
	case "policy-notices":
		err = a.known("user", "kind", "limit", "cursor")
	default:
		err = ledger.Errorf(ledger.ECodeNotFound, "unknown action %s", action)
	}
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) (any, error) { return s.runPolicy(ctx, action, m, by) }, nil
}

// runPolicy answers the policy actions; by names the key that asked.
func (s *Service) runPolicy(ctx context.Context, action string, m map[string]string, by string) (any, error) {
	a := &args{m: m}
	st := s.o.Store
	switch action {
	case "policy-set":
		if err := a.known(policy.SetArgs...); err != nil {
			return nil, err
		}
		sc, name, err := scopeName(a)
		if err != nil {
			return nil, err
		}
		p, err := st.Policy(ctx, sc, name)
		if ledger.ErrorCode(err) == ledger.ECodeNotFound {
			p, err = policy.Policy{Scope: sc, Name: name}, nil
		}
		if err != nil {
			return nil, err
		}
		if err := policy.ApplyArgs(&p, m); err != nil {
			return nil, ledger.Errorf(ledger.ECodeInvalid, "%v", err)
		}
		p.UpdatedBy = by
		if err := st.PutPolicy(ctx, p, s.now()); err != nil {
			return nil, err
		}
		s.o.Log.Info("policy set", "scope", sc, "name", name, "by", by)
		s.settle(ctx, []string{name}, sc == policy.ScopeGroup)
		out := PolicyResult{Policy: &p, Deleted: p.Empty()}
		if p.Empty() {
			out.Policy = nil
		}
		if sc == policy.ScopeUser {
			out.Standing, err = s.standing(ctx, name)
		}
		return out, err
	case "policy-delete":
		if err := a.known("scope", "name"); err != nil {
			return nil, err
		}
		sc, name, err := scopeName(a)
		if err != nil {
			return nil, err
		}
		ok, err := st.DeletePolicy(ctx, sc, name)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, ledger.Errorf(ledger.ECodeNotFound, "no policy for %s %s", sc, name)
		}
		s.o.Log.Info("policy deleted", "scope", sc, "name", name, "by", by)
		s.settle(ctx, []string{name}, sc == policy.ScopeGroup)
		return PolicyResult{Deleted: true}, nil
	case "policy-get":
		if err := a.known("scope", "name"); err != nil {
			return nil, err
		}
		sc, name, err := scopeName(a)
		if err != nil {
			return nil, err
		}
		out := PolicyResult{}
		p, err := st.Policy(ctx, sc, name)
		switch {
		case err == nil:
			out.Policy = &p
		case ledger.ErrorCode(err) != ledger.ECodeNotFound || sc == policy.ScopeGroup:
			return nil, err
		}
		if sc == policy.ScopeUser {
			if out.Standing, err = s.standing(ctx, name); err != nil {
				return nil, err
			}
			if out.Policy == nil && out.Standing == nil {
				return nil, ledger.Errorf(ledger.ECodeNotFound, "no policy applies to user %s (none of their own, none for their group)", name)
			}
		}
		return out, nil
	case "policy-list":
		if err := a.known("scope", "limit", "cursor"); err != nil {
			return nil, err
		}
		var q ledger.PolicyQuery
		var e [3]error
		var sc string
		sc, e[0] = a.str("scope", 16)
		q.Scope = policy.Scope(sc)
		q.Limit, e[1] = a.int("limit")
		q.Cursor, e[2] = a.str("cursor", 512)
		if err := first(e[:]...); err != nil {
			return nil, err
		}
		p, err := st.Policies(ctx, q)
		if err != nil {
			return nil, err
		}
		return PolicyListResult{Policies: nonNil(p.Items), NextCursor: p.NextCursor}, nil
	case "policy-reset":
		if err := a.known("user", "kind"); err != nil {
			return nil, err
		}
		user := a.m["user"]
		if err := policy.ValidName(user); err != nil {
			return nil, ledger.Errorf(ledger.ECodeInvalid, "user: %v", err)
		}
		kind := a.m["kind"]
		if kind == "" {
			kind = policy.KindQuota
		}
		x, err := s.standing(ctx, user)
		if err != nil {
			return nil, err
		}
		var per *policy.Period
		switch {
		case kind == policy.KindQuota && x != nil && x.Quota != nil:
			per = &x.Quota.Period
		case kind == policy.KindTime && x != nil && x.Time != nil:
			per = &x.Time.Period
		case kind != policy.KindQuota && kind != policy.KindTime:
			return nil, ledger.Errorf(ledger.ECodeInvalid, "kind: %q is not quota or time", kind)
		default:
			return nil, ledger.Errorf(ledger.ECodeInvalid, "user: %s has no %s limit to reset", user, kind)
		}
		now := s.now()
		start, _ := per.Window(now)
		r, err := st.ResetUsage(ctx, ledger.UsageReset{Username: user, Kind: kind, WindowStart: start, At: now, By: by})
		if err != nil {
			return nil, err
		}
		s.o.Log.Info("policy usage reset", "user", user, "kind", kind, "by", by, "base_in", r.Base.In, "base_out", r.Base.Out)
		s.settle(ctx, []string{user}, false)
		out := ResetResult{Reset: r}
		out.Standing, err = s.standing(ctx, user)
		return out, err
	case "policy-status":
		if err := a.known("user"); err != nil {
			return nil, err
		}
		user := a.m["user"]
		if err := policy.ValidName(user); err != nil {
			return nil, ledger.Errorf(ledger.ECodeInvalid, "user: %v", err)
		}
		x, err := s.standing(ctx, user)
		if err != nil {
			return nil, err
		}
		kicks, err := st.PolicyKicks(ctx, user)
		if err != nil {
			return nil, err
		}
		return PolicyStatusResult{User: user, Standing: x, Kicks: nonNil(kicks)}, nil
	case "policy-notices":
		if err := a.known("user", "kind", "limit", "cursor"); err != nil {
			return nil, err
		}
		var q ledger.PolicyNoticeQuery
		var e [4]error
		q.User, e[0] = a.str("user", 256)
		q.Kind, e[1] = a.str("kind", 32)
		q.Limit, e[2] = a.int("limit")
		q.Cursor, e[3] = a.str("cursor", 256)
		if err := first(e[:]...); err != nil {
			return nil, err
		}
		p, err := st.PolicyNotices(ctx, q)
		if err != nil {
			return nil, err
		}
		return NoticesResult{Notices: nonNil(p.Items), NextCursor: p.NextCursor}, nil
	}
	return nil, ledger.Errorf(ledger.ECodeNotFound, "unknown action %s", action)
}

// Limits is where a user of a usage answer stands against their policy:
// what ctl usage adds to each row.
type Limits struct {
	Allowed        bool       `json:"allowed"`
	Reason         string     `json:"reason,omitempty"`
	QuotaLimit     int64      `json:"quota_limit,omitempty"`
	QuotaUsed      int64      `json:"quota_used,omitempty"`
	QuotaRemaining *int64     `json:"quota_remaining,omitempty"`
	QuotaPeriod    string     `json:"quota_period,omitempty"`
	QuotaResets    *time.Time `json:"quota_resets,omitempty"` // the period's end
	Expires        *time.Time `json:"expires,omitempty"`
	TimeRemaining  *int64     `json:"time_remaining_s,omitempty"`
	MaxSessions    int        `json:"max_sessions,omitempty"`
}

// limitsOf adds the standing of the usage rows' users.
func (s *Service) limitsOf(ctx context.Context, rows []ledger.UsageRow) (map[string]Limits, error) {
	set := map[string]bool{}
	for _, r := range rows {
		set[r.Username] = true
	}
	users := make([]string, 0, len(set))
	for u := range set {
		if policy.ValidName(u) == nil {
			users = append(users, u)
		}
	}
	sort.Strings(users)
	m, err := engine.Explain(ctx, s.o.Store, users, s.now())
	if err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, nil
	}
	out := map[string]Limits{}
	for u, x := range m {
		l := Limits{Allowed: x.Verdict.Allowed, Reason: x.Verdict.Reason}
		if q := x.QuotaUsage; q != nil {
			rem := q.Remaining
			l.QuotaLimit, l.QuotaUsed, l.QuotaRemaining, l.QuotaPeriod = q.Limit, q.Used, &rem, q.Period
			if !q.WindowEnd.IsZero() {
				end := q.WindowEnd
				l.QuotaResets = &end
			}
		}
		if t := x.TimeUsage; t != nil {
			rem := t.Remaining
			l.TimeRemaining = &rem
		}
		if !x.Expires.IsZero() {
			exp := x.Expires
			l.Expires = &exp
		}
		if x.Sessions != nil {
			l.MaxSessions = x.Sessions.Max
		}
		out[u] = l
	}
	return out, nil
}
