package console

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/livestate"
)

// Live is who is online now across the fleet, fed from NATS: the latest
// users, status and claim of each server from the state bucket (a watch,
// so every snapshot arrives as it is written), and the connect,
// disconnect and reconcile events from the events subjects, which arrive
// within milliseconds of the hook while snapshots come every interval. A
// session seen in an event after the server's latest snapshot is added
// (or removed) until the next snapshot covers it.
type Live struct {
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	servers map[string]*liveServer
	subs    map[chan struct{}]struct{}
	// The computed views, made again only after a change (or after
	// viewTTL, for the time-dependent clone window): pages and every open
	// stream read them at each update.
	ver     uint64
	view    []ServerLive
	byUser  map[string][]OnlineSession
	viewVer uint64
	viewAt  time.Time
	// ready is closed when the bucket's initial values have been read.
	ready     chan struct{}
	readyOnce sync.Once
	err       string // why the bucket cannot be watched, "" when it is
}

// OnlineSession is one worker online now.
type OnlineSession struct {
	ServerID        string
	Username        string
	Groupname       string
	SessionUID      string
	LogicalUID      string
	WorkerID        int
	Device          string
	RealIP          string
	VPNIPv4         string
	VPNIPv6         string
	UserAgent       string
	Hostname        string
	ConnectedAt     time.Time
	ConnectedCoarse bool
	BytesIn         int64
	BytesOut        int64
	HasCounters     bool
	// Source is "snapshot" (occtl listed it at the server's latest
	// reading) or "event" (a connect or reconcile since then).
	Source string
}

// ServerLive is one server's live state.
type ServerLive struct {
	ServerID      string
	Status        *livestate.StatusItem
	StatusAt      time.Time
	OcservVersion string
	Sessions      []OnlineSession
	Users         int // distinct user names among Sessions
	// RateIn/RateOut are bytes per second between the last two status
	// readings (in = from the clients); HasRate is false until two exist.
	RateIn, RateOut float64
	HasRate         bool
	LastEvent       time.Time
	// LastSeen is the newest of the status reading and the last event.
	LastSeen time.Time
	Claim    *livestate.Claim
	// Clones lists the spool ids seen in this server's events within
	// cloneWindow when there is more than one, or one that is not the
	// claim holder's: two hosts publishing under one server_id.
	Clones []string
}

const (
	// cloneWindow: spool ids seen in events within this long count as
	// publishing now.
	cloneWindow = 10 * time.Minute
	// snapSkew absorbs the time between occtl's reading and the
	// snapshot's stamp.
	snapSkew = 2 * time.Second
)

type liveServer struct {
	id string

	status   *livestate.StatusItem
	statusAt time.Time
	version  string
	prevRX   uint64
	prevTX   uint64
	prevAt   time.Time
	rateIn   float64
	rateOut  float64
	hasRate  bool

	snap    map[string]OnlineSession
	snapAt  time.Time
	added   map[string]OnlineSession
	removed map[string]time.Time

	lastEvent time.Time
	claim     *livestate.Claim
	spools    map[string]time.Time
}

// NewLive makes an empty model; Run feeds it.
func NewLive(log *slog.Logger, now func() time.Time) *Live {
	if now == nil {
		now = time.Now
	}
	return &Live{log: log, now: now, servers: map[string]*liveServer{}, subs: map[chan struct{}]struct{}{}, ready: make(chan struct{})}
}

func (l *Live) server(id string) *liveServer {
	s, ok := l.servers[id]
	if !ok {
		s = &liveServer{id: id, snap: map[string]OnlineSession{}, added: map[string]OnlineSession{},
			removed: map[string]time.Time{}, spools: map[string]time.Time{}}
		l.servers[id] = s
	}
	return s
}

// Subscribe returns a channel poked (without blocking) at every change,
// and the function that stops it.
func (l *Live) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	l.mu.Lock()
	l.subs[ch] = struct{}{}
	l.mu.Unlock()
	return ch, func() {
		l.mu.Lock()
		delete(l.subs, ch)
		l.mu.Unlock()
	}
}

func (l *Live) changedLocked() {
	l.ver++
	for ch := range l.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (l *Live) subscribers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.subs)
}

// Ready is closed once the state bucket's current values are in.
func (l *Live) Ready() <-chan struct{} { return l.ready }

// Problem says why live state is missing, or "".
func (l *Live) Problem() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Run watches the state bucket and subscribes to the events subjects
// until ctx ends. A bucket that does not exist yet (no shipper ran) is
// looked for again every few seconds.
func (l *Live) Run(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, prefix, bucket string) error {
	sub, err := nc.Subscribe(prefix+".events.>", func(m *nats.Msg) { l.onEvent(m.Data) })
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	for {
		err := l.watch(ctx, js, bucket)
		if ctx.Err() != nil {
			return nil
		}
		l.mu.Lock()
		if l.err != err.Error() {
			l.log.Warn("console: cannot watch the state bucket; retrying", "bucket", bucket, "err", err.Error())
		}
		l.err = err.Error()
		l.mu.Unlock()
		l.readyOnce.Do(func() { close(l.ready) })
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(3 * time.Second):
		}
	}
}

func (l *Live) watch(ctx context.Context, js jetstream.JetStream, bucket string) error {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer w.Stop()
	l.mu.Lock()
	if l.err != "" {
		l.log.Info("console: watching the state bucket", "bucket", bucket)
	}
	l.err = ""
	l.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("the bucket's watch ended")
			}
			if e == nil {
				l.readyOnce.Do(func() { close(l.ready) })
				continue
			}
			l.onEntry(ctx, kv, e)
		}
	}
}

// onEntry applies one bucket entry: "<server_id>.users", ".status",
// ".claim" (parts "<server_id>.<kind>.<n>" are read with part 1, which is
// written last).
func (l *Live) onEntry(ctx context.Context, kv jetstream.KeyValue, e jetstream.KeyValueEntry) {
	sid, kind, ok := strings.Cut(e.Key(), ".")
	if !ok || strings.Contains(kind, ".") {
		return
	}
	deleted := e.Operation() != jetstream.KeyValuePut
	switch kind {
	case "claim":
		var c livestate.Claim
		if !deleted && json.Unmarshal(e.Value(), &c) != nil {
			return
		}
		l.mu.Lock()
		if deleted {
			l.server(sid).claim = nil
		} else {
			l.server(sid).claim = &c
		}
		l.changedLocked()
		l.mu.Unlock()
	case livestate.KindStatus:
		if deleted {
			return
		}
		var snap livestate.Snapshot
		if json.Unmarshal(e.Value(), &snap) != nil || len(snap.Items) == 0 {
			return
		}
		var st livestate.StatusItem
		if json.Unmarshal(snap.Items[0], &st) != nil {
			return
		}
		at, _ := time.Parse(time.RFC3339Nano, snap.Time)
		l.mu.Lock()
		l.server(sid).setStatus(&st, at, snap.OcservVersion)
		l.changedLocked()
		l.mu.Unlock()
	case livestate.KindUsers:
		if deleted {
			return
		}
		snap, err := livestate.ReadLatest(ctx, kv, sid, livestate.KindUsers)
		if err != nil {
			l.log.Debug("console: read users snapshot", "server", sid, "err", err.Error())
			return
		}
		at, _ := time.Parse(time.RFC3339Nano, snap.Time)
		items := make([]OnlineSession, 0, len(snap.Items))
		for _, raw := range snap.Items {
			var u livestate.UserItem
			if json.Unmarshal(raw, &u) != nil || (u.State != "" && u.State != "connected") {
				continue
			}
			items = append(items, fromUserItem(sid, u))
		}
		l.mu.Lock()
		l.server(sid).setUsers(items, at)
		l.changedLocked()
		l.mu.Unlock()
	}
}

func (s *liveServer) setStatus(st *livestate.StatusItem, at time.Time, version string) {
	if st.Online && !s.prevAt.IsZero() && at.After(s.prevAt) &&
		st.BytesInSinceStatsReset >= s.prevRX && st.BytesOutSinceReset >= s.prevTX {
		dt := at.Sub(s.prevAt).Seconds()
		s.rateIn = float64(st.BytesInSinceStatsReset-s.prevRX) / dt
		s.rateOut = float64(st.BytesOutSinceReset-s.prevTX) / dt
		s.hasRate = true
	} else if !st.Online {
		s.hasRate = false
	}
	if st.Online {
		s.prevRX, s.prevTX, s.prevAt = st.BytesInSinceStatsReset, st.BytesOutSinceReset, at
	}
	s.status, s.statusAt = st, at
	if version != "" {
		s.version = version
	}
}

func sessionKey(uid string, id int, device string) string {
	if uid != "" {
		return uid
	}
	return "w:" + device + "-" + strconv.Itoa(id)
}

func (s *liveServer) setUsers(items []OnlineSession, at time.Time) {
	s.snap = make(map[string]OnlineSession, len(items))
	for _, it := range items {
		s.snap[sessionKey(it.SessionUID, it.WorkerID, it.Device)] = it
	}
	s.snapAt = at
	cut := at.Add(-snapSkew)
	for k, a := range s.added {
		if a.ConnectedAt.Before(cut) {
			delete(s.added, k) // the snapshot lists it, or it is gone
		}
	}
	for k, t := range s.removed {
		if t.Before(cut) {
			delete(s.removed, k)
		}
	}
}

// onEvent applies one event message: connects and reconcile seen/joined
// add a session, disconnects and reconcile lost remove one; every event
// counts as a sign of life and names its spool.
func (l *Live) onEvent(data []byte) {
	var ev events.Event
	if json.Unmarshal(data, &ev) != nil || !events.IsToken(ev.ServerID, 256) {
		return
	}
	at, err := time.Parse(time.RFC3339Nano, ev.Time)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.server(ev.ServerID)
	if at.After(s.lastEvent) {
		s.lastEvent = at
	}
	if ev.SpoolID != "" && at.After(s.spools[ev.SpoolID]) {
		s.spools[ev.SpoolID] = at
	}
	key := ""
	if ev.Session != nil {
		key = sessionKey(ev.SessionUID, ev.Session.ID, ev.Session.Device)
	}
	switch ev.Type {
	case events.Connect:
		if ev.Session == nil || ev.Admitted == nil || !*ev.Admitted || !at.After(s.snapAt.Add(-snapSkew)) {
			break
		}
		s.added[key] = fromEvent(&ev, at)
		delete(s.removed, key)
	case events.Disconnect:
		if key == "" {
			break
		}
		delete(s.added, key)
		s.removed[key] = at
	case events.Reconcile:
		if ev.Reconcile == nil || key == "" {
			break
		}
		var rec livestate.Reconcile
		if json.Unmarshal(*ev.Reconcile, &rec) != nil {
			break
		}
		switch rec.Action {
		case "lost":
			delete(s.added, key)
			s.removed[key] = at
		case "seen", "joined":
			if _, listed := s.snap[key]; listed {
				break
			}
			o := fromEvent(&ev, at)
			if t, err := time.Parse(time.RFC3339Nano, rec.ConnectedAt); err == nil {
				o.ConnectedAt, o.ConnectedCoarse = t, rec.ConnectedAtCoarse
			}
			o.LogicalUID = rec.LogicalSessionUID
			s.added[key] = o
		}
	}
	l.changedLocked()
}

func fromUserItem(sid string, u livestate.UserItem) OnlineSession {
	o := OnlineSession{
		ServerID: sid, Username: u.Username, Groupname: u.Groupname, SessionUID: u.SessionUID,
		LogicalUID: u.LogicalSessionUID, WorkerID: u.ID, Device: u.Device, RealIP: u.RemoteIP,
		VPNIPv4: u.IPv4, VPNIPv6: u.IPv6, UserAgent: u.UserAgent, Hostname: u.Hostname,
		ConnectedCoarse: u.ConnectedAtCoarse, Source: "snapshot",
	}
	o.ConnectedAt, _ = time.Parse(time.RFC3339Nano, u.ConnectedAt)
	if u.BytesIn != nil && u.BytesOut != nil {
		o.BytesIn, o.BytesOut, o.HasCounters = int64(min(*u.BytesIn, 1<<62)), int64(min(*u.BytesOut, 1<<62)), true
	}
	return o
}

func fromEvent(ev *events.Event, at time.Time) OnlineSession {
	s := ev.Session
	return OnlineSession{
		ServerID: ev.ServerID, Username: s.Username, Groupname: s.Groupname, SessionUID: ev.SessionUID,
		WorkerID: s.ID, Device: s.Device, RealIP: s.IPReal, VPNIPv4: s.IPRemote, VPNIPv6: s.IPv6Remote,
		UserAgent: s.UserAgent, Hostname: s.Hostname, ConnectedAt: at, Source: "event",
	}
}

// viewTTL bounds how old a computed view may be when nothing changed
// (clone warnings depend on the time).
const viewTTL = time.Second

// Servers returns every server's live state, sorted by server_id. The
// result is shared: callers must not modify it.
func (l *Live) Servers() []ServerLive {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refreshLocked()
	return l.view
}

// OnlineUsers is the number of distinct user names online across the
// fleet.
func (l *Live) OnlineUsers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refreshLocked()
	return len(l.byUser)
}

// UserSessions returns the sessions of one user online now (shared, not
// to be modified).
func (l *Live) UserSessions(name string) []OnlineSession {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refreshLocked()
	return l.byUser[name]
}

func (l *Live) refreshLocked() {
	now := l.now()
	if l.view != nil && l.viewVer == l.ver && now.Sub(l.viewAt) < viewTTL && !now.Before(l.viewAt) {
		return
	}
	out := make([]ServerLive, 0, len(l.servers))
	byUser := map[string][]OnlineSession{}
	for _, s := range l.servers {
		v := s.view(now)
		for _, o := range v.Sessions {
			byUser[o.Username] = append(byUser[o.Username], o)
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ServerID < out[j].ServerID })
	l.view, l.byUser, l.viewVer, l.viewAt = out, byUser, l.ver, now
}

func (s *liveServer) view(now time.Time) ServerLive {
	v := ServerLive{
		ServerID: s.id, Status: s.status, StatusAt: s.statusAt, OcservVersion: s.version,
		RateIn: s.rateIn, RateOut: s.rateOut, HasRate: s.hasRate, LastEvent: s.lastEvent, Claim: s.claim,
	}
	v.LastSeen = s.statusAt
	if s.lastEvent.After(v.LastSeen) {
		v.LastSeen = s.lastEvent
	}
	for k, o := range s.snap {
		if _, gone := s.removed[k]; !gone {
			v.Sessions = append(v.Sessions, o)
		}
	}
	for k, o := range s.added {
		if _, listed := s.snap[k]; listed {
			continue
		}
		if _, gone := s.removed[k]; !gone {
			v.Sessions = append(v.Sessions, o)
		}
	}
	sort.Slice(v.Sessions, func(i, j int) bool {
		a, b := v.Sessions[i], v.Sessions[j]
		if a.Username != b.Username {
			return a.Username < b.Username
		}
		return a.ConnectedAt.Before(b.ConnectedAt)
	})
	for i, o := range v.Sessions {
		if i == 0 || o.Username != v.Sessions[i-1].Username {
			v.Users++
		}
	}
	var recent []string
	for id, t := range s.spools {
		if now.Sub(t) <= cloneWindow {
			recent = append(recent, id)
		}
	}
	sort.Strings(recent)
	holder := ""
	if s.claim != nil && !s.claim.Released {
		holder = s.claim.SpoolID
	}
	if len(recent) > 1 || (len(recent) == 1 && holder != "" && recent[0] != holder) {
		v.Clones = recent
		if holder != "" && !contains(recent, holder) {
			v.Clones = append(v.Clones, holder)
		}
	}
	return v
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
