package ledger

import (
	"context"
	"encoding/base64"
	"strings"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
)

// PolicyStore keeps the fleet's policies and the policy engine's state in
// the ledger's database (docs/policy.md): the policies themselves, the
// users' groups and first use, quota resets, the last verdict decided per
// user, the notices sent (and their webhook delivery), and the kicks the
// engine put on hosts. Package policy owns the model; this is its storage.
// Exported methods own their transaction.
type PolicyStore interface {
	// PutPolicy stores p, replacing the policy of its scope and name, and
	// sets its UpdatedAt to now. A policy that sets no kind is deleted.
	PutPolicy(ctx context.Context, p policy.Policy, now time.Time) error
	// DeletePolicy removes a policy; false when there was none.
	DeletePolicy(ctx context.Context, scope policy.Scope, name string) (bool, error)
	// Policy is one policy (ECodeNotFound when there is none).
	Policy(ctx context.Context, scope policy.Scope, name string) (policy.Policy, error)
	// Policies lists policies in (scope, name) order, paged.
	Policies(ctx context.Context, q PolicyQuery) (Page[policy.Policy], error)
	// PolicyRevision counts changes to the policies and resets: the
	// engine reloads when it moves (any ledger instance may take a
	// change, only the active one evaluates).
	PolicyRevision(ctx context.Context) (int64, error)

	// RefreshPolicyUsers brings the users' rows (group, first use) up to
	// date from their sessions; nil means every user. A user's group is
	// the group of their latest admitted session; the first use never
	// moves later, even when retention deletes the sessions it came from.
	RefreshPolicyUsers(ctx context.Context, users []string) error
	// PolicyUsers returns those users' rows (nil: every user).
	PolicyUsers(ctx context.Context, users []string) ([]PolicyUser, error)
	// GroupMembers lists the users whose group is one of groups.
	GroupMembers(ctx context.Context, groups []string) ([]string, error)

	// UsageSince sums each user's usage from the UTC day of from
	// (inclusive; zero: every day kept) to now, across servers; nil users
	// means every user.
	UsageSince(ctx context.Context, from time.Time, users []string) (map[string]policy.Usage, error)
	// UsageDays is each user's usage per UTC day from the day of from on
	// (across servers), oldest first; nil users means every user. The
	// engine sums it over each user's own window: one read for users
	// whose periods start on different days.
	UsageDays(ctx context.Context, from time.Time, users []string) (map[string][]DayUsage, error)
	// OpenSessions lists the open sessions of those users (nil: all).
	OpenSessions(ctx context.Context, users []string) (map[string][]policy.OpenSession, error)
	// RefusedSince lists logins the hooks refused for the session limit
	// since t, per user (for the session-limit notice).
	RefusedSince(ctx context.Context, t time.Time, users []string) (map[string][]RefusedLogin, error)

	// ResetUsage records a reset of a user's quota or time usage: the
	// usage counted from r.WindowStart's day until now becomes the
	// baseline that later evaluations in that window take off. The
	// baseline is read in the same transaction that records it.
	ResetUsage(ctx context.Context, r UsageReset) (UsageReset, error)
	// Resets returns each user's latest reset per kind (nil: all users).
	Resets(ctx context.Context, users []string) (map[string][]UsageReset, error)

	// SaveVerdicts stores the engine's latest verdicts (replacing each
	// user's); Delete lists users whose verdict is now the default.
	SaveVerdicts(ctx context.Context, save []policy.Verdict, del []string) error
	// Verdicts returns every stored verdict, by user.
	Verdicts(ctx context.Context) (map[string]policy.Verdict, error)

	// AddPolicyNotices inserts notices whose id is new and returns those
	// (a notice already recorded is never sent again).
	AddPolicyNotices(ctx context.Context, ns []policy.Notice, webhook bool) ([]policy.Notice, error)
	// PendingPolicyNotices returns notices not yet delivered to the
	// webhook whose next attempt is due at now, oldest first.
	PendingPolicyNotices(ctx context.Context, now time.Time, limit int) ([]policy.Notice, error)
	// MarkPolicyNotice records a webhook delivery attempt: delivered, or
	// failed with err and retried at next (zero next: given up).
	MarkPolicyNotice(ctx context.Context, id string, delivered bool, errMsg string, next time.Time) error
	// PolicyNotices lists recorded notices, newest first.
	PolicyNotices(ctx context.Context, q PolicyNoticeQuery) (Page[PolicyNoticeRow], error)

	// PutPolicyKick records that the engine kicked user on server (until
	// it is lifted); DeletePolicyKick forgets it; PolicyKicks lists them.
	PutPolicyKick(ctx context.Context, k PolicyKick) error
	DeletePolicyKick(ctx context.Context, user, server string) error
	PolicyKicks(ctx context.Context, user string) ([]PolicyKick, error)
}

// DayUsage is one user's usage on one UTC day, across servers.
type DayUsage struct {
	Day   time.Time // 00:00 UTC
	Usage policy.Usage
}

// PolicyQuery filters policies; every field is optional.
type PolicyQuery struct {
	Scope  policy.Scope
	Name   string // exact
	Limit  int    // 1..MaxLimit; 0 means DefaultLimit
	Cursor string
}

// PolicyUser is what the engine knows of a user apart from usage.
type PolicyUser struct {
	Username    string    `json:"username"`
	Groupname   string    `json:"groupname,omitempty"`
	FirstUse    time.Time `json:"first_use,omitzero"`
	LastConnect time.Time `json:"last_connect,omitzero"`
}

// RefusedLogin is a login a hook refused.
type RefusedLogin struct {
	SessionUID string    `json:"session_uid"`
	ServerID   string    `json:"server_id"`
	At         time.Time `json:"at"`
	Reason     string    `json:"reason"`
}

// UsageReset is a reset of one kind of usage (policy.KindQuota or
// policy.KindTime) for one user, in the window starting at WindowStart
// (zero for a lifetime period).
type UsageReset struct {
	Username    string       `json:"username"`
	Kind        string       `json:"kind"`
	WindowStart time.Time    `json:"window_start,omitzero"`
	At          time.Time    `json:"at"`
	By          string       `json:"by,omitempty"`
	Base        policy.Usage `json:"base"`
}

// PolicyKick is a kick the engine put on a server, to be lifted when the
// user's verdict allows them again.
type PolicyKick struct {
	Username string    `json:"username"`
	ServerID string    `json:"server_id"`
	At       time.Time `json:"at"`
	Reason   string    `json:"reason"`
}

// PolicyNoticeQuery filters recorded notices, newest first.
type PolicyNoticeQuery struct {
	User   string
	Kind   string
	Limit  int
	Cursor string
}

// PolicyNoticeRow is a recorded notice and its webhook delivery.
type PolicyNoticeRow struct {
	Notice      policy.Notice `json:"notice"`
	Webhook     string        `json:"webhook"` // none | pending | delivered | failed
	Attempts    int           `json:"attempts"`
	LastError   string        `json:"last_error,omitempty"`
	DeliveredAt time.Time     `json:"delivered_at,omitzero"`
}

// Webhook delivery states of a notice.
const (
	WebhookNone      = "none"
	WebhookPending   = "pending"
	WebhookDelivered = "delivered"
	WebhookFailed    = "failed"
)

// Check validates q and fills its defaults; engines call it first.
func (q *PolicyQuery) Check() error {
	var err error
	if q.Limit, err = limit(q.Limit); err != nil {
		return err
	}
	if q.Scope != "" {
		if _, err := policy.ParseScope(string(q.Scope)); err != nil {
			return Errorf(ECodeInvalid, "scope: %v", err)
		}
	}
	if q.Cursor != "" {
		if _, _, err := DecodeNameCursor(q.Cursor); err != nil {
			return err
		}
	}
	return nil
}

// Check validates q and fills its defaults.
func (q *PolicyNoticeQuery) Check() error {
	var err error
	if q.Limit, err = limit(q.Limit); err != nil {
		return err
	}
	if q.Cursor != "" {
		if _, err := DecodeCursor(q.Cursor); err != nil {
			return err
		}
	}
	return nil
}

// EncodeNameCursor is the keyset position of a policy listing: the last
// row's scope and name.
func EncodeNameCursor(scope, name string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(scope + "\x00" + name))
}

// DecodeNameCursor reads a cursor made by EncodeNameCursor.
func DecodeNameCursor(s string) (scope, name string, err error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return "", "", Errorf(ECodeInvalid, "cursor: not a cursor from a previous page")
	}
	scope, name, ok := strings.Cut(string(b), "\x00")
	if !ok {
		return "", "", Errorf(ECodeInvalid, "cursor: not a cursor from a previous page")
	}
	return scope, name, nil
}
