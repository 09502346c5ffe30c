package livestate

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
)

// derivedNS is the UUIDv5 namespace of the events and session_uids the
// live state derives. An id hashes the spool and exactly what the fact is
// about, so the same fact noticed again (after a restart, or with a lost
// state file) gets the same id and JetStream's duplicate window, or the
// consumer's de-duplication on event_id, drops the repeat.
var derivedNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/ocserv-telemetry/ocserv-telemetry/livestate"))

func derivedID(parts ...any) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('|')
		}
		fmt.Fprint(&b, p)
	}
	return uuid.NewSHA1(derivedNS, []byte(b.String())).String()
}

// Reconcile actions (the "action" of a reconcile payload).
const (
	ActionSeen   = "seen"   // occtl lists a session the hook recorded no connect for
	ActionLost   = "lost"   // a connect whose worker vanished without a disconnect
	ActionJoined = "joined" // a new worker continues a session cookie seen before (roaming)
)

// Accounting is the payload of an accounting event: RADIUS-style interim
// counters of one ocserv worker.
type Accounting struct {
	Interim           int     `json:"interim"` // 1, 2, … for this worker
	Slot              int64   `json:"slot"`    // interval number since connected_at
	SessionID         string  `json:"session_id,omitempty"`
	LogicalSessionUID string  `json:"logical_session_uid,omitempty"`
	BytesIn           uint64  `json:"bytes_in"`  // total from the client (occtl RX)
	BytesOut          uint64  `json:"bytes_out"` // total to the client (occtl TX)
	DeltaIn           uint64  `json:"delta_in"`  // since the previous accounting event
	DeltaOut          uint64  `json:"delta_out"`
	IntervalS         float64 `json:"interval_s"` // seconds the deltas cover
	CounterReset      bool    `json:"counter_reset,omitempty"`
	ConnectedAt       string  `json:"connected_at,omitempty"`
	ConnectedAtCoarse bool    `json:"connected_at_coarse,omitempty"`
	DurationS         uint64  `json:"duration_s"`
	ObservedAt        string  `json:"observed_at"`
}

// Reconcile is the payload of a reconcile event.
type Reconcile struct {
	Action            string   `json:"action"`
	Reason            string   `json:"reason"`
	HookKey           string   `json:"hook_key,omitempty"` // "<ID>-<DEVICE>"
	SessionID         string   `json:"session_id,omitempty"`
	LogicalSessionUID string   `json:"logical_session_uid,omitempty"`
	JoinedSessionUIDs []string `json:"joined_session_uids,omitempty"`
	ConnectedAt       string   `json:"connected_at,omitempty"`
	ConnectedAtCoarse bool     `json:"connected_at_coarse,omitempty"`
	LastSeen          string   `json:"last_seen,omitempty"`
	BytesIn           *uint64  `json:"bytes_in,omitempty"`
	BytesOut          *uint64  `json:"bytes_out,omitempty"`
	ObservedAt        string   `json:"observed_at"`
}

// Derived is one event the table wants written.
type Derived struct {
	Type       events.Type
	ID         string
	SessionUID string
	Session    *events.Session
	Payload    any // *Accounting or *Reconcile
}

// Event builds the spool line's event (without seq and spool_id, which
// the spool stamps).
func (d Derived) Event(serverID string, now time.Time) (events.Event, error) {
	raw, err := json.Marshal(d.Payload)
	if err != nil {
		return events.Event{}, err
	}
	msg := json.RawMessage(raw)
	ev := events.Event{
		V: events.SchemaVersion, EventID: d.ID, ServerID: serverID, Type: d.Type,
		Time: now.UTC().Format(time.RFC3339Nano), SessionUID: d.SessionUID, Session: d.Session,
	}
	if d.Type == events.Accounting {
		ev.Accounting = &msg
	} else {
		ev.Reconcile = &msg
	}
	return ev, nil
}

// Observation is one reading of the server: occtl's users and the hook's
// live session records (spool sessions/: "<ID>-<DEVICE>" → session_uid).
type Observation struct {
	Time  time.Time
	Users []ocserv.User
	Hook  map[string]string
}

// Result is what one observation asks for: events to append (in order),
// then hook records to write (a reconciled session's uid, so its
// disconnect event carries it) and to remove (a lost session's).
type Result struct {
	Events []Derived
	Store  map[string]string
	Drop   []string
}

// worker is one ocserv worker the table follows.
type worker struct {
	ID          int            `json:"id"`
	Device      string         `json:"device"`
	Cookie      string         `json:"cookie,omitempty"` // occtl "Full session"
	Short       string         `json:"short,omitempty"`
	ConnectedAt time.Time      `json:"connected_at"`
	Coarse      bool           `json:"coarse,omitempty"`
	UID         string         `json:"session_uid,omitempty"`
	UIDFrom     string         `json:"uid_from,omitempty"` // "hook" or "reconcile"
	Logical     string         `json:"logical,omitempty"`
	FirstSeen   time.Time      `json:"first_seen"`
	LastSeen    time.Time      `json:"last_seen"`
	NoHook      int            `json:"no_hook,omitempty"`
	NoHookSince time.Time      `json:"no_hook_since,omitzero"`
	Missing     int            `json:"missing,omitempty"`
	Interims    int            `json:"interims,omitempty"`
	LastSlot    int64          `json:"last_slot,omitempty"`
	RX          uint64         `json:"rx"`
	TX          uint64         `json:"tx"`
	HasCounters bool           `json:"has_counters,omitempty"`
	AcctRX      uint64         `json:"acct_rx"`
	AcctTX      uint64         `json:"acct_tx"`
	AcctAt      time.Time      `json:"acct_at,omitzero"`
	Session     events.Session `json:"session"`
}

// cookie links the workers of one session cookie (roaming).
type cookie struct {
	Logical  string    `json:"logical"`
	UIDs     []string  `json:"uids"`
	Short    string    `json:"session,omitempty"`
	LastSeen time.Time `json:"last_seen"`
}

// orphan is a hook record without any worker listed by occtl.
type orphan struct {
	UID       string    `json:"session_uid"`
	FirstSeen time.Time `json:"first_seen"`
	Polls     int       `json:"polls"`
}

// tableState is what survives restarts (the state file).
type tableState struct {
	V        int                  `json:"v"`
	SpoolID  string               `json:"spool_id"`
	Workers  map[string]*worker   `json:"workers"`
	Cookies  map[string]*cookie   `json:"cookies"`
	Orphans  map[string]*orphan   `json:"orphans"`
	Reported map[string]time.Time `json:"reported"` // reconcile event ids already written
}

// Table follows ocserv's workers from one occtl reading to the next and
// derives the accounting and reconcile events. It is not safe for
// concurrent use.
type Table struct {
	SpoolID  string
	Interval time.Duration // accounting interval
	// Grace is how long a worker must have been gone before its session
	// counts as lost (the disconnect script runs right after the worker
	// exits; this leaves it time).
	Grace time.Duration
	// OrphanGrace is the least age (from its UUIDv7 time) of a hook record
	// without any worker before it counts as lost: the connect script
	// stores the record before ocserv lists the worker as connected.
	OrphanGrace time.Duration
	// CookieKeep is how long a cookie is remembered after its last worker,
	// so a client that roams later is still joined.
	CookieKeep time.Duration

	st  tableState
	now time.Time // of the observation being processed
}

// NewTable makes an empty table.
func NewTable(spoolID string, interval time.Duration) *Table {
	t := &Table{SpoolID: spoolID, Interval: interval, Grace: 5 * time.Second, OrphanGrace: time.Minute, CookieKeep: 24 * time.Hour}
	t.reset()
	return t
}

func (t *Table) reset() {
	t.st = tableState{V: 1, SpoolID: t.SpoolID, Workers: map[string]*worker{}, Cookies: map[string]*cookie{}, Orphans: map[string]*orphan{}, Reported: map[string]time.Time{}}
}

// Marshal is the table's persistent form.
func (t *Table) Marshal() ([]byte, error) { return json.Marshal(&t.st) }

// Unmarshal restores a table saved by Marshal. A state of another spool
// (a restored or copied file) is ignored: its facts are not this spool's.
func (t *Table) Unmarshal(b []byte) error {
	var st tableState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("read live state: %w", err)
	}
	if st.V != 1 {
		return fmt.Errorf("read live state: version %d, want 1", st.V)
	}
	if st.SpoolID != t.SpoolID {
		return fmt.Errorf("read live state: made for spool %s, this spool is %s", st.SpoolID, t.SpoolID)
	}
	t.reset()
	for k, w := range st.Workers {
		if w != nil {
			t.st.Workers[k] = w
		}
	}
	for k, c := range st.Cookies {
		if c != nil {
			t.st.Cookies[k] = c
		}
	}
	for k, o := range st.Orphans {
		if o != nil {
			t.st.Orphans[k] = o
		}
	}
	for k, v := range st.Reported {
		t.st.Reported[k] = v
	}
	return nil
}

// WorkerInfo is what the table knows of a live worker, for snapshots and
// metrics.
type WorkerInfo struct {
	SessionUID, LogicalSessionUID string
}

// Lookup returns what the table links to a worker.
func (t *Table) Lookup(id int, device string) (WorkerInfo, bool) {
	w, ok := t.st.Workers[hookKey(id, device)]
	if !ok {
		return WorkerInfo{}, false
	}
	return WorkerInfo{SessionUID: w.UID, LogicalSessionUID: w.Logical}, true
}

func hookKey(id int, device string) string { return strconv.Itoa(id) + "-" + device }

// uuidTime reads the time of a UUIDv7 (the hook's session_uid).
func uuidTime(s string) (time.Time, bool) {
	u, err := uuid.Parse(s)
	if err != nil || u.Version() != 7 {
		return time.Time{}, false
	}
	sec, nsec := u.Time().UnixTime()
	return time.Unix(sec, nsec), true
}

// plausible reports whether a hook record's uid can belong to a worker that
// connected at ca. The hook makes the uid in the connect script, after the
// worker started (ocserv's connect time) and after authentication; 1.1.6
// prints the connect time to the minute, so the real time is up to a
// minute later than printed. A uid that is not a UUIDv7 cannot be checked
// and is accepted.
func plausible(uid string, ca time.Time, coarse bool) bool {
	ut, ok := uuidTime(uid)
	if !ok || ca.IsZero() {
		return true
	}
	lo := ca.Add(-5 * time.Second)
	hi := ca.Add(authWindow)
	if coarse {
		hi = hi.Add(time.Minute)
	}
	return !ut.Before(lo) && !ut.After(hi)
}

// authWindow bounds how long after ocserv's connect time the connect script
// can run (a user typing a password, a slow second factor).
const authWindow = 15 * time.Minute

// sameConnect reports whether two readings of a connect time are the same
// worker's: equal to the second, or within the minute where one is coarse.
func sameConnect(a time.Time, ac bool, b time.Time, bc bool) bool {
	if a.IsZero() || b.IsZero() {
		return true
	}
	d := a.Sub(b)
	if d < 0 {
		d = -d
	}
	if ac || bc {
		return d <= time.Minute
	}
	return d <= 2*time.Second
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// sessionOf maps occtl's fields to the hook's session object.
func sessionOf(u ocserv.User) events.Session {
	s := events.Session{
		ID: u.ID, Username: u.Username, Groupname: u.Groupname, VHost: u.VHost, Device: u.Device,
		UserAgent: u.UserAgent, Hostname: u.Hostname,
	}
	str := func(a interface {
		IsValid() bool
		String() string
	}) string {
		if a.IsValid() {
			return a.String()
		}
		return ""
	}
	s.IPReal = str(u.RemoteIP)
	s.IPRealLocal = str(u.LocalDeviceIP)
	s.IPRemote = str(u.IPv4)
	s.IPLocal = str(u.PTPIPv4)
	s.IPv6Remote = str(u.IPv6)
	s.IPv6Local = str(u.PTPIPv6)
	return s
}

// Observe takes one reading and returns the events it implies. The table
// changes as if every event were written; a caller that fails to write them
// restores the table from Marshal's output taken before.
func (t *Table) Observe(o Observation) Result {
	now := o.Time
	t.now = now
	var res Result
	alive := map[string]bool{}
	for _, u := range o.Users {
		if u.Device != "" {
			alive[hookKey(u.ID, u.Device)] = true
		}
	}
	users := append([]ocserv.User(nil), o.Users...)
	sort.Slice(users, func(i, j int) bool { return users[i].ID < users[j].ID })
	seenKeys := map[string]bool{}
	for _, u := range users {
		if u.State != "connected" || u.Device == "" || u.Username == "" {
			continue
		}
		key := hookKey(u.ID, u.Device)
		if seenKeys[key] {
			continue
		}
		seenKeys[key] = true
		t.observeWorker(&res, key, u, o.Hook, now)
	}
	// Workers occtl no longer lists.
	keys := sortedKeys(t.st.Workers)
	for _, key := range keys {
		w := t.st.Workers[key]
		if seenKeys[key] || alive[key] {
			continue
		}
		w.Missing++
		if w.Missing < 2 || now.Sub(w.LastSeen) < t.Grace {
			continue
		}
		if w.UID != "" && o.Hook[key] == w.UID {
			t.lost(&res, key, w.UID, w, now, "the worker is gone and no disconnect was recorded (ocserv or the script crashed, or the disconnect script did not run)")
		}
		delete(t.st.Workers, key)
	}
	// Hook records without any worker (e.g. sessions that ended while the
	// shipper was down, without their disconnect script).
	for _, key := range sortedKeys(o.Hook) {
		uid := o.Hook[key]
		if alive[key] {
			delete(t.st.Orphans, key)
			continue
		}
		if _, ok := t.st.Workers[key]; ok {
			continue // followed above
		}
		or := t.st.Orphans[key]
		if or == nil || or.UID != uid {
			or = &orphan{UID: uid, FirstSeen: now}
			t.st.Orphans[key] = or
		}
		or.Polls++
		if or.Polls < 2 || now.Sub(or.FirstSeen) < t.Grace {
			continue
		}
		if ut, ok := uuidTime(uid); ok && now.Sub(ut) < t.OrphanGrace {
			continue
		}
		t.lost(&res, key, uid, nil, now, "recorded connect without a worker in occtl and without a disconnect")
		delete(t.st.Orphans, key)
	}
	for key := range t.st.Orphans {
		if _, ok := o.Hook[key]; !ok {
			delete(t.st.Orphans, key)
		}
	}
	// Forget cookies nobody used for CookieKeep, and old reports.
	for k, c := range t.st.Cookies {
		if now.Sub(c.LastSeen) > t.CookieKeep {
			delete(t.st.Cookies, k)
		}
	}
	for k, at := range t.st.Reported {
		if now.Sub(at) > 7*24*time.Hour {
			delete(t.st.Reported, k)
		}
	}
	return res
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (t *Table) observeWorker(res *Result, key string, u ocserv.User, hook map[string]string, now time.Time) {
	w := t.st.Workers[key]
	if w != nil && (w.Cookie != "" && u.FullSession != "" && w.Cookie != u.FullSession ||
		!sameConnect(w.ConnectedAt, w.Coarse, u.ConnectedAt, u.ConnectedAtCoarse)) {
		// Another worker under the same ID and device (PID reuse between
		// two readings): the old one is gone.
		if w.UID != "" && hook[key] == w.UID && w.UIDFrom == "hook" && !plausible(w.UID, u.ConnectedAt, u.ConnectedAtCoarse) {
			t.lost(res, key, w.UID, w, now, "the worker was replaced by another with the same ID and no disconnect was recorded")
		}
		w = nil
	}
	if w == nil {
		w = &worker{ID: u.ID, Device: u.Device, Cookie: u.FullSession, Short: u.Session,
			ConnectedAt: u.ConnectedAt, Coarse: u.ConnectedAtCoarse, FirstSeen: now}
		t.st.Workers[key] = w
	}
	w.LastSeen, w.Missing = now, 0
	w.Session = sessionOf(u)
	if u.HasCounters {
		w.RX, w.TX, w.HasCounters = u.RX, u.TX, true
	}

	// Link the hook's session_uid.
	if uid, ok := hook[key]; ok && uid != w.UID {
		if plausible(uid, w.ConnectedAt, w.Coarse) {
			if w.UID == "" || w.UIDFrom == "reconcile" && uid != w.UID {
				// A late hook record wins over nothing; over our own
				// reconciled uid it cannot happen (we wrote that record),
				// unless the hook rewrote it: follow the hook.
				w.UID, w.UIDFrom = uid, "hook"
			}
		} else if w.UID == "" {
			// A record left by an earlier worker with this ID and device:
			// that session was lost; this one has no record yet.
			t.lost(res, key, uid, nil, now, "a newer worker with the same ID and device has no connect recorded; the recorded one never disconnected")
		}
	}
	if w.UID == "" {
		if w.NoHook == 0 {
			w.NoHookSince = now
		}
		w.NoHook++
		if w.NoHook < 2 || now.Sub(w.NoHookSince) < time.Second {
			return
		}
		w.UID = derivedID(t.SpoolID, "session", key, w.ConnectedAt.Unix(), w.Cookie)
		w.UIDFrom = "reconcile"
		if res.Store == nil {
			res.Store = map[string]string{}
		}
		res.Store[key] = w.UID
		w.Logical = w.UID
		if c := t.st.Cookies[cookieKey(w)]; c != nil && cookieKey(w) != "" {
			w.Logical = c.Logical
		}
		rec := &Reconcile{Action: ActionSeen, Reason: "occtl lists a session with no connect event recorded (hook missed it or the agent was installed during the session)"}
		t.fill(rec, key, w, now)
		t.report(res, rec, w)
	}
	t.link(res, key, w, now)
	t.account(res, w, now)
}

// link joins the worker to the other workers of its session cookie.
func (t *Table) link(res *Result, key string, w *worker, now time.Time) {
	ck := w.Cookie
	if ck == "" {
		ck = w.Short
	}
	if ck == "" {
		if w.Logical == "" {
			w.Logical = w.UID
		}
		return
	}
	c := t.st.Cookies[ck]
	if c == nil {
		c = &cookie{Logical: w.UID, UIDs: []string{w.UID}, Short: w.Short}
		t.st.Cookies[ck] = c
	}
	c.LastSeen = now
	w.Logical = c.Logical
	for _, u := range c.UIDs {
		if u == w.UID {
			return
		}
	}
	prev := append([]string(nil), c.UIDs...)
	c.UIDs = append(c.UIDs, w.UID)
	if len(c.UIDs) > 64 {
		c.UIDs = append(c.UIDs[:1:1], c.UIDs[len(c.UIDs)-63:]...)
	}
	rec := &Reconcile{Action: ActionJoined, Reason: "a new worker with the session cookie of an earlier one (the client reconnected with its cookie)", JoinedSessionUIDs: prev}
	t.fill(rec, key, w, now)
	t.report(res, rec, w)
}

func (t *Table) fill(rec *Reconcile, key string, w *worker, now time.Time) {
	rec.HookKey = key
	rec.SessionID = w.Short
	rec.LogicalSessionUID = w.Logical
	if rec.Action == ActionJoined {
		rec.LogicalSessionUID = t.st.Cookies[cookieKey(w)].Logical
	}
	rec.ConnectedAt, rec.ConnectedAtCoarse = fmtTime(w.ConnectedAt), w.Coarse
	if w.HasCounters {
		in, out := w.RX, w.TX
		rec.BytesIn, rec.BytesOut = &in, &out
	}
	rec.ObservedAt = fmtTime(now)
}

func cookieKey(w *worker) string {
	if w.Cookie != "" {
		return w.Cookie
	}
	return w.Short
}

// report emits a reconcile event once per fact.
func (t *Table) report(res *Result, rec *Reconcile, w *worker) {
	var id string
	switch rec.Action {
	case ActionSeen:
		id = derivedID(t.SpoolID, "reconcile", ActionSeen, rec.HookKey, w.UID)
	case ActionJoined:
		id = derivedID(t.SpoolID, "reconcile", ActionJoined, rec.LogicalSessionUID, w.UID)
	}
	t.emitReconcile(res, id, w.UID, &w.Session, rec)
}

func (t *Table) emitReconcile(res *Result, id, uid string, s *events.Session, rec *Reconcile) {
	if _, done := t.st.Reported[id]; done {
		return
	}
	t.st.Reported[id] = t.now
	var sess *events.Session
	if s != nil && s.ID != 0 {
		c := *s
		sess = &c
	}
	res.Events = append(res.Events, Derived{Type: events.Reconcile, ID: id, SessionUID: uid, Session: sess, Payload: rec})
}

// lost reports a session whose worker is gone without a disconnect, and
// asks for its hook record to be removed (the worker will never run its
// disconnect script; a later worker with the same ID and device must not
// inherit the uid).
func (t *Table) lost(res *Result, key, uid string, w *worker, now time.Time, reason string) {
	rec := &Reconcile{Action: ActionLost, Reason: reason, HookKey: key, ObservedAt: fmtTime(now)}
	var sess *events.Session
	if w != nil {
		rec.SessionID, rec.LogicalSessionUID = w.Short, w.Logical
		rec.ConnectedAt, rec.ConnectedAtCoarse = fmtTime(w.ConnectedAt), w.Coarse
		rec.LastSeen = fmtTime(w.LastSeen)
		if w.HasCounters {
			in, out := w.RX, w.TX
			rec.BytesIn, rec.BytesOut = &in, &out
		}
		sess = &w.Session
	} else {
		id, dev, _ := strings.Cut(key, "-")
		n, _ := strconv.Atoi(id)
		sess = &events.Session{ID: n, Device: dev}
		for _, c := range t.st.Cookies {
			for _, u := range c.UIDs {
				if u == uid {
					rec.SessionID, rec.LogicalSessionUID = c.Short, c.Logical
				}
			}
		}
	}
	t.emitReconcile(res, derivedID(t.SpoolID, "reconcile", ActionLost, uid), uid, sess, rec)
	res.Drop = append(res.Drop, key)
}

// account emits the worker's interim update when its interval slot is due.
// Slots count whole intervals since the connect time, so each session
// reports at its own phase (no burst of every session at once) and a slot
// is one fact: its event id is the same whoever computes it.
func (t *Table) account(res *Result, w *worker, now time.Time) {
	if t.Interval <= 0 || !w.HasCounters || w.UID == "" {
		return
	}
	base := w.ConnectedAt
	if base.IsZero() {
		base = w.FirstSeen
	}
	if now.Before(base) {
		return
	}
	slot := int64(now.Sub(base) / t.Interval)
	if slot < 1 || slot <= w.LastSlot {
		return
	}
	a := &Accounting{
		Slot: slot, SessionID: w.Short, LogicalSessionUID: w.Logical,
		BytesIn: w.RX, BytesOut: w.TX,
		ConnectedAt: fmtTime(w.ConnectedAt), ConnectedAtCoarse: w.Coarse,
		DurationS:  uint64(now.Sub(base) / time.Second),
		ObservedAt: fmtTime(now),
	}
	prevAt := w.AcctAt
	if prevAt.IsZero() {
		prevAt = base
	}
	a.IntervalS = now.Sub(prevAt).Seconds()
	if w.RX < w.AcctRX || w.TX < w.AcctTX {
		a.CounterReset = true
		a.DeltaIn, a.DeltaOut = w.RX, w.TX
	} else {
		a.DeltaIn, a.DeltaOut = w.RX-w.AcctRX, w.TX-w.AcctTX
	}
	w.Interims++
	a.Interim = w.Interims
	w.LastSlot, w.AcctRX, w.AcctTX, w.AcctAt = slot, w.RX, w.TX, now
	s := w.Session
	res.Events = append(res.Events, Derived{
		Type: events.Accounting, ID: derivedID(t.SpoolID, "accounting", w.UID, slot),
		SessionUID: w.UID, Session: &s, Payload: a,
	})
}

// Workers is the number of workers followed.
func (t *Table) Workers() int { return len(t.st.Workers) }
