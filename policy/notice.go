package policy

import (
	"fmt"
	"strconv"
	"time"
)

// Notice kinds (docs/policy.md, Notices).
const (
	NoticeQuota        = "quota"         // a traffic quota reached Percent (80, 100)
	NoticeTime         = "time"          // a connected-time limit reached Percent
	NoticeExpirySoon   = "expiry_soon"   // the account expires within its warn days
	NoticeExpired      = "expired"       // the account expired
	NoticeSessionLimit = "session_limit" // a login was refused, or a session ended, for the session limit
)

// QuotaThresholds are the percentages of a quota or time limit that send
// a notice.
var QuotaThresholds = []int{80, 100}

// Notice is one thing worth telling a user's operator (or the user, through
// a chat bridge on the webhook). Key names what the notice is about so
// that the same fact is never noticed twice: the engine makes the notice's
// id from it.
type Notice struct {
	ID      string    `json:"notice_id"`
	Kind    string    `json:"kind"`
	User    string    `json:"user"`
	Time    time.Time `json:"time"`
	Message string    `json:"message"`

	Percent     int        `json:"percent,omitempty"`
	Used        int64      `json:"used,omitempty"`
	Limit       int64      `json:"limit,omitempty"`
	Direction   string     `json:"direction,omitempty"`
	Period      string     `json:"period,omitempty"`
	WindowStart *time.Time `json:"window_start,omitempty"`
	WindowEnd   *time.Time `json:"window_end,omitempty"`
	Expires     *time.Time `json:"expires,omitempty"`

	// Session limit: the limit, what happened and to which session.
	Max        int    `json:"max,omitempty"`
	OnExcess   string `json:"on_excess,omitempty"`
	Action     string `json:"action,omitempty"` // refused | ended
	ServerID   string `json:"server_id,omitempty"`
	SessionUID string `json:"session_uid,omitempty"`

	Key string `json:"-"`
}

// Resets are the instants a user's quota or time usage was last reset in
// the current window (zero: none); they make a threshold reached again
// after a reset a new fact.
type Resets struct {
	Quota time.Time
	Time  time.Time
}

// Notices lists the notices the evaluation calls for at now: every
// threshold currently reached, the expiry warning when within its days,
// the expiry itself. The engine keeps the ones whose key it has not sent
// yet, so calling this on every evaluation is how thresholds are detected.
func Notices(e *Effective, ev *Evaluation, r Resets, now time.Time) []Notice {
	var out []Notice
	add := func(n Notice) {
		n.User, n.Time = e.User, now.UTC()
		out = append(out, n)
	}
	limitNotices := func(kind string, q *QuotaStatus, reset time.Time, what func(int64) string) {
		if q == nil {
			return
		}
		for _, pct := range QuotaThresholds {
			if !Reached(q.Used, q.Limit, pct) {
				continue
			}
			n := Notice{Kind: kind, Percent: pct, Used: q.Used, Limit: q.Limit, Direction: q.Direction, Period: q.Period,
				WindowStart: timePtr(q.WindowStart), WindowEnd: timePtr(q.WindowEnd),
				Message: fmt.Sprintf("%s has used %d%% of their %s %s limit (%s of %s)", e.User, pct, q.Period, kind, what(q.Used), what(q.Limit)),
				Key:     key(kind, e.User, stamp(q.WindowStart), stamp(reset), strconv.FormatInt(q.Limit, 10), strconv.Itoa(pct))}
			add(n)
		}
	}
	limitNotices(NoticeQuota, ev.Quota, r.Quota, FormatBytes)
	limitNotices(NoticeTime, ev.Time, r.Time, FormatDuration)
	if x := e.Expiry; x != nil && !ev.Expires.IsZero() {
		exp := ev.Expires
		w := x.WarnDays
		if w == 0 {
			w = DefaultWarnDays
		}
		switch {
		case !now.Before(exp):
			add(Notice{Kind: NoticeExpired, Expires: &exp, Message: fmt.Sprintf("%s's account expired on %s", e.User, exp.Format(time.RFC3339)),
				Key: key(NoticeExpired, e.User, stamp(exp))})
		case w > 0 && !now.Before(exp.AddDate(0, 0, -w)):
			days := int(exp.Sub(now).Hours()/24) + 1
			add(Notice{Kind: NoticeExpirySoon, Expires: &exp,
				Message: fmt.Sprintf("%s's account expires on %s (in %d day(s))", e.User, exp.Format(time.RFC3339), days),
				Key:     key(NoticeExpirySoon, e.User, stamp(exp))})
		}
	}
	return out
}

// SessionLimitNotice is the notice of a login refused (action "refused")
// or a session ended ("ended") for the session limit; sessionUID is the
// refused or ended session, so each is noticed once.
func SessionLimitNotice(user string, s *SessionLimit, action, server, sessionUID string, now time.Time) Notice {
	verb := "a new login was refused"
	if action == "ended" {
		verb = "the oldest session was ended"
	}
	return Notice{Kind: NoticeSessionLimit, User: user, Time: now.UTC(), Max: s.Max, OnExcess: s.OnExcess, Action: action,
		ServerID: server, SessionUID: sessionUID,
		Message: fmt.Sprintf("%s reached their limit of %d session(s): %s on %s", user, s.Max, verb, server),
		Key:     key(NoticeSessionLimit, user, action, sessionUID)}
}

func key(parts ...string) string {
	b := make([]byte, 0, 96)
	for i, p := range parts {
		if i > 0 {
			b = append(b, '|')
		}
		b = append(b, p...)
	}
	return string(b)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
