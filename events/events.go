// Package events owns the event schema (version 1): the JSON shape of every
// line in the spool and every message on the events stream, and the
// conversion of ocserv's script environment into an event.
//
// The schema only grows: fields are added, never renamed or removed, and the
// shipper publishes each spool line exactly as written, so a field added by a
// newer hook reaches consumers even through an older shipper. docs/events.md
// is the reference for consumers.
package events

import (
	"encoding/json"
	"fmt"
)

// SchemaVersion is the value of the "v" field.
const SchemaVersion = 1

// Type is an event type; it is also the last token of the event's subject.
type Type string

// The event types. These exact strings are subject tokens.
const (
	Connect    Type = "connect"
	Disconnect Type = "disconnect"
	HostUpdate Type = "host-update"
	Accounting Type = "accounting"
	Reconcile  Type = "reconcile"
	Overflow   Type = "overflow"
	Quarantine Type = "quarantine"
	Audit      Type = "audit"
)

// HookTypes are the types the hook writes; ocserv's REASON names them.
var HookTypes = []Type{Connect, Disconnect, HostUpdate}

// AllTypes lists every type version 1 defines.
var AllTypes = []Type{Connect, Disconnect, HostUpdate, Accounting, Reconcile, Overflow, Quarantine, Audit}

// ParseReason maps ocserv's REASON variable to a hook event type.
func ParseReason(reason string) (Type, error) {
	for _, t := range HookTypes {
		if string(t) == reason {
			return t, nil
		}
	}
	return "", fmt.Errorf("unknown REASON %s (expected connect, disconnect or host-update)", quoteShort(reason))
}

// Event is one line of the spool. Pointer and omitempty fields are absent
// from events they do not apply to; docs/events.md says which.
type Event struct {
	V        int    `json:"v"`
	EventID  string `json:"event_id"`
	ServerID string `json:"server_id"`
	SpoolID  string `json:"spool_id,omitempty"`
	// Seq is 0 (absent) only on events written on the hook's lock-free
	// fallback path; the shipper numbers those when it takes them in.
	Seq  uint64 `json:"seq,omitempty"`
	Type Type   `json:"type"`
	// Time is RFC 3339 in UTC with nanoseconds.
	Time string `json:"time"`
	// BootID and MonoNS order events of one boot exactly, whatever the
	// wall clock did: MonoNS is CLOCK_MONOTONIC in nanoseconds.
	BootID string `json:"boot_id,omitempty"`
	MonoNS int64  `json:"mono_ns,omitempty"`

	SessionUID string    `json:"session_uid,omitempty"`
	Session    *Session  `json:"session,omitempty"`
	Stats      *Stats    `json:"stats,omitempty"`
	Policy     *Policy   `json:"policy,omitempty"`
	Firewall   *Firewall `json:"firewall,omitempty"`
	// Admitted is set on connect events: whether the hook let the login
	// through (its exit status was 0).
	Admitted *bool `json:"admitted,omitempty"`
	// Refusal says why a connect was refused (one of the deliberate
	// refusals in docs/design.md); empty when admitted.
	Refusal string `json:"refusal,omitempty"`
	// Verdict is the fleet-policy check of a connect (POLICY=on).
	Verdict *Verdict `json:"verdict,omitempty"`

	Hook *HookInfo `json:"hook,omitempty"`

	// Derived events carry one of these payloads.
	Accounting *json.RawMessage `json:"accounting,omitempty"`
	Reconcile  *json.RawMessage `json:"reconcile,omitempty"`
	Overflow   *SpoolNotice     `json:"overflow,omitempty"`
	Quarantine *SpoolNotice     `json:"quarantine,omitempty"`
	Audit      *json.RawMessage `json:"audit,omitempty"`

	// Truncated names the fields whose values were cut to the size cap.
	Truncated []string `json:"truncated,omitempty"`
	// Problems lists what was wrong with the input, one message each,
	// naming the variable; the event is still written.
	Problems []string `json:"problems,omitempty"`
}

// Session holds ocserv's per-session script variables, validated. A value
// that failed validation is left out and named in Event.Problems.
type Session struct {
	ID             int    `json:"id,omitempty"` // ocserv's worker PID (reused over time)
	Username       string `json:"username,omitempty"`
	Groupname      string `json:"groupname,omitempty"`
	VHost          string `json:"vhost,omitempty"`
	Device         string `json:"device,omitempty"`
	IPReal         string `json:"ip_real,omitempty"`
	IPRealLocal    string `json:"ip_real_local,omitempty"`
	IPLocal        string `json:"ip_local,omitempty"`
	IPRemote       string `json:"ip_remote,omitempty"`
	IPv6Local      string `json:"ipv6_local,omitempty"`
	IPv6Remote     string `json:"ipv6_remote,omitempty"`
	IPv6Prefix     *int   `json:"ipv6_prefix,omitempty"`
	Hostname       string `json:"hostname,omitempty"`
	RemoteHostname string `json:"remote_hostname,omitempty"`
	UserAgent      string `json:"user_agent,omitempty"`
	DeviceType     string `json:"device_type,omitempty"`
	DevicePlatform string `json:"device_platform,omitempty"`
}

// Stats are ocserv's disconnect counters. DurationS is absent when ocserv
// did not know the connect time.
type Stats struct {
	BytesIn   uint64  `json:"bytes_in"`
	BytesOut  uint64  `json:"bytes_out"`
	DurationS *uint64 `json:"duration_s,omitempty"`
}

// Policy is the session's network policy as ocserv passed it to the script.
// Routes are normalised to CIDR prefixes ("10.10.10.0/24").
type Policy struct {
	Routes           []string `json:"routes"`
	NoRoutes         []string `json:"no_routes"`
	DNS              []string `json:"dns"`
	RestrictToRoutes bool     `json:"restrict_to_routes"`
	AllowPorts       []Port   `json:"allow_ports,omitempty"`
	DenyPorts        []Port   `json:"deny_ports,omitempty"`
	// Invalid is true when any policy variable had an entry that did not
	// parse; the firewall fails closed for such a session.
	Invalid bool `json:"invalid,omitempty"`
	// ListsOmitted is true when the lists above were left out of this
	// event because the line would have been longer than a spool line may
	// be (policy variables can be up to 128 KiB each); the firewall used
	// them in full.
	ListsOmitted bool `json:"lists_omitted,omitempty"`
}

// Restricted reports whether ocserv asked for a firewall on this session:
// restrict-user-to-routes or restrict-user-to-ports.
func (p *Policy) Restricted() bool {
	return p != nil && (p.RestrictToRoutes || len(p.AllowPorts) > 0 || len(p.DenyPorts) > 0)
}

// Port is one protocol/port pair of restrict-user-to-ports. Port 0 means
// every port (ocserv's "all", used for icmp, icmpv6 and esp).
type Port struct {
	Proto string `json:"proto"`
	Port  int    `json:"port,omitempty"`
}

// Firewall records what the hook did about the session's firewall.
type Firewall struct {
	// Mode is the configured FIREWALL mode: "off" or "on".
	Mode string `json:"mode"`
	// Action: "none" (nothing to do or not ours), "applied", "removed",
	// "reject-all" (rules failed, the device was closed), "failed".
	Action  string `json:"action,omitempty"`
	Backend string `json:"backend,omitempty"`
	Error   string `json:"error,omitempty"`
	Micros  int64  `json:"elapsed_us,omitempty"`
	// SupersededBy is set on a disconnect that found the device's rules
	// owned by another session and left them in place (action "none"):
	// ocserv gave the device to that session before this disconnect ran.
	SupersededBy *SessionRef `json:"superseded_by,omitempty"`
}

// SessionRef names a session: ocserv's ID and the hook's session_uid
// (absent when not known).
type SessionRef struct {
	ID         int    `json:"id"`
	SessionUID string `json:"session_uid,omitempty"`
}

// HookInfo describes the hook run that wrote the event.
type HookInfo struct {
	Version string `json:"version,omitempty"`
	// Fallback is true when the event went to the lock-free fallback path
	// because the spool lock was not free within its budget.
	Fallback   bool  `json:"fallback,omitempty"`
	LockWaitUS int64 `json:"lock_wait_us,omitempty"`
	// ElapsedUS is the time from the hook's start to encoding the event.
	ElapsedUS int64 `json:"elapsed_us,omitempty"`
	// Chained is the exit status of the operator's OCSERV_NEXT_SCRIPT,
	// when the hook ran one.
	Chained *int `json:"next_script_status,omitempty"`
}

// SpoolNotice is the payload of overflow and quarantine events: what the
// spool had to drop or set aside, exactly.
type SpoolNotice struct {
	Reason string `json:"reason"`
	// Events is the number of events affected (lines, for quarantine).
	Events int64 `json:"events"`
	Bytes  int64 `json:"bytes"`
	// SeqRanges lists the affected seq values as inclusive [first, last]
	// pairs; lines whose seq could not be read are counted but not listed.
	SeqRanges [][2]uint64 `json:"seq_ranges,omitempty"`
	// Files names the spool files concerned (chunk or quarantine file).
	Files []string `json:"files,omitempty"`
}

// quoteShort quotes s for an error message, cut to a readable length.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q…", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

// IsToken reports whether s, 1 to max bytes, can stand as one NATS subject
// token, a header value and a file name alike: letters, digits, '-' and '_'
// only (stricter than NATS, so no '.', '*', '>' or white space). Server ids,
// event types and event ids must be tokens; every package checks with this.
func IsToken(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
