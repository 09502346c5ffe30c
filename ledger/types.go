package ledger

import (
	"encoding/json"
	"time"
)

// Session states.
const (
	StateOpen       = "open"       // no end known yet
	StateDisconnect = "disconnect" // ended by its disconnect event
	StateLost       = "lost"       // reconcile lost: the worker vanished without a disconnect
	StateRefused    = "refused"    // the hook refused the login
)

// Session is one ocserv worker session (docs/ledger.md, table sessions).
// Times are UTC, to the microsecond; a zero time is unknown. Amounts are
// what the ledger counts for the session (in = from the client).
type Session struct {
	UID        string `json:"session_uid"`
	LogicalUID string `json:"logical_uid,omitempty"`
	ServerID   string `json:"server_id"`
	SpoolID    string `json:"spool_id,omitempty"`

	Username  string `json:"username,omitempty"`
	Groupname string `json:"groupname,omitempty"`
	VHost     string `json:"vhost,omitempty"`
	WorkerID  int64  `json:"worker_id,omitempty"`
	Device    string `json:"device,omitempty"`

	IPReal       string `json:"ip_real,omitempty"`
	IPRealLocal  string `json:"ip_real_local,omitempty"`
	VPNIPv4      string `json:"vpn_ipv4,omitempty"`
	VPNIPv4Local string `json:"vpn_ipv4_local,omitempty"`
	VPNIPv6      string `json:"vpn_ipv6,omitempty"`
	VPNIPv6Local string `json:"vpn_ipv6_local,omitempty"`

	Hostname       string `json:"hostname,omitempty"`
	UserAgent      string `json:"user_agent,omitempty"`
	DeviceType     string `json:"device_type,omitempty"`
	DevicePlatform string `json:"device_platform,omitempty"`
	CookieID       string `json:"cookie_id,omitempty"`

	ConnectedAt     time.Time `json:"connected_at,omitzero"`
	ConnectedCoarse bool      `json:"connected_coarse,omitempty"`
	EndedAt         time.Time `json:"ended_at,omitzero"`
	EndedCoarse     bool      `json:"ended_coarse,omitempty"`
	State           string    `json:"state"`
	EndReason       string    `json:"end_reason,omitempty"`
	Origin          string    `json:"origin"`

	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
	Seconds  int64 `json:"seconds"`

	Samples      int64     `json:"samples"`
	LastSampleAt time.Time `json:"last_sample_at,omitzero"`
	Settled      bool      `json:"settled,omitempty"`

	// The worker's highest counter totals seen in accounting samples
	// (the baseline of the next sample's increase).
	AcctIn  int64 `json:"acct_in"`
	AcctOut int64 `json:"acct_out"`
}

// Sample is one accounting sample (table samples).
type Sample struct {
	SessionUID string    `json:"session_uid"`
	Slot       int64     `json:"slot"`
	ServerID   string    `json:"server_id"`
	ObservedAt time.Time `json:"observed_at"`
	BytesIn    int64     `json:"bytes_in"`
	BytesOut   int64     `json:"bytes_out"`
	DeltaIn    int64     `json:"delta_in"`
	DeltaOut   int64     `json:"delta_out"`
	DurationS  int64     `json:"duration_s"`
}

// UsageDelta is an amount added to one usage_daily row.
type UsageDelta struct {
	Day      string // YYYY-MM-DD, UTC
	Username string
	ServerID string
	BytesIn  int64
	BytesOut int64
	Seconds  int64
	Sessions int64
}

// UsageRow is one row of a usage answer.
type UsageRow struct {
	Username string `json:"username"`
	Period   string `json:"period"` // "2026-11-24", "2026-11" or "2026-11-01..2026-12-01"
	ServerID string `json:"server_id,omitempty"`
	BytesIn  int64  `json:"bytes_in"`
	BytesOut int64  `json:"bytes_out"`
	Seconds  int64  `json:"seconds"`
	Sessions int64  `json:"sessions"`
}

// AuditEntry is one audit event (table audit).
type AuditEntry struct {
	EventID    string            `json:"event_id"`
	ServerID   string            `json:"server_id"`
	Time       time.Time         `json:"time"`
	Phase      string            `json:"phase"`
	Action     string            `json:"action"`
	Subject    string            `json:"subject,omitempty"`
	Key        string            `json:"key,omitempty"`
	KeyName    string            `json:"key_name,omitempty"`
	Role       string            `json:"role,omitempty"`
	OK         bool              `json:"ok"`
	Code       string            `json:"code,omitempty"`
	Message    string            `json:"message,omitempty"`
	Args       map[string]string `json:"args,omitempty"`
	ElapsedMS  int64             `json:"elapsed_ms,omitempty"`
	Suppressed int64             `json:"suppressed_refusals,omitempty"`
	// Actor is the person a service key acted for (the web console's
	// user), from the signed command.
	Actor string `json:"actor,omitempty"`
}

// SpoolNotice is an overflow or quarantine event (table spool_notices).
type SpoolNotice struct {
	EventID   string          `json:"event_id"`
	ServerID  string          `json:"server_id"`
	Type      string          `json:"type"` // overflow | quarantine
	Time      time.Time       `json:"time"`
	Reason    string          `json:"reason"`
	Events    int64           `json:"events"`
	Bytes     int64           `json:"bytes"`
	SeqRanges json.RawMessage `json:"seq_ranges,omitempty"`
}

// Server is one server_id seen on the stream (table servers).
type Server struct {
	ServerID      string    `json:"server_id"`
	SpoolID       string    `json:"spool_id,omitempty"`
	FirstSeen     time.Time `json:"first_seen"`
	LastSeen      time.Time `json:"last_seen"`
	LastType      string    `json:"last_type"`
	Events        int64     `json:"events"`
	DroppedEvents int64     `json:"dropped_events"`
	OpenSessions  int64     `json:"open_sessions"` // computed at query time
}

// Rejected is an event that violates the schema (table rejected_events).
type Rejected struct {
	StreamSeq uint64    `json:"stream_seq"`
	Subject   string    `json:"subject"`
	EventID   string    `json:"event_id,omitempty"`
	Reason    string    `json:"reason"`
	Payload   []byte    `json:"payload,omitempty"`
	Received  time.Time `json:"received"`
}

// Position is where ingest stands (table ingest_state).
type Position struct {
	StreamSeq     uint64    `json:"stream_seq"`
	LastEventTime time.Time `json:"last_event_time,omitzero"`
	StreamTime    time.Time `json:"stream_time,omitzero"` // the stream's timestamp of that message
	Applied       int64     `json:"applied"`
	Duplicates    int64     `json:"duplicates"`
	Rejected      int64     `json:"rejected"`
	Expired       int64     `json:"expired"`
}

// Page is one page of a paged answer; NextCursor is "" on the last.
type Page[T any] struct {
	Items      []T
	NextCursor string
}
