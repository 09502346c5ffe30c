package ledger

import (
	"sort"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

// Changes are the rows one batch writes. Sessions holds whole rows (insert
// or replace); Usage, Servers are increments the engine adds to what is
// stored; the rest are inserts that keep an existing row (ON CONFLICT DO
// NOTHING).
type Changes struct {
	// Sessions are rows whose identity, times or state changed (the
	// sessions table); Counters are rows whose counters changed (the
	// narrow session_counters table, which most events touch alone).
	Sessions []*Session
	Counters []*Session
	// New are the uids among Sessions and Counters that the batch
	// created (not loaded from the store): an engine may insert them
	// without looking for a stored row first.
	New map[string]bool
	// Changed are, for each stored (not New) row among Sessions, the
	// identity columns the batch changed: an engine may update those
	// alone.
	Changed map[string]ColumnSet
	Links   map[string]string // session_uid → logical_uid
	Samples []Sample
	Usage   []UsageDelta
	// Monthly is Usage summed per month (Day "YYYY-MM") and user, over
	// servers (ServerID ""), for usage_monthly.
	Monthly  []UsageDelta
	Audit    []AuditEntry
	Notices  []SpoolNotice
	Servers  []ServerDelta
	Rejected []Rejected
	Position Position
}

// ServerDelta is what a batch saw of one server: the engine keeps the
// earliest first_seen, the latest last_seen (with its type and spool_id)
// and adds the counts.
type ServerDelta struct {
	ServerID  string
	SpoolID   string
	FirstSeen time.Time
	LastSeen  time.Time
	LastType  string
	Events    int64
	Dropped   int64
}

// projection is the state of one batch: the session rows it read or made,
// and the increments it accumulated.
type projection struct {
	sessions map[string]*Session
	orig     map[string]Session // the rows as loaded
	links    map[string]string  // stored links (loaded) and new ones
	newLinks map[string]string
	touched  map[string]bool
	usage    map[usageKey]*UsageDelta
	servers  map[string]*ServerDelta
	c        Changes
}

type usageKey struct{ day, user, server string }

func newProjection(sessions map[string]*Session, links map[string]string) *projection {
	p := &projection{sessions: map[string]*Session{}, orig: map[string]Session{}, links: map[string]string{},
		newLinks: map[string]string{}, touched: map[string]bool{}, usage: map[usageKey]*UsageDelta{}, servers: map[string]*ServerDelta{}}
	p.load(sessions, links)
	return p
}

// load adds stored rows and links read for sessions the projection has not
// seen yet (a later chunk of the same transaction). What the projection
// already holds for a uid is newer than the store's and stays.
func (p *projection) load(sessions map[string]*Session, links map[string]string) {
	for uid, x := range sessions {
		if _, ok := p.sessions[uid]; ok {
			continue
		}
		p.sessions[uid] = x
		p.orig[uid] = *x
	}
	for uid, l := range links {
		if _, ok := p.links[uid]; !ok {
			p.links[uid] = l
		}
	}
}

// Project applies events, in order, to the given session rows (which it
// changes in place) and returns the rows to write. It is the ledger's whole
// event logic (docs/ledger.md, "Counting without double counting"), and it
// is pure: the same rows and events give the same changes on every engine.
// Every event must be new (already checked against applied_events).
func Project(sessions map[string]*Session, links map[string]string, evs []*Event) *Changes {
	p := newProjection(sessions, links)
	for _, ev := range evs {
		p.apply(ev)
	}
	return p.finish()
}

func (p *projection) finish() *Changes {
	uids := make([]string, 0, len(p.touched))
	for uid := range p.touched {
		uids = append(uids, uid)
	}
	sort.Strings(uids)
	for _, uid := range uids {
		cur := p.sessions[uid]
		o, loaded := p.orig[uid]
		if !loaded {
			if p.c.New == nil {
				p.c.New = map[string]bool{}
			}
			p.c.New[uid] = true
		}
		if !loaded {
			p.c.Sessions = append(p.c.Sessions, cur)
		} else if d := IdentityDiff(&o, cur); d != 0 {
			if p.c.Changed == nil {
				p.c.Changed = map[string]ColumnSet{}
			}
			p.c.Changed[uid] = d
			p.c.Sessions = append(p.c.Sessions, cur)
		}
		if !loaded || !sameCounters(&o, cur) {
			p.c.Counters = append(p.c.Counters, cur)
		}
	}
	if len(p.newLinks) > 0 {
		p.c.Links = p.newLinks
	}
	for _, u := range p.usage {
		if u.BytesIn != 0 || u.BytesOut != 0 || u.Seconds != 0 || u.Sessions != 0 {
			p.c.Usage = append(p.c.Usage, *u)
		}
	}
	sort.Slice(p.c.Usage, func(i, j int) bool {
		a, b := p.c.Usage[i], p.c.Usage[j]
		if a.Day != b.Day {
			return a.Day < b.Day
		}
		if a.Username != b.Username {
			return a.Username < b.Username
		}
		return a.ServerID < b.ServerID
	})
	p.c.Monthly = Monthly(p.c.Usage)
	for _, s := range p.servers {
		p.c.Servers = append(p.c.Servers, *s)
	}
	sort.Slice(p.c.Servers, func(i, j int) bool { return p.c.Servers[i].ServerID < p.c.Servers[j].ServerID })
	return &p.c
}

func (p *projection) apply(ev *Event) {
	p.server(ev)
	switch ev.Type {
	case events.Connect:
		p.connect(ev)
	case events.Disconnect:
		p.disconnect(ev)
	case events.HostUpdate:
		s := p.session(ev, "host-update", true)
		s.Hostname = pick(ev.Session.Hostname, s.Hostname)
		s.UserAgent = pick(ev.Session.UserAgent, s.UserAgent)
		s.DeviceType = pick(ev.Session.DeviceType, s.DeviceType)
		s.DevicePlatform = pick(ev.Session.DevicePlatform, s.DevicePlatform)
	case events.Accounting:
		p.accounting(ev)
	case events.Reconcile:
		p.reconcile(ev)
	case events.Audit:
		p.c.Audit = append(p.c.Audit, *ev.Audit)
	case events.Overflow, events.Quarantine:
		p.c.Notices = append(p.c.Notices, *ev.Notice)
		if ev.Type == events.Overflow {
			p.servers[ev.ServerID].Dropped += ev.Notice.Events
		}
	}
}

func (p *projection) server(ev *Event) {
	s := p.servers[ev.ServerID]
	if s == nil {
		s = &ServerDelta{ServerID: ev.ServerID, FirstSeen: ev.Time, LastSeen: ev.Time, LastType: string(ev.Type), SpoolID: ev.SpoolID}
		p.servers[ev.ServerID] = s
	}
	if ev.Time.Before(s.FirstSeen) {
		s.FirstSeen = ev.Time
	}
	if !ev.Time.Before(s.LastSeen) {
		s.LastSeen, s.LastType = ev.Time, string(ev.Type)
		if ev.SpoolID != "" {
			s.SpoolID = ev.SpoolID
		}
	}
	s.Events++
}

// session returns the row of ev's session_uid, making it when this is the
// first event about it. Hook events (authoritative) overwrite the
// identity fields they carry; shipper events (occtl's view) only fill
// what is missing.
func (p *projection) session(ev *Event, origin string, authoritative bool) *Session {
	uid := ev.SessionUID
	s := p.sessions[uid]
	created := s == nil
	if created {
		// Until a source tells the connect time, the first event's time
		// stands for it, flagged coarse (an upper bound).
		s = &Session{UID: uid, LogicalUID: uid, ServerID: ev.ServerID, SpoolID: ev.SpoolID, State: StateOpen, Origin: origin,
			ConnectedAt: ev.Time, ConnectedCoarse: true}
		if l, ok := p.links[uid]; ok {
			s.LogicalUID = l
		}
		p.sessions[uid] = s
	}
	p.touched[uid] = true
	if s.SpoolID == "" {
		s.SpoolID = ev.SpoolID
	}
	set := fill
	if authoritative {
		set = pick
	}
	e := ev.Session
	s.Username = set(e.Username, s.Username)
	s.Groupname = set(e.Groupname, s.Groupname)
	s.VHost = set(e.VHost, s.VHost)
	s.Device = set(e.Device, s.Device)
	if e.ID != 0 && (authoritative || s.WorkerID == 0) {
		s.WorkerID = e.ID
	}
	s.IPReal = set(e.IPReal, s.IPReal)
	s.IPRealLocal = set(e.IPRealLocal, s.IPRealLocal)
	s.VPNIPv4 = set(e.IPRemote, s.VPNIPv4)
	s.VPNIPv4Local = set(e.IPLocal, s.VPNIPv4Local)
	s.VPNIPv6 = set(e.IPv6Remote, s.VPNIPv6)
	s.VPNIPv6Local = set(e.IPv6Local, s.VPNIPv6Local)
	s.Hostname = set(e.Hostname, s.Hostname)
	s.UserAgent = set(e.UserAgent, s.UserAgent)
	s.DeviceType = set(e.DeviceType, s.DeviceType)
	s.DevicePlatform = set(e.DevicePlatform, s.DevicePlatform)
	if created {
		// Counted once per session, on the day it started (or, when
		// that is not known yet, the day of its first event).
		day := ev.Time
		if !(ev.Type == events.Connect && ev.Admitted != nil && !*ev.Admitted) {
			p.addUsage(s, day, 0, 0, 0, 1)
		}
	}
	return s
}

// connectedAt records a connect time, keeping the best one known: the
// hook's (exact) over an exact shipper time over a coarse one, and of two
// coarse ones the earlier.
func (s *Session) connectedAt(t time.Time, coarse bool) {
	if t.IsZero() {
		return
	}
	switch {
	case s.ConnectedAt.IsZero(), s.ConnectedCoarse && !coarse,
		s.ConnectedCoarse && coarse && t.Before(s.ConnectedAt):
		s.ConnectedAt, s.ConnectedCoarse = t, coarse
	}
}

func (p *projection) connect(ev *Event) {
	s := p.session(ev, string(events.Connect), true)
	s.ConnectedAt, s.ConnectedCoarse = ev.Time, false
	if ev.Admitted != nil && !*ev.Admitted && s.State == StateOpen {
		s.State, s.EndReason = StateRefused, ev.Refusal
		s.EndedAt, s.EndedCoarse = ev.Time, false
	}
}

func (p *projection) disconnect(ev *Event) {
	s := p.session(ev, string(events.Disconnect), true)
	st := ev.Stats
	if st.DurationS >= 0 {
		s.connectedAt(ev.Time.Add(-time.Duration(st.DurationS)*time.Second), true)
	}
	if s.State != StateRefused {
		s.State, s.EndReason = StateDisconnect, ""
	}
	s.EndedAt, s.EndedCoarse = ev.Time, false
	if s.Settled {
		return
	}
	// A disconnect settles the session: ocserv's final totals replace
	// whatever the samples added up to.
	secs := st.DurationS
	if secs < 0 {
		secs = s.Seconds
		if ev.Time.After(s.ConnectedAt) {
			secs = int64(ev.Time.Sub(s.ConnectedAt) / time.Second)
		}
	}
	p.addUsage(s, ev.Time, st.BytesIn-s.BytesIn, st.BytesOut-s.BytesOut, secs-s.Seconds, 0)
	s.BytesIn, s.BytesOut, s.Seconds = st.BytesIn, st.BytesOut, secs
	s.AcctIn, s.AcctOut = max(s.AcctIn, st.BytesIn), max(s.AcctOut, st.BytesOut)
	s.Settled = true
}

func (p *projection) accounting(ev *Event) {
	a := ev.Acct
	s := p.session(ev, string(events.Accounting), false)
	s.connectedAt(a.ConnectedAt, a.ConnectedCoarse)
	s.CookieID = fill(a.SessionID, s.CookieID)
	if a.LogicalUID != "" {
		p.link(s.UID, a.LogicalUID)
	}
	// The session's strings, not the event's: a string of the event
	// would keep all of them (one allocation) until the rows are written.
	server := ev.ServerID
	if server == s.ServerID {
		server = s.ServerID
	}
	p.c.Samples = append(p.c.Samples, Sample{SessionUID: s.UID, Slot: a.Slot, ServerID: server, ObservedAt: a.ObservedAt,
		BytesIn: a.BytesIn, BytesOut: a.BytesOut, DeltaIn: a.DeltaIn, DeltaOut: a.DeltaOut, DurationS: a.DurationS})
	s.Samples++
	if a.ObservedAt.After(s.LastSampleAt) {
		s.LastSampleAt = a.ObservedAt
	}
	if a.CounterReset {
		p.count(s, a.ObservedAt, a.DeltaIn, a.DeltaOut, a.DurationS)
		s.AcctIn, s.AcctOut = a.BytesIn, a.BytesOut
		return
	}
	p.counters(s, a.ObservedAt, a.BytesIn, a.BytesOut, a.DurationS)
}

// counters counts the increase of a worker's totals over the highest seen.
func (p *projection) counters(s *Session, at time.Time, in, out, secs int64) {
	p.count(s, at, max(0, in-s.AcctIn), max(0, out-s.AcctOut), secs)
	s.AcctIn, s.AcctOut = max(s.AcctIn, in), max(s.AcctOut, out)
}

// count adds byte increases and the increase of connected seconds (secs
// is the session's duration at that moment, -1 if unknown) to the
// session and its user's day, unless the session is settled.
func (p *projection) count(s *Session, at time.Time, dIn, dOut, secs int64) {
	if s.Settled {
		return
	}
	dSecs := int64(0)
	if secs > s.Seconds {
		dSecs = secs - s.Seconds
	}
	p.addUsage(s, at, dIn, dOut, dSecs, 0)
	s.BytesIn += dIn
	s.BytesOut += dOut
	s.Seconds += dSecs
}

func (p *projection) reconcile(ev *Event) {
	r := ev.Rec
	s := p.session(ev, string(events.Reconcile), false)
	s.connectedAt(r.ConnectedAt, r.ConnectedCoarse)
	s.CookieID = fill(r.SessionID, s.CookieID)
	if r.LogicalUID != "" {
		p.link(s.UID, r.LogicalUID)
		for _, j := range r.JoinedUIDs {
			p.link(j, r.LogicalUID)
		}
	}
	if r.Action != "lost" {
		return
	}
	end, coarse := r.LastSeen, true
	if end.IsZero() {
		end = r.ObservedAt
	}
	if s.State == StateOpen {
		s.State, s.EndReason = StateLost, r.Reason
		s.EndedAt, s.EndedCoarse = end, coarse
	}
	if s.Settled {
		return
	}
	secs := int64(-1)
	if end.After(s.ConnectedAt) {
		secs = int64(end.Sub(s.ConnectedAt) / time.Second)
	}
	in, out := r.BytesIn, r.BytesOut
	if in < 0 {
		in = s.AcctIn
	}
	if out < 0 {
		out = s.AcctOut
	}
	p.counters(s, end, in, out, secs)
}

// link records that uid belongs to the logical session logical, on the
// row when it exists (or is made later) and in session_links. A session
// with no row there is its own logical session, so that link is not
// stored: nearly every session's accounting names its own uid, and the
// table holds the roamed workers alone instead of a row per session
// (migration 00009 removed the rows earlier versions wrote).
func (p *projection) link(uid, logical string) {
	cur, ok := p.links[uid]
	if cur == logical || !ok && logical == uid {
		return
	}
	p.links[uid] = logical
	p.newLinks[uid] = logical
	if s := p.sessions[uid]; s != nil && s.LogicalUID != logical {
		s.LogicalUID = logical
		p.touched[uid] = true
	}
}

func (p *projection) addUsage(s *Session, at time.Time, in, out, secs, sessions int64) {
	if in == 0 && out == 0 && secs == 0 && sessions == 0 {
		return
	}
	k := usageKey{Day(at), s.Username, s.ServerID}
	u := p.usage[k]
	if u == nil {
		u = &UsageDelta{Day: k.day, Username: k.user, ServerID: k.server}
		p.usage[k] = u
	}
	u.BytesIn += in
	u.BytesOut += out
	u.Seconds += secs
	u.Sessions += sessions
}

// Day is t's UTC date, the key of usage_daily.
func Day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// pick prefers the new value when there is one.
func pick(v, old string) string {
	if v != "" {
		return v
	}
	return old
}

// fill keeps the old value when there is one.
func fill(v, old string) string {
	if old != "" {
		return old
	}
	return v
}

// sameCounters compares the columns of session_counters.
func sameCounters(a, b *Session) bool {
	return a.BytesIn == b.BytesIn && a.BytesOut == b.BytesOut && a.Seconds == b.Seconds && a.Samples == b.Samples &&
		a.LastSampleAt.Equal(b.LastSampleAt) && a.Settled == b.Settled && a.AcctIn == b.AcctIn && a.AcctOut == b.AcctOut
}

// Monthly sums daily deltas per month and user (over servers), sorted.
func Monthly(daily []UsageDelta) []UsageDelta {
	type key struct{ month, user string }
	sums := map[key]*UsageDelta{}
	var keys []key
	for _, u := range daily {
		k := key{u.Day[:7], u.Username}
		m := sums[k]
		if m == nil {
			m = &UsageDelta{Day: k.month, Username: k.user}
			sums[k] = m
			keys = append(keys, k)
		}
		m.BytesIn += u.BytesIn
		m.BytesOut += u.BytesOut
		m.Seconds += u.Seconds
		m.Sessions += u.Sessions
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].month != keys[j].month {
			return keys[i].month < keys[j].month
		}
		return keys[i].user < keys[j].user
	})
	out := make([]UsageDelta, 0, len(keys))
	for _, k := range keys {
		if m := sums[k]; m.BytesIn != 0 || m.BytesOut != 0 || m.Seconds != 0 || m.Sessions != 0 {
			out = append(out, *m)
		}
	}
	return out
}
