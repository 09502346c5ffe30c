package livestate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// StateFileName is the session table's file in the spool directory.
const StateFileName = "livestate.json"

// occtl states, as reported in the status and the metrics.
const (
	OcctlStarting   = "starting"
	OcctlOK         = "ok"
	OcctlMissing    = "occtl-missing"     // the binary is not there
	OcctlNoAccess   = "socket-unreadable" // permission denied on the socket
	OcctlServerDown = "ocserv-down"       // no socket, or nobody listening
	OcctlTimeout    = "timeout"
	OcctlBadOutput  = "unreadable-output"
	OcctlError      = "error"
)

// OcctlStates lists every occtl state (for metrics).
var OcctlStates = []string{OcctlStarting, OcctlOK, OcctlMissing, OcctlNoAccess, OcctlServerDown, OcctlTimeout, OcctlBadOutput, OcctlError}

// Classify maps an occtl failure to a state.
func Classify(err error) string {
	if err == nil {
		return OcctlOK
	}
	msg := err.Error()
	var pe *ocserv.ParseError
	switch {
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist) && !strings.Contains(msg, "socket"),
		strings.Contains(msg, "exec of") && strings.Contains(msg, "No such file"):
		return OcctlMissing
	case strings.Contains(msg, "socket") && strings.Contains(msg, "Permission denied"):
		return OcctlNoAccess
	case strings.Contains(msg, "error connecting to ocserv socket"), strings.Contains(msg, "Connection refused"):
		return OcctlServerDown
	case strings.Contains(msg, "no answer within"):
		return OcctlTimeout
	case errors.As(err, &pe):
		return OcctlBadOutput
	}
	return OcctlError
}

// Options configure a Service.
type Options struct {
	Occtl      *ocserv.Occtl
	OcservPath string // for the version when occtl does not tell ("" means ocserv)
	Spool      *spool.Spool
	ServerID   string
	Prefix     string
	Log        *slog.Logger

	Interval           time.Duration // occtl reading and snapshot interval
	AccountingInterval time.Duration // 0: no accounting events

	// JS is where snapshots and the bucket go; nil: no NATS side (the
	// table still writes its events to the spool).
	JS         jetstream.JetStream
	MaxPayload func() int64 // the server's max payload (nats.Conn.MaxPayload)
	StreamName string
	History    int
	Bucket     string
	Create     bool

	Hostname string
	Version  string // the shipper's, for the claim

	// Grace and OrphanGrace: see Table (tests shorten them).
	Grace, OrphanGrace time.Duration
	// MaxBackoff caps the wait between occtl attempts while it fails
	// (default: the larger of Interval and 30s).
	MaxBackoff time.Duration
}

// Status is the live state's part of the shipper's status.json.
type Status struct {
	Occtl            string            `json:"occtl"`
	OcctlError       string            `json:"occtl_error,omitempty"`
	OcctlSince       string            `json:"occtl_since,omitempty"`
	OcctlFailures    int               `json:"occtl_failures,omitempty"`
	OcctlRepairs     uint64            `json:"occtl_repairs"`
	Readings         uint64            `json:"occtl_readings"`
	LastPoll         string            `json:"last_poll,omitempty"`
	OcservVersion    string            `json:"ocserv_version,omitempty"`
	Sessions         int               `json:"sessions"`
	Followed         int               `json:"followed_workers"`
	Claim            string            `json:"claim"`
	ClaimHolder      *Claim            `json:"claim_holder,omitempty"`
	ClaimChecks      uint64            `json:"claim_checks"`
	NATSError        string            `json:"nats_error,omitempty"`
	Snapshots        uint64            `json:"snapshots_published"`
	SnapshotFailures uint64            `json:"snapshot_failures"`
	SnapshotDropped  uint64            `json:"snapshot_items_dropped,omitempty"`
	LastSnapshot     string            `json:"last_snapshot,omitempty"`
	Accounting       uint64            `json:"accounting_events"`
	Reconcile        map[string]uint64 `json:"reconcile_events"`
	StateError       string            `json:"state_error,omitempty"`
}

// Service reads occtl every Interval, keeps the session table, writes the
// derived events through the spool and hands snapshots to the NATS side.
type Service struct {
	o     Options
	table *Table

	mu       sync.Mutex
	st       Status
	server   *ocserv.Status
	users    []ocserv.User
	infos    map[int]WorkerInfo
	version  ocserv.Version
	pending  map[string]pendingSnap
	snapWake chan struct{}
	partErr  map[string]string // last error of status/bans/points reads
}

type pendingSnap struct {
	at    time.Time
	items []json.RawMessage
}

// New makes a service; Run starts it.
func New(o Options) *Service {
	if o.Interval <= 0 {
		o.Interval = 30 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = max(o.Interval, 30*time.Second)
	}
	if o.Prefix == "" {
		o.Prefix = "ocserv"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	t := NewTable(o.Spool.Meta().SpoolID, o.AccountingInterval)
	if o.Grace > 0 {
		t.Grace = o.Grace
	}
	if o.OrphanGrace > 0 {
		t.OrphanGrace = o.OrphanGrace
	}
	s := &Service{o: o, table: t, pending: map[string]pendingSnap{}, snapWake: make(chan struct{}, 1), partErr: map[string]string{}}
	s.st = Status{Occtl: OcctlStarting, Claim: ClaimUnknown, Reconcile: map[string]uint64{}}
	if o.Occtl != nil {
		prev := o.Occtl.OnNote
		o.Occtl.OnNote = func(cmd string, n ocserv.Note) {
			s.mu.Lock()
			s.st.OcctlRepairs++
			s.mu.Unlock()
			if prev != nil {
				prev(cmd, n)
			}
		}
	}
	return s
}

// Status returns a copy of the current status.
func (s *Service) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Reconcile = map[string]uint64{}
	for k, v := range s.st.Reconcile {
		st.Reconcile[k] = v
	}
	if s.st.ClaimHolder != nil {
		c := *s.st.ClaimHolder
		st.ClaimHolder = &c
	}
	return st
}

// Server returns the last successful readings of show status and show
// users (ok false before the first, or while occtl fails), with what the
// table links to each worker.
func (s *Service) Server() (st ocserv.Status, users []ocserv.User, infos map[int]WorkerInfo, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Occtl != OcctlOK || s.users == nil {
		return ocserv.Status{}, nil, nil, false
	}
	if s.server != nil {
		st = *s.server
	}
	return st, s.users, s.infos, true
}

func (s *Service) statePath() string { return filepath.Join(s.o.Spool.Dir(), StateFileName) }

// spoolID returns the spool's id, initialising a brand-new spool (no event
// yet): the table's event ids and the claim are made of it, so it must
// exist before the first reading.
func spoolID(sp *spool.Spool) (string, error) {
	m, err := sp.Init()
	if err != nil {
		return "", fmt.Errorf("live state: %w", err)
	}
	return m.SpoolID, nil
}

// load restores the table; a missing file is a first start, a broken one
// is reported and replaced (its facts carry deterministic ids, so what is
// found again is not minted twice).
func (s *Service) load() {
	b, err := os.ReadFile(s.statePath())
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err == nil {
		err = s.table.Unmarshal(b)
	}
	if err != nil {
		s.o.Log.Warn("live state file unusable; starting with an empty session table", "file", s.statePath(), "err", err.Error())
		s.setStateErr(err.Error())
	}
}

func (s *Service) setStateErr(msg string) {
	s.mu.Lock()
	s.st.StateError = msg
	s.mu.Unlock()
}

// Run reads occtl until ctx ends. occtl failing (missing, no access,
// ocserv down) is logged once per change, reported in the status and
// retried with capped exponential backoff; it never ends Run.
func (s *Service) Run(ctx context.Context) error {
	id, err := spoolID(s.o.Spool)
	if err != nil {
		return err
	}
	s.table.SpoolID = id
	s.table.reset()
	s.load()
	var wg sync.WaitGroup
	if s.o.JS != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.natsLoop(ctx) }()
	}
	defer wg.Wait()
	// While occtl fails: Interval doubling to MaxBackoff, ±20%, forever.
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = s.o.Interval
	bo.MaxInterval = s.o.MaxBackoff
	bo.Multiplier = 2
	bo.RandomizationFactor = 0.2
	bo.MaxElapsedTime = 0
	bo.Reset()
	for {
		err := s.poll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		s.mu.Lock()
		s.st.Readings++ // done with it, derived events written
		s.mu.Unlock()
		wait := s.o.Interval
		if err != nil {
			wait = bo.NextBackOff()
		} else {
			bo.Reset()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// occtlState records a reading's outcome and logs changes.
func (s *Service) occtlState(err error, now time.Time) {
	state := Classify(err)
	s.mu.Lock()
	prev, prevErr := s.st.Occtl, s.st.OcctlError
	if state != prev {
		s.st.OcctlSince = now.UTC().Format(time.RFC3339)
	}
	s.st.Occtl = state
	if err != nil {
		s.st.OcctlError = err.Error()
		s.st.OcctlFailures++
		s.version = ocserv.Version{} // ocserv may come back upgraded
	} else {
		s.st.OcctlError = ""
		s.st.OcctlFailures = 0
	}
	failures := s.st.OcctlFailures
	s.mu.Unlock()
	switch {
	case err != nil && (state != prev || prevErr == ""):
		s.o.Log.Error("occtl fails; retrying with backoff", "state", state, "err", err.Error())
	case err == nil && prev != OcctlOK && prev != OcctlStarting:
		s.o.Log.Info("occtl recovered", "previous_state", prev, "failures", failures)
	case err == nil && prev == OcctlStarting:
		s.o.Log.Info("occtl reachable")
	}
}

func (s *Service) poll(ctx context.Context) error {
	now := time.Now()
	users, err := s.o.Occtl.ShowUsers(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	s.occtlState(err, now)
	if err != nil {
		s.queueOffline(now, err)
		return err
	}
	s.mu.Lock()
	needVersion := s.version.IsZero()
	s.mu.Unlock()
	if needVersion {
		if v, err := s.o.Occtl.DetectVersion(ctx, s.o.OcservPath); err == nil {
			s.mu.Lock()
			s.version = v
			s.st.OcservVersion = v.String()
			s.mu.Unlock()
			s.o.Log.Info("ocserv version", "version", v.String())
		}
	}
	status, errS := s.o.Occtl.ShowStatus(ctx)
	bans, errB := s.o.Occtl.ShowIPBans(ctx)
	points, errP := s.o.Occtl.ShowIPBanPoints(ctx)
	s.partResult(KindStatus, errS)
	s.partResult(KindBans, errB)
	s.partResult(KindBanPoints, errP)

	hook, herr := s.readHook()
	if herr != nil {
		// Without the hook's records every session would look unrecorded:
		// skip this reading's reconciliation rather than invent facts.
		s.setStateErr(herr.Error())
		s.o.Log.Warn("cannot read the hook's session records; reconciliation skipped", "err", herr.Error())
	} else {
		s.observe(users, hook, now)
	}

	connected := 0
	for _, u := range users {
		if u.State == "connected" {
			connected++
		}
	}
	infos := map[int]WorkerInfo{}
	for _, u := range users {
		if wi, ok := s.table.Lookup(u.ID, u.Device); ok {
			infos[u.ID] = wi
		}
	}
	s.mu.Lock()
	s.users, s.infos = users, infos
	if errS == nil {
		s.server = &status
	}
	s.st.LastPoll = now.UTC().Format(time.RFC3339)
	s.st.Sessions = connected
	s.st.Followed = s.table.Workers()
	s.mu.Unlock()

	items := make([]UserItem, 0, len(users))
	for _, u := range users {
		items = append(items, userItem(u, infos[u.ID]))
	}
	s.queue(KindUsers, now, items)
	if errS == nil {
		s.queue(KindStatus, now, []StatusItem{statusItem(status)})
	}
	if errB == nil {
		s.queue(KindBans, now, mapSlice(bans, banItem))
	}
	if errP == nil {
		s.queue(KindBanPoints, now, mapSlice(points, banItem))
	}
	return nil
}

func mapSlice[T, U any](in []T, f func(T) U) []U {
	out := make([]U, 0, len(in))
	for _, v := range in {
		out = append(out, f(v))
	}
	return out
}

// partResult logs a failing secondary read once per change.
func (s *Service) partResult(kind string, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	s.mu.Lock()
	prev := s.partErr[kind]
	s.partErr[kind] = msg
	s.mu.Unlock()
	switch {
	case msg != "" && prev == "":
		s.o.Log.Warn("occtl read failed; this snapshot kind is skipped until it works", "kind", kind, "err", msg)
	case msg == "" && prev != "":
		s.o.Log.Info("occtl read recovered", "kind", kind)
	}
}

// queueOffline publishes what is known while occtl fails: a status
// snapshot saying so, so consumers of the latest state see it.
func (s *Service) queueOffline(now time.Time, err error) {
	st := Classify(err)
	s.queue(KindStatus, now, []StatusItem{{Status: st, Online: false, Error: err.Error()}})
}

func (s *Service) queue(kind string, now time.Time, items any) {
	var raw []json.RawMessage
	var err error
	switch v := items.(type) {
	case []UserItem:
		raw, err = marshalItems(v)
	case []StatusItem:
		raw, err = marshalItems(v)
	case []BanItem:
		raw, err = marshalItems(v)
	}
	if err != nil {
		s.o.Log.Warn("cannot encode snapshot", "kind", kind, "err", err.Error())
		return
	}
	s.mu.Lock()
	s.pending[kind] = pendingSnap{at: now, items: raw}
	s.mu.Unlock()
	select {
	case s.snapWake <- struct{}{}:
	default:
	}
}

// readHook lists the hook's live session records.
func (s *Service) readHook() (map[string]string, error) {
	dir := filepath.Join(s.o.Spool.Dir(), spool.SessionsDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	out := make(map[string]string, len(ents))
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.Contains(e.Name(), "-") {
			continue
		}
		uid, ok, err := s.o.Spool.LoadSession(e.Name())
		if err != nil || !ok {
			continue // torn or foreign file: the hook treats it as absent too
		}
		out[e.Name()] = uid
	}
	return out, nil
}

// observe runs the table over one reading and writes what it derives:
// events first (through the spool, like the hook's), then the state file,
// then the hook records. A failed append restores the table, so the next
// reading derives the same events again, with the same ids.
func (s *Service) observe(users []ocserv.User, hook map[string]string, now time.Time) {
	before, err := s.table.Marshal()
	if err != nil {
		s.setStateErr(err.Error())
		return
	}
	res := s.table.Observe(Observation{Time: now, Users: users, Hook: hook})
	acct, rec := 0, map[string]uint64{}
	for _, d := range res.Events {
		if err := s.appendEvent(d, now); err != nil {
			if uerr := s.table.Unmarshal(before); uerr != nil {
				s.o.Log.Error("cannot restore the session table", "err", uerr.Error())
			}
			s.setStateErr("write derived event: " + err.Error())
			s.o.Log.Error("cannot write a derived event; will derive it again next reading", "type", string(d.Type), "err", err.Error())
			return
		}
		if d.Type == events.Accounting {
			acct++
		} else if r, ok := d.Payload.(*Reconcile); ok {
			rec[r.Action]++
			s.o.Log.Info("session reconciled", "action", r.Action, "worker", r.HookKey, "session_uid", d.SessionUID, "reason", r.Reason)
		}
	}
	b, err := s.table.Marshal()
	if err == nil {
		err = writeAtomic(s.statePath(), b)
	}
	if err != nil {
		s.setStateErr("save session table: " + err.Error())
		s.o.Log.Warn("cannot save the session table", "err", err.Error())
	} else {
		s.setStateErr("")
	}
	for key, uid := range res.Store {
		if err := s.o.Spool.StoreSession(key, uid); err != nil {
			s.o.Log.Warn("cannot record a reconciled session for the hook", "key", key, "err", err.Error())
		}
	}
	for _, key := range res.Drop {
		if err := s.o.Spool.DropSession(key); err != nil {
			s.o.Log.Warn("cannot remove a lost session's record", "key", key, "err", err.Error())
		}
	}
	s.mu.Lock()
	s.st.Accounting += uint64(acct)
	for k, v := range rec {
		s.st.Reconcile[k] += v
	}
	s.mu.Unlock()
}

func (s *Service) appendEvent(d Derived, now time.Time) error {
	ev, err := d.Event(s.o.ServerID, now)
	if err != nil {
		return err
	}
	_, err = s.o.Spool.Append(func(st spool.Stamp) ([]byte, error) {
		ev.Seq, ev.SpoolID, ev.BootID = st.Seq, st.SpoolID, spool.BootID()
		return ev.Marshal()
	})
	return err
}

// writeAtomic replaces path with data: a temporary file in the same
// directory, synced, renamed over, the directory synced.
func writeAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(spool.StateMode); err != nil {
		f.Close()
		return err
	}
	if _, err = f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ourClaim is this process's claim.
func (s *Service) ourClaim() Claim {
	return Claim{
		ServerID: s.o.ServerID, SpoolID: s.o.Spool.Meta().SpoolID, Hostname: s.o.Hostname,
		BootID: spool.BootID(), PID: os.Getpid(), Instance: uuid.NewString(), Version: s.o.Version,
		RefreshS: int(max(s.o.Interval/time.Second, 1)),
	}
}

// natsLoop keeps the claim and publishes the queued snapshots. NATS
// trouble is retried at the next interval; it never touches the occtl
// side or the spool.
func (s *Service) natsLoop(ctx context.Context) {
	n := &natsSide{o: &s.o, js: s.o.JS, claim: claimer{ours: s.ourClaim(), state: ClaimUnknown}}
	tick := time.NewTicker(s.o.Interval)
	defer tick.Stop()
	var lastClaim, lastLoud time.Time
	natsErr := ""
	fail := func(err error) {
		msg := err.Error()
		if msg != natsErr {
			s.o.Log.Warn("snapshots: NATS side failed; retrying", "err", msg)
		}
		natsErr = msg
		s.mu.Lock()
		s.st.NATSError = msg
		s.mu.Unlock()
	}
	for {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if n.kv != nil {
				if err := n.claim.release(rctx, n.kv); err != nil {
					s.o.Log.Warn("cannot release the server_id claim", "err", err.Error())
				}
			}
			cancel()
			return
		case <-tick.C:
		case <-s.snapWake:
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if !n.ready {
			if err := n.ensure(cctx); err != nil {
				cancel()
				fail(err)
				continue
			}
		}
		now := time.Now()
		if n.claim.state != ClaimOwned || now.Sub(lastClaim) >= s.o.Interval/2 {
			res, err := n.claim.refresh(cctx, n.kv, now)
			s.mu.Lock()
			s.st.ClaimChecks++
			s.mu.Unlock()
			if err != nil {
				cancel()
				fail(err)
				continue
			}
			lastClaim = now
			s.claimed(res, n.claim.other, &lastLoud, now)
		}
		if n.claim.state != ClaimOwned {
			cancel()
			continue
		}
		s.mu.Lock()
		pend := s.pending
		s.pending = map[string]pendingSnap{}
		ver := ""
		if !s.version.IsZero() {
			ver = s.version.String()
		}
		s.mu.Unlock()
		ok := true
		for _, kind := range Kinds {
			p, has := pend[kind]
			if !has {
				continue
			}
			id := uuid.Must(uuid.NewV7()).String()
			head := Snapshot{V: 1, ServerID: s.o.ServerID, SpoolID: s.o.Spool.Meta().SpoolID, Kind: kind,
				Time: p.at.UTC().Format(time.RFC3339Nano), SnapshotID: id, OcservVersion: ver}
			parts, dropped, err := Split(head, p.items, n.limit())
			if err == nil {
				err = n.publish(cctx, kind, id, parts)
			}
			s.mu.Lock()
			if err != nil {
				s.st.SnapshotFailures++
			} else {
				s.st.Snapshots++
				s.st.SnapshotDropped += uint64(dropped)
				s.st.LastSnapshot = now.UTC().Format(time.RFC3339)
			}
			s.mu.Unlock()
			if dropped > 0 {
				s.o.Log.Warn("snapshot items larger than a message left out", "kind", kind, "dropped", dropped)
			}
			if len(parts) > s.o.History && s.o.History > 0 {
				s.o.Log.Warn("snapshot has more parts than the stream keeps per subject; history holds only part of it", "kind", kind, "parts", len(parts), "history", s.o.History)
			}
			if err != nil {
				ok = false
				fail(err)
				break
			}
		}
		cancel()
		if ok && natsErr != "" {
			s.o.Log.Info("snapshots: NATS side recovered")
			natsErr = ""
			s.mu.Lock()
			s.st.NATSError = ""
			s.mu.Unlock()
		}
	}
}

// claimed reports the claim's state: a conflict loudly (an error line at
// each change and every ten minutes while it lasts), the rest once.
func (s *Service) claimed(res claimResult, other *Claim, lastLoud *time.Time, now time.Time) {
	s.mu.Lock()
	s.st.Claim = res.state
	if other != nil {
		c := *other
		s.st.ClaimHolder = &c
	} else {
		s.st.ClaimHolder = nil
	}
	s.mu.Unlock()
	if res.state == ClaimConflict && (res.changed || now.Sub(*lastLoud) >= 10*time.Minute) {
		*lastLoud = now
		s.o.Log.Error("server_id is claimed by another live host (a cloned image?): events keep flowing under this spool_id, but no snapshots or state are published until the claim is resolved",
			"server_id", s.o.ServerID, "holder_hostname", other.Hostname, "holder_spool_id", other.SpoolID,
			"holder_boot_id", other.BootID, "holder_refreshed_at", other.RefreshedAt,
			"our_spool_id", s.o.Spool.Meta().SpoolID, "bucket", s.o.Bucket, "key", ClaimKey(s.o.ServerID))
		return
	}
	if res.note != "" {
		s.o.Log.Info(res.note, "server_id", s.o.ServerID, "bucket", s.o.Bucket)
	} else if res.changed && res.state == ClaimOwned {
		s.o.Log.Info("server_id claim resolved; publishing snapshots", "server_id", s.o.ServerID)
	}
}
