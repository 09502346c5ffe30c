package ledger

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/uuid"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

// Event is a decoded, checked event: what Project reads. Strings are
// capped, free of NUL (PostgreSQL's text cannot hold it) and valid UTF-8;
// addresses are in canonical form; times are UTC to the microsecond.
type Event struct {
	ID         string
	ServerID   string
	SpoolID    string
	Seq        uint64
	Type       events.Type
	Time       time.Time
	SessionUID string
	Session    EventSession
	Stats      *EventStats
	Admitted   *bool
	Refusal    string
	Acct       *EventAccounting
	Rec        *EventReconcile
	Notice     *SpoolNotice
	Audit      *AuditEntry
}

// EventSession is the event's session object (docs/events.md).
type EventSession struct {
	ID             int64  `json:"id"`
	Username       string `json:"username"`
	Groupname      string `json:"groupname"`
	VHost          string `json:"vhost"`
	Device         string `json:"device"`
	IPReal         string `json:"ip_real"`
	IPRealLocal    string `json:"ip_real_local"`
	IPLocal        string `json:"ip_local"`
	IPRemote       string `json:"ip_remote"`
	IPv6Local      string `json:"ipv6_local"`
	IPv6Remote     string `json:"ipv6_remote"`
	Hostname       string `json:"hostname"`
	UserAgent      string `json:"user_agent"`
	DeviceType     string `json:"device_type"`
	DevicePlatform string `json:"device_platform"`
}

// EventStats is a disconnect's statistics.
type EventStats struct {
	BytesIn   int64
	BytesOut  int64
	DurationS int64 // -1: ocserv did not know
}

// EventAccounting is an accounting payload.
type EventAccounting struct {
	Slot              int64
	SessionID         string
	LogicalUID        string
	BytesIn, BytesOut int64
	DeltaIn, DeltaOut int64
	CounterReset      bool
	ConnectedAt       time.Time
	ConnectedCoarse   bool
	DurationS         int64
	ObservedAt        time.Time
}

// EventReconcile is a reconcile payload.
type EventReconcile struct {
	Action            string
	Reason            string
	SessionID         string
	LogicalUID        string
	JoinedUIDs        []string
	ConnectedAt       time.Time
	ConnectedCoarse   bool
	LastSeen          time.Time
	BytesIn, BytesOut int64 // -1: unknown
	ObservedAt        time.Time
}

// wire is the JSON shape consumed (docs/events.md); unknown fields are
// ignored, as the schema promises consumers may.
type wire struct {
	V          *int            `json:"v"`
	EventID    string          `json:"event_id"`
	ServerID   string          `json:"server_id"`
	SpoolID    string          `json:"spool_id"`
	Seq        uint64          `json:"seq"`
	Type       string          `json:"type"`
	Time       string          `json:"time"`
	SessionUID string          `json:"session_uid"`
	Session    *EventSession   `json:"session"`
	Stats      *wireStats      `json:"stats"`
	Admitted   *bool           `json:"admitted"`
	Refusal    string          `json:"refusal"`
	Accounting *wireAccounting `json:"accounting"`
	Reconcile  *wireReconcile  `json:"reconcile"`
	Overflow   *wireNotice     `json:"overflow"`
	Quarantine *wireNotice     `json:"quarantine"`
	Audit      *wireAudit      `json:"audit"`
}

type wireStats struct {
	BytesIn   *uint64 `json:"bytes_in"`
	BytesOut  *uint64 `json:"bytes_out"`
	DurationS *uint64 `json:"duration_s"`
}

type wireAccounting struct {
	Slot              *int64 `json:"slot"`
	SessionID         string `json:"session_id"`
	LogicalSessionUID string `json:"logical_session_uid"`
	BytesIn           uint64 `json:"bytes_in"`
	BytesOut          uint64 `json:"bytes_out"`
	DeltaIn           uint64 `json:"delta_in"`
	DeltaOut          uint64 `json:"delta_out"`
	CounterReset      bool   `json:"counter_reset"`
	ConnectedAt       string `json:"connected_at"`
	ConnectedAtCoarse bool   `json:"connected_at_coarse"`
	DurationS         uint64 `json:"duration_s"`
	ObservedAt        string `json:"observed_at"`
}

type wireReconcile struct {
	Action            string   `json:"action"`
	Reason            string   `json:"reason"`
	SessionID         string   `json:"session_id"`
	LogicalSessionUID string   `json:"logical_session_uid"`
	JoinedSessionUIDs []string `json:"joined_session_uids"`
	ConnectedAt       string   `json:"connected_at"`
	ConnectedAtCoarse bool     `json:"connected_at_coarse"`
	LastSeen          string   `json:"last_seen"`
	BytesIn           *uint64  `json:"bytes_in"`
	BytesOut          *uint64  `json:"bytes_out"`
	ObservedAt        string   `json:"observed_at"`
}

type wireNotice struct {
	Reason    string         `json:"reason"`
	Events    int64          `json:"events"`
	Bytes     int64          `json:"bytes"`
	SeqRanges jsontext.Value `json:"seq_ranges"`
}

type wireAudit struct {
	Phase      string            `json:"phase"`
	Action     string            `json:"action"`
	Subject    string            `json:"subject"`
	Key        string            `json:"key"`
	KeyName    string            `json:"key_name"`
	Role       string            `json:"role"`
	Args       map[string]string `json:"args"`
	OK         bool              `json:"ok"`
	Code       string            `json:"code"`
	Message    string            `json:"message"`
	ElapsedMS  int64             `json:"elapsed_ms"`
	Suppressed int64             `json:"suppressed_refusals"`
	Actor      string            `json:"actor"`
}

// Caps on what is stored from an event.
const (
	maxText    = 1024     // one text value
	maxPayload = 64 << 10 // a rejected event's payload as kept
	maxCount   = 1 << 62  // counters beyond this are not plausible
)

// Decode parses and checks one message. A schema violation is returned as
// an error whose text is the rejection reason; the message then becomes a
// rejected_events row.
func Decode(m Message) (*Event, error) {
	var w wire
	if !utf8.Valid(m.Data) {
		return nil, fmt.Errorf("not valid UTF-8")
	}
	// parseWire (wire.go): fastjson's parse, no reflection, with
	// encoding/json/v2's rules (FuzzWireMatchesJSONv2 compares the two),
	// stricter than v1's: a member named twice is refused, and one spelt
	// in another case than the schema's is not taken for it.
	if err := parseWire(m.Data, &w); err != nil {
		return nil, fmt.Errorf("not a JSON event: %v", err)
	}
	if w.V == nil {
		return nil, fmt.Errorf("v: missing")
	}
	if *w.V != events.SchemaVersion {
		return nil, fmt.Errorf("v: schema version %d; this ledger reads version %d", *w.V, events.SchemaVersion)
	}
	ev := &Event{SpoolID: clean(w.SpoolID), Seq: w.Seq, Admitted: w.Admitted, Refusal: clean(w.Refusal)}
	id, ok := canonUUID(w.EventID)
	if !ok {
		return nil, fmt.Errorf("event_id: %q is not a UUID", short(w.EventID))
	}
	ev.ID = id
	var err error
	if !events.IsToken(w.ServerID, 128) {
		return nil, fmt.Errorf("server_id: %q is not a subject token", short(w.ServerID))
	}
	ev.ServerID = w.ServerID
	if !knownType(w.Type) {
		return nil, fmt.Errorf("type: %q is not an event type of schema 1", short(w.Type))
	}
	ev.Type = events.Type(w.Type)
	if err := checkSubject(m.Subject, ev.ServerID, ev.Type); err != nil {
		return nil, err
	}
	if ev.Time, err = parseTime("time", w.Time, true); err != nil {
		return nil, err
	}
	if w.Session != nil {
		if ev.Session, err = cleanSession(*w.Session); err != nil {
			return nil, err
		}
	}
	if w.SessionUID != "" {
		u, ok := canonUUID(w.SessionUID)
		if !ok {
			return nil, fmt.Errorf("session_uid: %q is not a UUID", short(w.SessionUID))
		}
		ev.SessionUID = u
	}
	switch ev.Type {
	case events.Connect, events.Disconnect, events.HostUpdate, events.Accounting, events.Reconcile:
		if ev.SessionUID == "" {
			return nil, fmt.Errorf("session_uid: missing on a %s event", ev.Type)
		}
	}
	switch ev.Type {
	case events.Disconnect:
		if w.Stats == nil || w.Stats.BytesIn == nil || w.Stats.BytesOut == nil {
			return nil, fmt.Errorf("stats: a disconnect must carry stats.bytes_in and stats.bytes_out")
		}
		st := &EventStats{DurationS: -1}
		if st.BytesIn, err = count("stats.bytes_in", *w.Stats.BytesIn); err != nil {
			return nil, err
		}
		if st.BytesOut, err = count("stats.bytes_out", *w.Stats.BytesOut); err != nil {
			return nil, err
		}
		if w.Stats.DurationS != nil {
			if st.DurationS, err = count("stats.duration_s", *w.Stats.DurationS); err != nil {
				return nil, err
			}
		}
		ev.Stats = st
	case events.Accounting:
		if ev.Acct, err = decodeAccounting(w.Accounting); err != nil {
			return nil, err
		}
	case events.Reconcile:
		if ev.Rec, err = decodeReconcile(w.Reconcile); err != nil {
			return nil, err
		}
	case events.Overflow, events.Quarantine:
		n := w.Overflow
		if ev.Type == events.Quarantine {
			n = w.Quarantine
		}
		if n == nil {
			return nil, fmt.Errorf("%s: the payload is missing", ev.Type)
		}
		if n.Events < 0 || n.Bytes < 0 {
			return nil, fmt.Errorf("%s: negative counts", ev.Type)
		}
		ranges := n.SeqRanges
		if len(ranges) > maxPayload {
			ranges = nil
		}
		ev.Notice = &SpoolNotice{EventID: ev.ID, ServerID: ev.ServerID, Type: string(ev.Type), Time: ev.Time,
			Reason: clean(n.Reason), Events: n.Events, Bytes: n.Bytes, SeqRanges: compactJSON(json.RawMessage(ranges))}
	case events.Audit:
		a := w.Audit
		if a == nil {
			return nil, fmt.Errorf("audit: the payload is missing")
		}
		if a.Action == "" || a.Phase == "" {
			return nil, fmt.Errorf("audit: phase and action are required")
		}
		args := map[string]string{}
		for k, v := range a.Args {
			if len(args) >= 64 {
				break
			}
			args[clean(k)] = clean(v)
		}
		if len(args) == 0 {
			args = nil
		}
		ev.Audit = &AuditEntry{EventID: ev.ID, ServerID: ev.ServerID, Time: ev.Time,
			Phase: clean(a.Phase), Action: clean(a.Action), Subject: clean(a.Subject), Key: clean(a.Key),
			KeyName: clean(a.KeyName), Role: clean(a.Role), OK: a.OK, Code: clean(a.Code),
			Message: clean(a.Message), Args: args, ElapsedMS: a.ElapsedMS, Suppressed: a.Suppressed,
			Actor: clean(a.Actor)}
	}
	return ev, nil
}

func decodeAccounting(a *wireAccounting) (*EventAccounting, error) {
	if a == nil {
		return nil, fmt.Errorf("accounting: the payload is missing")
	}
	if a.Slot == nil || *a.Slot < 0 {
		return nil, fmt.Errorf("accounting.slot: missing or negative")
	}
	out := &EventAccounting{Slot: *a.Slot, SessionID: clean(a.SessionID), CounterReset: a.CounterReset,
		ConnectedCoarse: a.ConnectedAtCoarse}
	var err error
	if out.LogicalUID, err = optUUID("accounting.logical_session_uid", a.LogicalSessionUID); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		name string
		v    uint64
		dst  *int64
	}{{"accounting.bytes_in", a.BytesIn, &out.BytesIn}, {"accounting.bytes_out", a.BytesOut, &out.BytesOut},
		{"accounting.delta_in", a.DeltaIn, &out.DeltaIn}, {"accounting.delta_out", a.DeltaOut, &out.DeltaOut},
		{"accounting.duration_s", a.DurationS, &out.DurationS}} {
		if *c.dst, err = count(c.name, c.v); err != nil {
			return nil, err
		}
	}
	if out.ConnectedAt, err = parseTime("accounting.connected_at", a.ConnectedAt, false); err != nil {
		return nil, err
	}
	if out.ObservedAt, err = parseTime("accounting.observed_at", a.ObservedAt, true); err != nil {
		return nil, err
	}
	return out, nil
}

func decodeReconcile(r *wireReconcile) (*EventReconcile, error) {
	if r == nil {
		return nil, fmt.Errorf("reconcile: the payload is missing")
	}
	out := &EventReconcile{Action: r.Action, Reason: clean(r.Reason), SessionID: clean(r.SessionID),
		ConnectedCoarse: r.ConnectedAtCoarse, BytesIn: -1, BytesOut: -1}
	switch r.Action {
	case "seen", "lost", "joined":
	default:
		return nil, fmt.Errorf("reconcile.action: %q is not seen, lost or joined", short(r.Action))
	}
	var err error
	if out.LogicalUID, err = optUUID("reconcile.logical_session_uid", r.LogicalSessionUID); err != nil {
		return nil, err
	}
	if len(r.JoinedSessionUIDs) > 256 {
		return nil, fmt.Errorf("reconcile.joined_session_uids: %d entries (at most 256)", len(r.JoinedSessionUIDs))
	}
	for _, j := range r.JoinedSessionUIDs {
		u, err := optUUID("reconcile.joined_session_uids", j)
		if err != nil || u == "" {
			return nil, fmt.Errorf("reconcile.joined_session_uids: %q is not a UUID", short(j))
		}
		out.JoinedUIDs = append(out.JoinedUIDs, u)
	}
	if r.Action == "joined" && out.LogicalUID == "" {
		return nil, fmt.Errorf("reconcile.logical_session_uid: required for joined")
	}
	if out.ConnectedAt, err = parseTime("reconcile.connected_at", r.ConnectedAt, false); err != nil {
		return nil, err
	}
	if out.LastSeen, err = parseTime("reconcile.last_seen", r.LastSeen, false); err != nil {
		return nil, err
	}
	if out.ObservedAt, err = parseTime("reconcile.observed_at", r.ObservedAt, true); err != nil {
		return nil, err
	}
	if r.BytesIn != nil {
		if out.BytesIn, err = count("reconcile.bytes_in", *r.BytesIn); err != nil {
			return nil, err
		}
	}
	if r.BytesOut != nil {
		if out.BytesOut, err = count("reconcile.bytes_out", *r.BytesOut); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func knownType(t string) bool {
	for _, k := range events.AllTypes {
		if string(k) == t {
			return true
		}
	}
	return false
}

// checkSubject: the subject is <prefix>.events.<server_id>.<type>; an
// event whose own server_id or type disagrees with where it was published
// is refused (a host publishing under another's name).
func checkSubject(subject, serverID string, t events.Type) error {
	if subject == "" {
		return nil // replayed from a source without subjects (tests)
	}
	// The last three tokens, and at least one before them, without
	// splitting the subject into a new slice for every event.
	typ := strings.LastIndexByte(subject, '.')
	srv, evs := -1, -1
	if typ > 0 {
		srv = strings.LastIndexByte(subject[:typ], '.')
	}
	if srv > 0 {
		evs = strings.LastIndexByte(subject[:srv], '.')
	}
	if evs < 0 || subject[evs+1:srv] != "events" {
		return fmt.Errorf("subject %q is not <prefix>.events.<server_id>.<type>", short(subject))
	}
	if subject[srv+1:typ] != serverID || subject[typ+1:] != string(t) {
		return fmt.Errorf("subject %q does not match the event's server_id %q and type %q", short(subject), serverID, t)
	}
	return nil
}

func parseTime(name, s string, required bool) (time.Time, error) {
	if s == "" {
		if required {
			return time.Time{}, fmt.Errorf("%s: missing", name)
		}
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %q is not an RFC 3339 time", name, short(s))
	}
	if t.Year() < 2000 || t.Year() > 9999 {
		return time.Time{}, fmt.Errorf("%s: %s is out of range", name, s)
	}
	return t.UTC().Truncate(time.Microsecond), nil
}

func count(name string, v uint64) (int64, error) {
	if v > maxCount {
		return 0, fmt.Errorf("%s: %d is not a plausible count", name, v)
	}
	return int64(v), nil
}

func optUUID(name, s string) (string, error) {
	if s == "" {
		return "", nil
	}
	u, ok := canonUUID(s)
	if !ok {
		return "", fmt.Errorf("%s: %q is not a UUID", name, short(s))
	}
	return u, nil
}

// canonUUID is s as a UUID in its canonical form (36 characters, lower
// case), and whether s is one in the 36-character form at all. Most
// arrive canonical and are kept as they are, without a new string.
func canonUUID(s string) (string, bool) {
	u, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return "", false
	}
	for i := range len(s) {
		if 'A' <= s[i] && s[i] <= 'F' {
			return u.String(), true
		}
	}
	return s, true
}

func cleanSession(s EventSession) (EventSession, error) {
	if s.ID < 0 {
		return s, fmt.Errorf("session.id: %d is negative", s.ID)
	}
	var err error
	for _, f := range []struct {
		name string
		p    *string
		v6   bool
		v4   bool
	}{{"session.ip_real", &s.IPReal, false, false}, {"session.ip_real_local", &s.IPRealLocal, false, false},
		{"session.ip_local", &s.IPLocal, false, true}, {"session.ip_remote", &s.IPRemote, false, true},
		{"session.ipv6_local", &s.IPv6Local, true, false}, {"session.ipv6_remote", &s.IPv6Remote, true, false}} {
		if *f.p, err = canonIP(f.name, *f.p, f.v4, f.v6); err != nil {
			return s, err
		}
	}
	for _, p := range []*string{&s.Username, &s.Groupname, &s.VHost, &s.Device, &s.Hostname, &s.UserAgent, &s.DeviceType, &s.DevicePlatform} {
		*p = clean(*p)
	}
	return s, nil
}

// CanonIP parses an address for storage and lookups: IPv4-mapped IPv6 is
// unmapped and a zone dropped, so one address has one spelling.
func CanonIP(s string) (string, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", err
	}
	return a.Unmap().WithZone("").String(), nil
}

func canonIP(name, s string, v4, v6 bool) (string, error) {
	if s == "" {
		return "", nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", fmt.Errorf("%s: %q is not an IP address", name, short(s))
	}
	a = a.Unmap().WithZone("")
	if v4 && !a.Is4() || v6 && !a.Is6() {
		return "", fmt.Errorf("%s: %s is not an IPv%s address", name, a, map[bool]string{true: "4", false: "6"}[v4])
	}
	// Most addresses arrive in their canonical spelling: keep the
	// decoded string rather than make the same one again.
	var buf [64]byte
	if c := a.AppendTo(buf[:0]); string(c) == s {
		return s, nil
	}
	return a.String(), nil
}

// clean caps a text value at maxText bytes (on a rune boundary) and
// replaces NUL, which PostgreSQL's text cannot hold.
func clean(s string) string {
	if len(s) <= maxText && strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s // most are: no new string, no walk rune by rune
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) > maxText {
		cut := maxText
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

func compactJSON(b json.RawMessage) json.RawMessage {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	var v any
	if json.Unmarshal(b, &v) != nil {
		return nil
	}
	out, _ := json.Marshal(v)
	return out
}

func short(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
