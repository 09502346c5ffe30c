// Package ledgertest is the ledger's conformance suite (Run), which every
// engine passes, and the event generator the suite, the crash tests and
// the benchmarks share: realistic events of schema 1, encoded exactly as
// the hook and the shipper write them.
package ledgertest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// Gen makes the events of one server (one spool). Stream sequence numbers
// are given by a shared *Seq, as one stream would.
type Gen struct {
	Prefix   string
	ServerID string
	SpoolID  string
	Seq      *Seq
	seq      uint64
	sessions map[string]*events.Session
	// NewID makes hook event ids (default UID).
	NewID func() string
}

// Seq numbers messages as a stream does.
type Seq struct{ n uint64 }

// Next is the next stream sequence.
func (s *Seq) Next() uint64 { s.n++; return s.n }

// NewGen makes a generator for serverID.
func NewGen(serverID string, seq *Seq) *Gen {
	return &Gen{Prefix: "ocserv", ServerID: serverID, SpoolID: uuid.NewString(), Seq: seq, sessions: map[string]*events.Session{}}
}

// UID makes a session uid or event id (UUIDv7, as the hook does).
func UID() string { return uuid.Must(uuid.NewV7()).String() }

// Conn describes a connect.
type Conn struct {
	User, Group string
	IPReal      string
	VPN4, VPN6  string
	Worker      int
	Device      string
	Refused     string // non-empty: the hook refused the login with this reason
}

func (g *Gen) msg(e *events.Event) ledger.Message {
	g.seq++
	e.V, e.ServerID, e.SpoolID, e.Seq = events.SchemaVersion, g.ServerID, g.SpoolID, g.seq
	if e.EventID == "" {
		if g.NewID != nil {
			e.EventID = g.NewID()
		} else {
			e.EventID = UID()
		}
	}
	b, err := e.Marshal()
	if err != nil {
		panic(err)
	}
	m := ledger.Message{Subject: fmt.Sprintf("%s.events.%s.%s", g.Prefix, g.ServerID, e.Type), Data: b[:len(b)-1], Time: time.Now()}
	if g.Seq != nil {
		m.StreamSeq = g.Seq.Next()
	}
	return m
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// Connect is a hook connect event for a new session uid.
func (g *Gen) Connect(uid string, c Conn, at time.Time) ledger.Message {
	if c.Worker == 0 {
		c.Worker = 1000 + rand.IntN(60000)
	}
	if c.Device == "" {
		c.Device = fmt.Sprintf("vpns%d", rand.IntN(200))
	}
	s := &events.Session{ID: c.Worker, Username: c.User, Groupname: c.Group, VHost: "default", Device: c.Device,
		IPReal: c.IPReal, IPRealLocal: "198.51.100.1", IPLocal: "10.8.0.1", IPRemote: c.VPN4, IPv6Remote: c.VPN6,
		Hostname: "laptop-" + c.User, UserAgent: "Open AnyConnect VPN Agent v9.12"}
	g.sessions[uid] = s
	admitted := c.Refused == ""
	e := &events.Event{Type: events.Connect, Time: ts(at), SessionUID: uid, Session: s, Admitted: &admitted, Refusal: c.Refused,
		Policy: &events.Policy{Routes: []string{}, NoRoutes: []string{}, DNS: []string{}}, Firewall: &events.Firewall{Mode: "off", Action: "none"}}
	return g.msg(e)
}

func (g *Gen) session(uid string) *events.Session {
	if s := g.sessions[uid]; s != nil {
		return s
	}
	s := &events.Session{ID: 4242, Username: "unknown", Device: "vpns0"}
	g.sessions[uid] = s
	return s
}

// Forget drops what the generator remembers of a session (memory, for
// long workloads).
func (g *Gen) Forget(uid string) { delete(g.sessions, uid) }

// Disconnect is a hook disconnect with ocserv's final statistics (dur < 0:
// no duration_s).
func (g *Gen) Disconnect(uid string, in, out uint64, dur int64, at time.Time) ledger.Message {
	st := &events.Stats{BytesIn: in, BytesOut: out}
	if dur >= 0 {
		d := uint64(dur)
		st.DurationS = &d
	}
	return g.msg(&events.Event{Type: events.Disconnect, Time: ts(at), SessionUID: uid, Session: g.session(uid), Stats: st,
		Policy: &events.Policy{Routes: []string{}, NoRoutes: []string{}, DNS: []string{}}, Firewall: &events.Firewall{Mode: "off", Action: "none"}})
}

// Acct describes an accounting sample.
type Acct struct {
	Slot              int64
	Logical           string
	Cookie            string
	In, Out           uint64 // totals
	DeltaIn, DeltaOut uint64
	Reset             bool
	Connected         time.Time
	Coarse            bool
}

// Accounting is the shipper's accounting event; its event id is derived
// from the spool, uid and slot as the shipper derives it.
func (g *Gen) Accounting(uid string, a Acct, at time.Time) ledger.Message {
	p := map[string]any{"interim": a.Slot, "slot": a.Slot, "bytes_in": a.In, "bytes_out": a.Out,
		"delta_in": a.DeltaIn, "delta_out": a.DeltaOut, "interval_s": 300, "observed_at": ts(at),
		"duration_s": int64(at.Sub(a.Connected) / time.Second)}
	if a.Logical != "" {
		p["logical_session_uid"] = a.Logical
	}
	if a.Cookie != "" {
		p["session_id"] = a.Cookie
	}
	if !a.Connected.IsZero() {
		p["connected_at"] = ts(a.Connected)
	}
	if a.Coarse {
		p["connected_at_coarse"] = true
	}
	if a.Reset {
		p["counter_reset"] = true
	}
	raw := rawJSON(p)
	id := derived("accounting", g.SpoolID, uid, a.Slot)
	return g.msg(&events.Event{EventID: id, Type: events.Accounting, Time: ts(at), SessionUID: uid, Session: g.session(uid), Accounting: &raw})
}

// Rec describes a reconcile event.
type Rec struct {
	Action    string // seen, lost, joined
	Logical   string
	Joined    []string
	Cookie    string
	Connected time.Time
	Coarse    bool
	LastSeen  time.Time
	In, Out   *uint64
}

// Reconcile is the shipper's reconcile event.
func (g *Gen) Reconcile(uid string, r Rec, at time.Time) ledger.Message {
	p := map[string]any{"action": r.Action, "reason": "test " + r.Action, "observed_at": ts(at)}
	if r.Logical != "" {
		p["logical_session_uid"] = r.Logical
	}
	if len(r.Joined) > 0 {
		p["joined_session_uids"] = r.Joined
	}
	if r.Cookie != "" {
		p["session_id"] = r.Cookie
	}
	if !r.Connected.IsZero() {
		p["connected_at"] = ts(r.Connected)
	}
	if r.Coarse {
		p["connected_at_coarse"] = true
	}
	if !r.LastSeen.IsZero() {
		p["last_seen"] = ts(r.LastSeen)
	}
	if r.In != nil {
		p["bytes_in"] = *r.In
	}
	if r.Out != nil {
		p["bytes_out"] = *r.Out
	}
	raw := rawJSON(p)
	return g.msg(&events.Event{EventID: derived("reconcile", g.SpoolID, r.Action, uid), Type: events.Reconcile, Time: ts(at),
		SessionUID: uid, Session: g.session(uid), Reconcile: &raw})
}

// Audit is an audit event.
func (g *Gen) Audit(action, keyName string, ok bool, at time.Time) ledger.Message {
	p := map[string]any{"phase": "done", "action": action, "subject": g.Prefix + ".cmd." + g.ServerID + "." + action,
		"key": "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4", "key_name": keyName, "role": "read-write",
		"args": map[string]string{"user": "alice"}, "ok": ok}
	if !ok {
		p["phase"], p["code"], p["message"] = "refused", "forbidden", "key is read-only"
	}
	raw := rawJSON(p)
	return g.msg(&events.Event{Type: events.Audit, Time: ts(at), Audit: &raw})
}

// AuditFor is an audit event of a command the console signed for a web
// user (actor) about a VPN user.
func (g *Gen) AuditFor(action, actor, user string, at time.Time) ledger.Message {
	raw := rawJSON(map[string]any{"phase": "done", "action": action, "subject": g.Prefix + ".cmd." + g.ServerID + "." + action,
		"key": "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4", "key_name": "console", "role": "read-write",
		"actor": actor, "args": map[string]string{"user": user}, "ok": true})
	return g.msg(&events.Event{Type: events.Audit, Time: ts(at), Audit: &raw})
}

// Overflow is a spool overflow notice.
func (g *Gen) Overflow(n int64, at time.Time) ledger.Message {
	return g.msg(&events.Event{Type: events.Overflow, Time: ts(at), Overflow: &events.SpoolNotice{Reason: "spool over its cap",
		Events: n, Bytes: n * 700, SeqRanges: [][2]uint64{{1, uint64(n)}}}})
}

func rawJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

var ns = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/ocserv-telemetry/ocserv-telemetry/ledgertest"))

func derived(parts ...any) string { return uuid.NewSHA1(ns, []byte(fmt.Sprint(parts...))).String() }

// Raw is a message with the given payload on the server's subject for typ.
func (g *Gen) Raw(typ string, payload []byte) ledger.Message {
	m := ledger.Message{Subject: fmt.Sprintf("%s.events.%s.%s", g.Prefix, g.ServerID, typ), Data: payload, Time: time.Now()}
	if g.Seq != nil {
		m.StreamSeq = g.Seq.Next()
	}
	return m
}
