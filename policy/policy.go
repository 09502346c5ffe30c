// Package policy owns the fleet's per-user limits: the model of a policy
// (traffic quota, account expiry, concurrent sessions, connected time, set
// per user or per group), how a user's own policy and their group's merge,
// the periods usage is counted over, and the verdict the ledger decides for
// each user from fleet-wide usage (Evaluate). It is pure: no database, no
// NATS, no files, so the same rules run in the ledger, in ctl and in tests.
//
// The ledger stores policies and evaluates them (package ledger's
// PolicyStore, package policy/engine); hosts enforce the published
// verdicts locally (package policy/mirror, read by the hook). docs/policy.md
// is the reference.
package policy

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Scope says whom a policy applies to.
type Scope string

// Scopes. A user's own policy overrides their group's, kind by kind.
const (
	ScopeUser  Scope = "user"
	ScopeGroup Scope = "group"
)

// ParseScope checks a scope name.
func ParseScope(s string) (Scope, error) {
	switch Scope(s) {
	case ScopeUser, ScopeGroup:
		return Scope(s), nil
	}
	return "", fmt.Errorf("scope %q is not user or group", s)
}

// Kinds of limit, also the names ctl and the API use.
const (
	KindQuota    = "quota"
	KindExpiry   = "expiry"
	KindSessions = "sessions"
	KindTime     = "time"
)

// Kinds lists every kind in the order they are shown.
var Kinds = []string{KindQuota, KindExpiry, KindSessions, KindTime}

// Policy is the limits set on one user or one group. Every kind is
// optional: a kind a user's policy leaves unset comes from their group's
// policy; a kind set with Off is an explicit "no limit of this kind" that
// overrides the group's.
type Policy struct {
	Scope    Scope         `json:"scope"`
	Name     string        `json:"name"`
	Quota    *Quota        `json:"quota,omitempty"`
	Expiry   *Expiry       `json:"expiry,omitempty"`
	Sessions *SessionLimit `json:"sessions,omitempty"`
	Time     *TimeLimit    `json:"time,omitempty"`

	// Set by the store on every change.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	UpdatedBy string    `json:"updated_by,omitempty"` // the key (name) that set it
}

// Empty reports whether the policy sets no kind at all.
func (p *Policy) Empty() bool {
	return p.Quota == nil && p.Expiry == nil && p.Sessions == nil && p.Time == nil
}

// Directions of a traffic quota. "in" is traffic from the client (upload),
// as in the ledger's bytes_in.
const (
	DirTotal = "total"
	DirIn    = "in"
	DirOut   = "out"
)

// Quota is a traffic limit per period.
type Quota struct {
	Off       bool   `json:"off,omitempty"`
	Bytes     int64  `json:"bytes,omitempty"`
	Direction string `json:"direction,omitempty"` // total (default), in, out
	Period    Period `json:"period,omitzero"`
}

// Expiry ends an account at an instant, or a number of days after its
// first connect.
type Expiry struct {
	Off bool `json:"off,omitempty"`
	// At is the instant the account stops working.
	At time.Time `json:"at,omitzero"`
	// Days after the user's first connect seen by the ledger.
	DaysAfterFirstUse int `json:"days_after_first_use,omitempty"`
	// WarnDays is when the "expires soon" notice goes out (default
	// DefaultWarnDays; -1: never).
	WarnDays int `json:"warn_days,omitempty"`
}

// DefaultWarnDays is the default lead time of the expiry notice.
const DefaultWarnDays = 7

// What happens to a login past the concurrent-session limit.
const (
	// ExcessRefuse refuses the new login.
	ExcessRefuse = "refuse"
	// ExcessNewest admits the new login and ends the oldest session
	// (newest wins).
	ExcessNewest = "newest"
)

// SessionLimit bounds the user's sessions across the fleet. A session is
// a logical one: the workers one session cookie runs on when the client
// roams count once.
type SessionLimit struct {
	Off      bool   `json:"off,omitempty"`
	Max      int    `json:"max,omitempty"`
	OnExcess string `json:"on_excess,omitempty"` // refuse (default) or newest
}

// TimeLimit is a connected-time limit per period.
type TimeLimit struct {
	Off     bool   `json:"off,omitempty"`
	Seconds int64  `json:"seconds,omitempty"`
	Period  Period `json:"period,omitzero"`
}

// Limits of the model, so that every value fits every database and every
// sum stays far from overflow.
const (
	MaxNameLen  = 64
	MaxBytes    = 1 << 60 // an exbibyte
	MaxSeconds  = 100 * 365 * 24 * 3600
	MaxSessions = 10000
	MaxDays     = 100 * 366
)

// ValidName checks a user or group name: 1 to 64 letters, digits and
// . _ @ + -, not starting with '-' or '.', no "..". It is the command
// service's rule for user names, so every user a policy names can also be
// kicked and disconnected by name.
func ValidName(s string) error {
	if s == "" || len(s) > MaxNameLen {
		return fmt.Errorf("must be 1 to %d characters", MaxNameLen)
	}
	if s[0] == '-' || s[0] == '.' || strings.Contains(s, "..") {
		return errors.New(`must not start with '-' or '.' or contain ".."`)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._@+-", r)) {
			if r < 0x20 || r == 0x7f || r == utf8.RuneError {
				return fmt.Errorf("control or invalid character %U is not allowed (letters, digits and . _ @ + - only)", r)
			}
			return fmt.Errorf("%q is not allowed (letters, digits and . _ @ + - only)", r)
		}
	}
	return nil
}

// ValidUser checks a user name as ocserv hands it to the hook, for a
// verdict's key and its mirror file: 1 to 64 bytes (ocserv's limit) of
// valid UTF-8 without control characters. It is wider than ValidName on
// purpose: a group's policy applies to every member, also one whose name
// the command service cannot take ("jörg", "john smith"), and the hook
// must still refuse them at login. Key and file name are the name's hex,
// so no character of it reaches a subject or a path.
func ValidUser(s string) error {
	if s == "" || len(s) > MaxNameLen {
		return fmt.Errorf("must be 1 to %d bytes", MaxNameLen)
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("control character %U is not allowed", r)
		}
	}
	return nil
}

// Validate checks a whole policy; the error names the field.
func (p *Policy) Validate() error {
	if _, err := ParseScope(string(p.Scope)); err != nil {
		return err
	}
	if err := ValidName(p.Name); err != nil {
		return fmt.Errorf("%s name: %w", p.Scope, err)
	}
	if q := p.Quota; q != nil && !q.Off {
		if q.Bytes <= 0 || q.Bytes > MaxBytes {
			return fmt.Errorf("quota: bytes must be 1 to %d", int64(MaxBytes))
		}
		switch q.Direction {
		case DirTotal, DirIn, DirOut:
		default:
			return fmt.Errorf("quota: direction %q is not total, in or out", q.Direction)
		}
		if err := q.Period.Validate(); err != nil {
			return fmt.Errorf("quota: %w", err)
		}
	}
	if e := p.Expiry; e != nil && !e.Off {
		if e.At.IsZero() == (e.DaysAfterFirstUse == 0) {
			return errors.New("expiry: give exactly one of a date (at) or a number of days after the first connect")
		}
		if e.DaysAfterFirstUse < 0 || e.DaysAfterFirstUse > MaxDays {
			return fmt.Errorf("expiry: days after first use must be 1 to %d", MaxDays)
		}
		if !e.At.IsZero() && (e.At.Year() < 2000 || e.At.Year() > 9999) {
			return fmt.Errorf("expiry: %s is not a plausible date", e.At.Format(time.RFC3339))
		}
		if e.WarnDays < -1 || e.WarnDays > 366 {
			return errors.New("expiry: warn days must be -1 (never) to 366")
		}
	}
	if s := p.Sessions; s != nil && !s.Off {
		if s.Max < 1 || s.Max > MaxSessions {
			return fmt.Errorf("sessions: max must be 1 to %d", MaxSessions)
		}
		switch s.OnExcess {
		case ExcessRefuse, ExcessNewest:
		default:
			return fmt.Errorf("sessions: on_excess %q is not refuse or newest", s.OnExcess)
		}
	}
	if t := p.Time; t != nil && !t.Off {
		if t.Seconds <= 0 || t.Seconds > MaxSeconds {
			return fmt.Errorf("time: seconds must be 1 to %d", MaxSeconds)
		}
		if err := t.Period.Validate(); err != nil {
			return fmt.Errorf("time: %w", err)
		}
	}
	return nil
}

// Effective is what applies to one user: their own policy's kinds, and
// their group's for the kinds their own does not set. A nil kind is no
// limit. From says where each kind came from (for ctl and the console).
type Effective struct {
	User     string
	Group    string
	Quota    *Quota
	Expiry   *Expiry
	Sessions *SessionLimit
	Time     *TimeLimit
	From     map[string]Scope
}

// Limited reports whether any kind applies.
func (e *Effective) Limited() bool {
	return e.Quota != nil || e.Expiry != nil || e.Sessions != nil || e.Time != nil
}

// Merge makes the effective policy of user (whose group is group) from
// their own policy u and their group's g; either may be nil.
func Merge(user, group string, u, g *Policy) Effective {
	e := Effective{User: user, Group: group, From: map[string]Scope{}}
	pick := func(own, grp bool) Scope {
		switch {
		case own:
			return ScopeUser
		case grp:
			return ScopeGroup
		}
		return ""
	}
	var uq, gq *Quota
	var ue, ge *Expiry
	var us, gs *SessionLimit
	var ut, gt *TimeLimit
	if u != nil {
		uq, ue, us, ut = u.Quota, u.Expiry, u.Sessions, u.Time
	}
	if g != nil {
		gq, ge, gs, gt = g.Quota, g.Expiry, g.Sessions, g.Time
	}
	if s := pick(uq != nil, gq != nil); s != "" {
		e.From[KindQuota] = s
		if q := first(uq, gq); !q.Off {
			e.Quota = q
		}
	}
	if s := pick(ue != nil, ge != nil); s != "" {
		e.From[KindExpiry] = s
		if x := first(ue, ge); !x.Off {
			e.Expiry = x
		}
	}
	if s := pick(us != nil, gs != nil); s != "" {
		e.From[KindSessions] = s
		if x := first(us, gs); !x.Off {
			e.Sessions = x
		}
	}
	if s := pick(ut != nil, gt != nil); s != "" {
		e.From[KindTime] = s
		if x := first(ut, gt); !x.Off {
			e.Time = x
		}
	}
	return e
}

func first[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}
