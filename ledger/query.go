package ledger

import "time"

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
	From, To time.Time
	Limit    int
	Cursor   string
}

// Page sizes.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
	// WhoScan bounds the candidate sessions a who question looks at per
	// address kind (newest connect before the instant first).
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
	Sessions, Samples, UsageDays, Audit, Notices, Applied, Rejected int64
}
