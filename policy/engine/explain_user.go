package engine

import (
	"context"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
)

// ExplainUser is Explain for one user, reading only the two policies that
// can apply to them (their own and their group's) instead of every
// policy: what a page about one user (the console's user page) needs, at
// a cost that does not grow with the number of policies in the fleet. The
// second result is false when no policy applies to the user.
func ExplainUser(ctx context.Context, st ledger.PolicyStore, user string, now time.Time) (Standing, bool, error) {
	rows, err := st.PolicyUsers(ctx, []string{user})
	if err != nil {
		return Standing{}, false, err
	}
	pols := &policies{users: map[string]*policy.Policy{}, groups: map[string]*policy.Policy{}}
	one := func(scope policy.Scope, name string, into map[string]*policy.Policy) error {
		p, err := st.Policy(ctx, scope, name)
		switch {
		case err == nil:
			into[name] = &p
		case ledger.ErrorCode(err) != ledger.ECodeNotFound:
			return err
		}
		return nil
	}
	if err := one(policy.ScopeUser, user, pols.users); err != nil {
		return Standing{}, false, err
	}
	for _, r := range rows {
		if r.Username == user && r.Groupname != "" {
			if err := one(policy.ScopeGroup, r.Groupname, pols.groups); err != nil {
				return Standing{}, false, err
			}
		}
	}
	m, err := explainWith(ctx, st, pols, []string{user}, now)
	if err != nil {
		return Standing{}, false, err
	}
	x, ok := m[user]
	return x, ok, nil
}
