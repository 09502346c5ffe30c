package ledger

import (
	"sort"
	"time"

	"github.com/google/uuid"
)

// HistoryQuery filters sessions; every field is optional. Sessions
// overlapping [From, To) are returned newest connect first.
type HistoryQuery struct {
	User       string
	Server     string
	IP         string // real or VPN address (v4 or v6)
	LogicalUID string
	From, To   time.Time
	OpenOnly   bool
	Limit      int    // 1..MaxLimit; 0 means DefaultLimit
	Cursor     string // from a previous page
}

// WhoQuery asks who held a VPN address, or came from a real address, at
// an instant, across the fleet.
type WhoQuery struct {
	IP   string
	At   time.Time
	Kind string // WhoAny, WhoVPN, WhoReal
}

// Who kinds.
const (
	WhoAny  = "any"
	WhoVPN  = "vpn"
	WhoReal = "real"
)

// UsageQuery sums usage_daily over days [From, To) (UTC dates).
type UsageQuery struct {
	From, To  time.Time // whole days; To exclusive
	By        string    // ByDay, ByMonth, ByRange
	User      string
	Server    string
	PerServer bool
	Top       int // 0: all users; else the Top largest by bytes in+out
	// MaxRows, when set, is the most rows the answer may hold: past it
	// the engine stops reading and refuses with ECodeTooLarge, so a
	// question over every user, day and server of the retention cannot
	// take the ledger's memory (the query service sets it from what one
	// NATS message holds).
	MaxRows int
}

// Over refuses an answer that grew past q.MaxRows (engines call it as
// they read rows).
func (q *UsageQuery) Over(rows int) error {
	if q.MaxRows > 0 && rows > q.MaxRows {
		return Errorf(ECodeTooLarge, "usage: more than %d rows; ask a narrower question (a user, a server, top, a shorter range or by range or month)", q.MaxRows)
	}
	return nil
}

// Usage groupings.
const (
	ByDay   = "day"
	ByMonth = "month"
	ByRange = "range"
)

// AuditQuery filters audit entries, newest first.
type AuditQuery struct {
	Server   string
	Action   string
	Key      string // public key or key name
	Refused  bool   // only entries with ok false
	User     string // entries whose command names this VPN user (args.user)
	Actor    string // entries done for this web console user
	From, To time.Time
	Limit    int
	Cursor   string
}

// Page sizes.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
	// WhoScan bounds the candidate sessions a who question reads at
	// once per address kind (newest connect before the instant first);
	// past a full scan, only the older sessions not ended by the instant
	// are read.
	WhoScan = 2000
)

// Retention says how long rows are kept (docs/ledger.md).
type Retention struct {
	Sessions time.Duration // sessions (by end), usage days, audit, notices, applied ids
	Samples  time.Duration
}

// DefaultRetention: sessions 400 days, samples 30 days.
var DefaultRetention = Retention{Sessions: 400 * 24 * time.Hour, Samples: 30 * 24 * time.Hour}

// Pruned counts what one retention pass removed.
type Pruned struct {
	Sessions, Samples, UsageDays, UsageMonths, Audit, Notices, Applied, Rejected int64
}

// CheckUID validates a session or event uid argument.
func CheckUID(name, s string) (string, error) {
	u, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return "", Errorf(ECodeInvalid, "%s: %q is not a uid", name, short(s))
	}
	return u.String(), nil
}

// Tolerances of who questions for times the ledger knows only roughly: a
// coarse connect lies within the minute after the one stored; a coarse
// (lost) end lies after the last sighting by up to a few snapshot
// intervals and the grace.
const (
	CoarseStart = time.Minute
	CoarseEnd   = 2 * time.Minute
)

// WhoWindow is what an engine asks for a who question at t: sessions that
// connected by start and had not ended before end (both widened for
// coarse times; HeldAt then decides exactly).
func WhoWindow(t time.Time) (start, end time.Time) {
	return t.Add(CoarseStart), t.Add(-CoarseEnd)
}

// HeldAt reports whether s may have held its addresses at t, given which
// of its times are coarse.
func HeldAt(s *Session, t time.Time) bool {
	start := s.ConnectedAt
	if s.ConnectedCoarse {
		// Either the minute ocserv printed (the connect lies within
		// the following minute) or the first event about the session
		// (the connect lies before it): it may have held t either way.
		start = start.Add(-CoarseStart)
	}
	if start.After(t) {
		return false
	}
	if s.State == StateRefused {
		return false
	}
	if s.EndedAt.IsZero() {
		return true
	}
	end := s.EndedAt
	if s.EndedCoarse {
		end = end.Add(CoarseEnd)
	}
	return !end.Before(t)
}

// SortSessions orders sessions newest connect first (the order of every
// session answer).
func SortSessions(l []Session) {
	sort.Slice(l, func(i, j int) bool {
		if !l[i].ConnectedAt.Equal(l[j].ConnectedAt) {
			return l[i].ConnectedAt.After(l[j].ConnectedAt)
		}
		return l[i].UID > l[j].UID
	})
}

// SortUsage orders usage rows by period, then total bytes (largest
// first), then user and server.
func SortUsage(l []UsageRow) {
	sort.Slice(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if a.Period != b.Period {
			return a.Period < b.Period
		}
		if ta, tb := a.BytesIn+a.BytesOut, b.BytesIn+b.BytesOut; ta != tb {
			return ta > tb
		}
		if a.Username != b.Username {
			return a.Username < b.Username
		}
		return a.ServerID < b.ServerID
	})
}
