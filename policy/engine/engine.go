// Package engine owns the ledger's policy engine (docs/policy.md): it
// evaluates every user's effective policy against fleet-wide usage from
// the ledger's database, publishes the verdicts that say something to the
// verdicts bucket (with a heartbeat that keeps the hosts' mirrors fresh),
// ends the sessions of users who cross a limit on every server they are
// on and lifts that again when the verdict allows them, ends the excess
// over session limits, and records and sends notices.
//
// It runs on the active ledger instance only. Users are re-evaluated when
// a batch of events changes their sessions or usage (Touch), when a policy
// or reset changes, when the clock reaches the next instant their verdict
// can change (an expiry, a period's end, a warning), and in a full sweep
// every few minutes as a safety net.
package engine

import (
	"container/heap"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/bucket"
)

// Options configure an Engine.
type Options struct {
	Store     ledger.PolicyStore
	Publisher *bucket.Publisher
	// Bucket, when Publisher is nil, makes it when the engine starts
	// (it is retried until it works: NATS may not be there yet).
	Bucket func(ctx context.Context) (*bucket.Publisher, error)
	// Enforcer ends sessions; nil evaluates and publishes only (hosts
	// still refuse denied logins from their mirrors).
	Enforcer Enforcer
	// NC and Prefix publish notices on <prefix>.notices.<kind>; nil NC
	// records them only.
	NC     *nats.Conn
	Prefix string
	// Webhook marks new notices for the webhook sink (package webhook
	// delivers them).
	Webhook bool
	// OnNotice, when set, is told of every new notice (the webhook
	// deliverer wakes on it).
	OnNotice func()
	// Active reports whether this instance is the active one; nil: always.
	Active func() bool

	Sweep     time.Duration // full re-evaluation (default 5m)
	Heartbeat time.Duration // heartbeat to the bucket (default 10s)
	// KickFor is the validity of a policy kick: long enough for the
	// verdict to reach every host's mirror (default 10m).
	KickFor time.Duration
	// NewestHold: when the newest session wins, the server the old one
	// ran on refuses the user this long, so the ended session's cookie
	// cannot bring it back at once (0: no hold; default 5m).
	NewestHold time.Duration
	// Retry paces repeated commands for the same user and server.
	Retry          time.Duration // default 3s
	Coalesce       time.Duration // how long touched users gather before an evaluation (default 20ms)
	CommandTimeout time.Duration // default 10s

	Now func() time.Time
	Log *slog.Logger
}

func (o *Options) defaults() {
	if o.Sweep <= 0 {
		o.Sweep = 5 * time.Minute
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 10 * time.Second
	}
	if o.KickFor <= 0 {
		o.KickFor = 10 * time.Minute
	}
	if o.NewestHold < 0 {
		o.NewestHold = 0
	}
	if o.Retry <= 0 {
		o.Retry = 3 * time.Second
	}
	if o.Coalesce <= 0 {
		o.Coalesce = 20 * time.Millisecond
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
}

// Stats counts what the engine did (status, metrics, benchmarks).
type Stats struct {
	Evaluations  int64     `json:"evaluations"`
	Rounds       int64     `json:"rounds"`
	Sweeps       int64     `json:"sweeps"`
	LastSweep    time.Time `json:"last_sweep,omitzero"`
	SweepSeconds float64   `json:"last_sweep_seconds"`
	Denied       int       `json:"denied"`
	Published    int       `json:"published"` // verdicts in the bucket
	Puts         int64     `json:"puts"`
	Deletes      int64     `json:"deletes"`
	PublishBytes int64     `json:"publish_bytes"`
	Kicks        int64     `json:"kicks"`
	Unkicks      int64     `json:"unkicks"`
	Disconnects  int64     `json:"disconnects"`
	CommandErrs  int64     `json:"command_errors"`
	// NoCommand counts users whose sessions the engine could not end by
	// command because the command service refuses their name; the hosts
	// still refuse them at login.
	NoCommand  int64 `json:"no_command_users"`
	Notices    int64 `json:"notices"`
	Heartbeats int64 `json:"heartbeats"`
	// HeartbeatsSkipped counts heartbeats not written because the last
	// evaluation failed.
	HeartbeatsSkipped int64  `json:"heartbeats_skipped"`
	LastError         string `json:"last_error,omitempty"`
	Active            bool   `json:"active"`
}

// Engine is the policy engine.
type Engine struct {
	o Options

	mu       sync.Mutex
	touched  map[string]bool
	sweepNow bool
	signal   chan struct{}
	stats    Stats
	// asked counts Touch and SweepSoon calls; done is the count the
	// last finished round had taken in (Settle waits on it).
	asked, done int64
	settled     *sync.Cond

	pols      *policies
	published map[string]policy.Verdict  // what the bucket holds
	kicked    map[string]map[string]bool // user → servers the policy kicked
	sent      map[string]bool            // notice ids recorded
	paced     map[string]time.Time       // user|server|action → last attempt
	logged    map[string]loggedErr       // server → the last command error logged
	// noCmd: users denied or past a limit whose name the command service
	// refuses (outside policy.ValidName), logged once each.
	noCmd   map[string]bool
	next    *wakeHeap
	ready   bool
	failing bool // the last evaluation failed
	// live mirrors ready for other goroutines (Settle on a standby
	// returns at once: its engine evaluates nothing).
	live atomic.Bool
}

// New makes an engine; Run starts it.
func New(o Options) *Engine {
	o.defaults()
	e := &Engine{o: o, touched: map[string]bool{}, signal: make(chan struct{}, 1)}
	e.settled = sync.NewCond(&e.mu)
	return e
}

// Settle waits until every Touch and SweepSoon made before it has been
// evaluated and acted on (or ctx ends): a policy change through the API
// answers once its effect is in the bucket.
func (e *Engine) Settle(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		e.mu.Lock()
		e.settled.Broadcast()
		e.mu.Unlock()
	})
	defer stop()
	e.mu.Lock()
	defer e.mu.Unlock()
	want := e.asked
	for e.done < want && ctx.Err() == nil && e.live.Load() {
		e.settled.Wait()
	}
	return ctx.Err()
}

// Touch asks for users to be re-evaluated soon (after a batch changed
// their usage or sessions, or a policy or reset changed). It never blocks.
func (e *Engine) Touch(users ...string) {
	if len(users) == 0 {
		return
	}
	e.mu.Lock()
	for _, u := range users {
		e.touched[u] = true
	}
	e.asked++
	e.mu.Unlock()
	e.wake()
}

// SweepSoon asks for every user to be re-evaluated (a group's policy
// changed).
func (e *Engine) SweepSoon() {
	e.mu.Lock()
	e.sweepNow = true
	e.asked++
	e.mu.Unlock()
	e.wake()
}

func (e *Engine) wake() {
	select {
	case e.signal <- struct{}{}:
	default:
	}
}

func (e *Engine) wakeAfter(d time.Duration) { time.AfterFunc(d, e.wake) }

// Stats returns a copy of the counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stats
}

func (e *Engine) count(f func(*Stats)) {
	e.mu.Lock()
	f(&e.stats)
	e.mu.Unlock()
}

// Run evaluates until ctx ends. While this instance is not the active one
// it waits; when it becomes active it reads the bucket back, evaluates
// every user and then follows changes.
func (e *Engine) Run(ctx context.Context) error {
	heartbeat := time.NewTicker(e.o.Heartbeat)
	defer heartbeat.Stop()
	sweep := time.NewTicker(e.o.Sweep)
	defer sweep.Stop()
	revision := time.NewTicker(time.Second)
	defer revision.Stop()
	wakeT := time.NewTimer(time.Hour)
	defer wakeT.Stop()
	lastErr := ""
	fail := func(what string, err error) {
		if ctx.Err() != nil {
			return
		}
		if what != "heartbeat" {
			// Evaluate everyone again once it works: a sweep is what
			// catches up whatever the failed round missed.
			e.failing = true
			e.mu.Lock()
			e.sweepNow = true
			e.mu.Unlock()
			e.wakeAfter(time.Second)
		}
		msg := what + ": " + err.Error()
		if msg != lastErr {
			e.o.Log.Warn("policy engine: "+what+"; retrying", "err", err.Error())
			lastErr = msg
		}
		e.count(func(s *Stats) { s.LastError = msg })
	}
	for {
		active := e.o.Active == nil || e.o.Active()
		e.count(func(s *Stats) { s.Active = active })
		if active && !e.ready {
			if err := e.start(ctx); err != nil {
				fail("start", err)
			} else {
				lastErr = ""
				e.count(func(s *Stats) { s.LastError = "" })
			}
		}
		if !active && e.ready {
			e.o.Log.Info("policy engine: this instance is no longer the active one; evaluation stops here")
			e.ready = false
		}
		e.live.Store(e.ready)
		if e.ready {
			e.resetWake(wakeT)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-e.signal:
			if !e.ready {
				continue
			}
			time.Sleep(e.o.Coalesce) // let the rest of a burst arrive
			e.mu.Lock()
			users, all, asked := keys(e.touched), e.sweepNow, e.asked
			e.touched, e.sweepNow = map[string]bool{}, false
			e.mu.Unlock()
			err := e.o.Store.RefreshPolicyUsers(ctx, users)
			if err == nil && (all || len(users) > 0) {
				if all {
					err = e.round(ctx, nil)
				} else {
					err = e.round(ctx, users)
				}
			}
			if err != nil {
				fail("evaluate", err)
				// Keep what was asked for the next attempt.
				e.mu.Lock()
				for _, u := range users {
					e.touched[u] = true
				}
				e.sweepNow = e.sweepNow || all
				e.mu.Unlock()
				e.wakeAfter(time.Second)
			} else {
				e.mu.Lock()
				e.done = max(e.done, asked)
				e.settled.Broadcast()
				e.mu.Unlock()
			}
		case <-wakeT.C:
			if e.ready {
				if err := e.round(ctx, e.due()); err != nil {
					fail("evaluate", err)
				}
			}
		case <-sweep.C:
			if e.ready {
				if err := e.round(ctx, nil); err != nil {
					fail("sweep", err)
				}
			}
		case <-revision.C:
			if e.ready {
				if rev, err := e.o.Store.PolicyRevision(ctx); err == nil && rev != e.pols.rev {
					// Changed on another instance (or a reset): every
					// user may be concerned.
					if err := e.round(ctx, nil); err != nil {
						fail("evaluate", err)
					}
				}
			}
		case <-heartbeat.C:
			// No heartbeat while evaluations fail (the database is away):
			// the hosts' mirrors then go stale and say so, instead of
			// looking current while nothing is decided.
			switch {
			case !e.ready:
			case e.failing:
				e.count(func(s *Stats) { s.HeartbeatsSkipped++ })
			default:
				if err := e.o.Publisher.Heartbeat(ctx, e.o.Now(), len(e.published)); err != nil {
					fail("heartbeat", err)
				} else {
					e.count(func(s *Stats) { s.Heartbeats++ })
				}
			}
		}
	}
}

// start loads what the bucket and the store hold, then evaluates everyone.
func (e *Engine) start(ctx context.Context) error {
	if e.o.Publisher == nil {
		p, err := e.o.Bucket(ctx)
		if err != nil {
			return err
		}
		e.o.Publisher = p
	}
	e.mu.Lock()
	asked := e.asked // the sweep below covers everything asked so far
	e.mu.Unlock()
	pub, err := e.o.Publisher.Published(ctx)
	if err != nil {
		return err
	}
	kicks, err := e.o.Store.PolicyKicks(ctx, "")
	if err != nil {
		return fmt.Errorf("read policy kicks: %w", err)
	}
	if err := e.o.Store.RefreshPolicyUsers(ctx, nil); err != nil {
		return fmt.Errorf("refresh users: %w", err)
	}
	e.published, e.kicked, e.sent, e.paced, e.next = pub, map[string]map[string]bool{}, map[string]bool{}, map[string]time.Time{}, &wakeHeap{}
	e.logged = map[string]loggedErr{}
	for _, k := range kicks {
		e.markKicked(k.Username, k.ServerID, true)
	}
	e.pols = nil
	if err := e.round(ctx, nil); err != nil {
		return err
	}
	e.ready = true
	e.live.Store(true)
	if err := e.o.Publisher.Heartbeat(ctx, e.o.Now(), len(e.published)); err != nil {
		return err
	}
	e.o.Log.Info("policy engine active", "verdicts", len(e.published), "policy_kicks", len(kicks))
	e.mu.Lock()
	e.done = max(e.done, asked)
	e.settled.Broadcast()
	e.mu.Unlock()
	return nil
}

// round evaluates users (nil: everyone) and acts on the outcome.
func (e *Engine) round(ctx context.Context, users []string) error {
	start := time.Now()
	now := e.o.Now()
	if e.pols == nil || users == nil {
		p, err := loadPolicies(ctx, e.o.Store)
		if err != nil {
			return fmt.Errorf("read policies: %w", err)
		}
		e.pols = p
	} else if rev, err := e.o.Store.PolicyRevision(ctx); err != nil {
		return err
	} else if rev != e.pols.rev {
		if e.pols, err = loadPolicies(ctx, e.o.Store); err != nil {
			return fmt.Errorf("read policies: %w", err)
		}
	}
	if users != nil && len(users) == 0 {
		return nil
	}
	facts, err := Gather(ctx, e.o.Store, e.pols, users, now)
	if err != nil {
		return err
	}
	// Everyone concerned: those with a policy now, and those whose
	// published verdict may have to go.
	concerned := users
	if users == nil {
		concerned = make([]string, 0, len(facts)+len(e.published))
		for u := range facts {
			concerned = append(concerned, u)
		}
		for u := range e.published {
			if facts[u] == nil {
				concerned = append(concerned, u)
			}
		}
	}
	slices.Sort(concerned)
	var save []policy.Verdict
	var del []string
	var notices []policy.Notice
	for _, u := range concerned {
		f := facts[u]
		if f == nil {
			if _, ok := e.published[u]; ok {
				if err := e.unpublish(ctx, u); err != nil {
					return err
				}
				del = append(del, u)
			}
			e.lift(ctx, u)
			continue
		}
		ev := policy.Evaluate(&f.Effective, f.Inputs, now)
		e.count(func(s *Stats) { s.Evaluations++ })
		changed, err := e.publish(ctx, u, &ev.Verdict)
		if err != nil {
			return err
		}
		if changed {
			if says(&ev.Verdict) {
				save = append(save, ev.Verdict)
			} else {
				del = append(del, u)
			}
		}
		e.act(ctx, f, &ev)
		notices = append(notices, policy.Notices(&f.Effective, &ev, f.Resets, now)...)
		notices = append(notices, e.limitNotices(f, &ev, now)...)
		if !ev.Next.IsZero() {
			heap.Push(e.next, wake{at: ev.Next, user: u})
		}
	}
	if err := e.o.Store.SaveVerdicts(ctx, save, del); err != nil {
		return fmt.Errorf("save verdicts: %w", err)
	}
	if err := e.notify(ctx, notices); err != nil {
		return err
	}
	denied := 0
	for _, v := range e.published {
		if !v.Allowed {
			denied++
		}
	}
	e.failing = false
	e.count(func(s *Stats) {
		s.Rounds++
		s.Denied, s.Published = denied, len(e.published)
		s.Puts, s.Deletes, s.PublishBytes = e.o.Publisher.Puts, e.o.Publisher.Deletes, e.o.Publisher.Bytes
		if users == nil {
			s.Sweeps++
			s.LastSweep, s.SweepSeconds = now, time.Since(start).Seconds()
		}
	})
	return nil
}

// says reports whether a verdict is worth publishing: a denial, or the
// session counts of a user at a limit that refuses the excess (only then
// can a host refuse a login for it). Any other user is allowed, which no
// key says as well, so the bucket holds only the users that matter.
func says(v *policy.Verdict) bool {
	if !v.Allowed {
		return true
	}
	s := v.Sessions
	if s == nil || s.OnExcess != policy.ExcessRefuse {
		return false
	}
	held := 0
	for _, n := range s.Held {
		held += n
	}
	return held >= s.Max
}

// publish puts the verdict in the bucket when it differs from what is
// there, or deletes the key when the verdict is the default.
func (e *Engine) publish(ctx context.Context, u string, v *policy.Verdict) (bool, error) {
	prev, had := e.published[u]
	if !says(v) {
		if !had {
			return false, nil
		}
		return true, e.unpublish(ctx, u)
	}
	if had && prev.Equal(v) {
		return false, nil
	}
	if err := e.o.Publisher.Put(ctx, *v); err != nil {
		return false, err
	}
	e.published[u] = *v
	if !v.Allowed && (!had || prev.Allowed) {
		e.o.Log.Info("policy: user denied", "user", u, "reason", v.Reason, "message", v.Message)
	}
	if v.Allowed && had && !prev.Allowed {
		e.o.Log.Info("policy: user allowed again", "user", u)
	}
	return true, nil
}

func (e *Engine) unpublish(ctx context.Context, u string) error {
	prev := e.published[u]
	if err := e.o.Publisher.Delete(ctx, u); err != nil {
		return err
	}
	delete(e.published, u)
	if !prev.Allowed {
		e.o.Log.Info("policy: user allowed again", "user", u)
	}
	return nil
}

// noticeNS is the UUIDv5 namespace of notice ids.
var noticeNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/ocserv-telemetry/ocserv-telemetry/policy-notice"))

// NoticeID is the id of the notice with key k.
func NoticeID(k string) string { return uuid.NewSHA1(noticeNS, []byte(k)).String() }

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// wake is a user to re-evaluate at an instant.
type wake struct {
	at   time.Time
	user string
}

type wakeHeap []wake

func (h wakeHeap) Len() int           { return len(h) }
func (h wakeHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h wakeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *wakeHeap) Push(x any)        { *h = append(*h, x.(wake)) }
func (h *wakeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// resetWake points t at the earliest instant a verdict changes.
func (e *Engine) resetWake(t *time.Timer) {
	d := time.Hour
	if e.next.Len() > 0 {
		d = max(0, (*e.next)[0].at.Sub(e.o.Now())+10*time.Millisecond)
	}
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

// due pops the users whose instant has come (each once).
func (e *Engine) due() []string {
	now := e.o.Now()
	set := map[string]bool{}
	for e.next.Len() > 0 && !(*e.next)[0].at.After(now) {
		set[heap.Pop(e.next).(wake).user] = true
	}
	// The heap keeps an entry per evaluation; drop the duplicates that
	// piled up so it stays as large as the number of users.
	if e.next.Len() > 4*max(1024, len(e.published)) {
		seen := map[wake]bool{}
		var keep wakeHeap
		for _, w := range *e.next {
			if !seen[w] {
				seen[w] = true
				keep = append(keep, w)
			}
		}
		heap.Init(&keep)
		e.next = &keep
	}
	return keys(set)
}
