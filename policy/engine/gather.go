package engine

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
)

// policies is every policy, by scope, as of a revision.
type policies struct {
	rev    int64
	users  map[string]*policy.Policy
	groups map[string]*policy.Policy
}

// loadPolicies reads every policy, page by page.
func loadPolicies(ctx context.Context, st ledger.PolicyStore) (*policies, error) {
	rev, err := st.PolicyRevision(ctx)
	if err != nil {
		return nil, err
	}
	p := &policies{rev: rev, users: map[string]*policy.Policy{}, groups: map[string]*policy.Policy{}}
	cursor := ""
	for {
		page, err := st.Policies(ctx, ledger.PolicyQuery{Limit: ledger.MaxLimit, Cursor: cursor})
		if err != nil {
			return nil, err
		}
		for i := range page.Items {
			x := &page.Items[i]
			if x.Scope == policy.ScopeUser {
				p.users[x.Name] = x
			} else {
				p.groups[x.Name] = x
			}
		}
		if cursor = page.NextCursor; cursor == "" {
			return p, nil
		}
	}
}

// UserFacts is what the engine knows about one user with an effective
// policy: the policy, the inputs of its evaluation, and the resets and
// refused logins behind its notices.
type UserFacts struct {
	Effective policy.Effective
	Inputs    policy.Inputs
	Resets    policy.Resets
	Refused   []ledger.RefusedLogin
}

// Gather reads the facts about users (nil: every user with a policy) at
// now, in a handful of set-based queries whatever the number of users.
// Users without an effective policy are left out.
func Gather(ctx context.Context, st ledger.PolicyStore, pols *policies, users []string, now time.Time) (map[string]*UserFacts, error) {
	var rows []ledger.PolicyUser
	var err error
	if users == nil {
		rows, err = st.PolicyUsers(ctx, nil)
	} else if len(users) > 0 {
		rows, err = st.PolicyUsers(ctx, users)
	}
	if err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	known := make(map[string]ledger.PolicyUser, len(rows))
	for _, r := range rows {
		known[r.Username] = r
	}
	// Users with a policy of their own count even before the ledger
	// has seen them connect.
	names := users
	if users == nil {
		names = make([]string, 0, len(known)+len(pols.users))
		for u := range known {
			names = append(names, u)
		}
		for u := range pols.users {
			if _, ok := known[u]; !ok {
				names = append(names, u)
			}
		}
	}
	out := map[string]*UserFacts{}
	for _, u := range names {
		r := known[u]
		e := policy.Merge(u, r.Groupname, pols.users[u], pols.groups[r.Groupname])
		if !e.Limited() {
			continue
		}
		out[u] = &UserFacts{Effective: e, Inputs: policy.Inputs{FirstUse: r.FirstUse}}
	}
	if len(out) == 0 {
		return out, nil
	}
	// One filter list for the queries: all users (nil) on a sweep.
	var filter []string
	if users != nil {
		filter = make([]string, 0, len(out))
		for u := range out {
			filter = append(filter, u)
		}
		slices.Sort(filter)
	}
	resets, err := st.Resets(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("read resets: %w", err)
	}
	// Usage: lifetime windows in one sum; dated ones from one read per
	// user and day since the earliest window start, summed per window.
	windows := map[string][2]time.Time{} // user → quota's and time's window start
	var lifetime, dated []string
	var earliest time.Time
	for u, f := range out {
		var w [2]time.Time
		life, date := false, false
		for i, per := range []*policy.Period{periodOf(f.Effective.Quota), timePeriodOf(f.Effective.Time)} {
			if per == nil {
				continue
			}
			w[i], _ = per.Window(now)
			if w[i].IsZero() {
				life = true
				continue
			}
			date = true
			if earliest.IsZero() || w[i].Before(earliest) {
				earliest = w[i]
			}
		}
		windows[u] = w
		if life {
			lifetime = append(lifetime, u)
		}
		if date {
			dated = append(dated, u)
		}
	}
	var whole map[string]policy.Usage
	if len(lifetime) > 0 {
		if whole, err = st.UsageSince(ctx, time.Time{}, listOrNil(filter, lifetime)); err != nil {
			return nil, fmt.Errorf("read usage: %w", err)
		}
	}
	var days map[string][]ledger.DayUsage
	if len(dated) > 0 {
		if days, err = st.UsageDays(ctx, earliest, listOrNil(filter, dated)); err != nil {
			return nil, fmt.Errorf("read usage: %w", err)
		}
	}
	sum := func(u string, start time.Time) policy.Usage {
		if start.IsZero() {
			return whole[u]
		}
		var t policy.Usage
		for _, d := range days[u] {
			if !d.Day.Before(start) {
				t.In, t.Out, t.Seconds = t.In+d.Usage.In, t.Out+d.Usage.Out, t.Seconds+d.Usage.Seconds
			}
		}
		return t
	}
	for u, f := range out {
		w := windows[u]
		if f.Effective.Quota != nil {
			f.Inputs.QuotaUsed, f.Resets.Quota = afterReset(sum(u, w[0]), resets[u], policy.KindQuota, w[0])
		}
		if f.Effective.Time != nil {
			f.Inputs.TimeUsed, f.Resets.Time = afterReset(sum(u, w[1]), resets[u], policy.KindTime, w[1])
		}
	}
	open, err := st.OpenSessions(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("read open sessions: %w", err)
	}
	var limited []string
	for u, f := range out {
		f.Inputs.Open = open[u]
		if f.Effective.Sessions != nil {
			limited = append(limited, u)
		}
	}
	if len(limited) > 0 {
		if filter == nil {
			limited = nil
		}
		refused, err := st.RefusedSince(ctx, now.Add(-refusalLookback), limited)
		if err != nil {
			return nil, fmt.Errorf("read refused logins: %w", err)
		}
		for u, r := range refused {
			if f := out[u]; f != nil && f.Effective.Sessions != nil {
				f.Refused = r
			}
		}
	}
	return out, nil
}

// refusalLookback is how far back session-limit refusals are looked for
// (each is noticed once; the window only bounds the query).
const refusalLookback = time.Hour

// afterReset takes a reset's baseline off usage counted in the window
// that starts at start, when the reset was made in that same window.
func afterReset(used policy.Usage, rs []ledger.UsageReset, kind string, start time.Time) (policy.Usage, time.Time) {
	for _, r := range rs {
		if r.Kind == kind && r.WindowStart.Equal(start) {
			return used.Minus(r.Base), r.At
		}
	}
	return used, time.Time{}
}

func periodOf(q *policy.Quota) *policy.Period {
	if q == nil {
		return nil
	}
	return &q.Period
}

func timePeriodOf(t *policy.TimeLimit) *policy.Period {
	if t == nil {
		return nil
	}
	return &t.Period
}

// listOrNil is nil on a sweep (every user: no filter), else the sorted
// list.
func listOrNil(filter, list []string) []string {
	if filter == nil {
		return nil
	}
	slices.Sort(list)
	return list
}
