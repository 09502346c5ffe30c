package engine

import (
	"context"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
)

// Standing is where one user stands: their effective policy and where it
// came from, the verdict it gives now, the quota and time used and left,
// the expiry, the sessions open. ctl usage, ctl policy get and the console
// show it.
type Standing struct {
	User     string               `json:"user"`
	Group    string               `json:"group,omitempty"`
	Quota    *policy.Quota        `json:"quota,omitempty"`
	Expiry   *policy.Expiry       `json:"expiry,omitempty"`
	Sessions *policy.SessionLimit `json:"sessions,omitempty"`
	Time     *policy.TimeLimit    `json:"time,omitempty"`
	// From says, per kind, whether the user's own policy or their
	// group's set it.
	From map[string]policy.Scope `json:"from,omitempty"`

	Verdict    policy.Verdict      `json:"verdict"`
	QuotaUsage *policy.QuotaStatus `json:"quota_usage,omitempty"`
	TimeUsage  *policy.QuotaStatus `json:"time_usage,omitempty"`
	Expires    time.Time           `json:"expires,omitzero"`
	Open       int                 `json:"open_sessions"`
}

// Explain evaluates users (never nil) without acting: no publish, no
// command, no notice. Users without any policy are left out.
func Explain(ctx context.Context, st ledger.PolicyStore, users []string, now time.Time) (map[string]Standing, error) {
	out := map[string]Standing{}
	if len(users) == 0 {
		return out, nil
	}
	pols, err := loadPolicies(ctx, st)
	if err != nil {
		return nil, err
	}
	return explainWith(ctx, st, pols, users, now)
}

// explainWith is Explain with the policies already read (at least the
// users' own and their groups').
func explainWith(ctx context.Context, st ledger.PolicyStore, pols *policies, users []string, now time.Time) (map[string]Standing, error) {
	out := map[string]Standing{}
	facts, err := Gather(ctx, st, pols, users, now)
	if err != nil {
		return nil, err
	}
	for u, f := range facts {
		ev := policy.Evaluate(&f.Effective, f.Inputs, now)
		e := f.Effective
		out[u] = Standing{User: u, Group: e.Group, Quota: e.Quota, Expiry: e.Expiry, Sessions: e.Sessions, Time: e.Time, From: e.From,
			Verdict: ev.Verdict, QuotaUsage: ev.Quota, TimeUsage: ev.Time, Expires: ev.Expires, Open: len(f.Inputs.Open)}
	}
	return out, nil
}
