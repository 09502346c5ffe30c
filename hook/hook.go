// Package hook owns one run of the hook: the program ocserv executes on
// every connect, disconnect and host-update. It turns the environment into
// one event in the spool and exits 0, whatever happens, within a hard time
// budget: ocserv holds the user's login until the connect script exits, and
// refuses it on a non-zero status. The only non-zero exits are the
// deliberate refusals listed in docs/design.md, each recorded in the event.
//
// The hook stays small: the standard library, x/sys and a UUID package;
// never a NATS client.
package hook

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/firewall"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/crashpoint"
	"github.com/ocserv-telemetry/ocserv-telemetry/kick"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// Version is set at build time (Makefile LDFLAGS).
var Version = "dev"

// Prefix starts every line the hook writes to stderr (ocserv's log).
const Prefix = "ocserv-telemetry-hook: "

// Exit statuses.
const (
	ExitAdmit = 0 // the login goes ahead; also every non-connect event
	ExitUsage = 2 // run by a person with bad arguments (never by ocserv)
)

// Run is one hook run. exit is how the process ends (os.Exit in main; a
// recorder in tests); Run calls it exactly once, possibly from the budget
// timer's goroutine, and returns only when exit itself returns.
type Run struct {
	Args   []string
	Env    map[string]string
	Stderr io.Writer
	Start  time.Time
	Exit   func(code int)

	once    sync.Once
	errMu   sync.Mutex
	pending atomic.Pointer[[]byte] // the encoded event, until it is committed
	drafted atomic.Bool            // an event was encoded (pending set at least once)

	// budget is the configured time budget; paused is time spent in the
	// operator's OCSERV_NEXT_SCRIPT, which does not count against it.
	budget time.Duration
	paused time.Duration
	// failClosed makes the budget timer refuse instead of admit: set while
	// a restricted user's rules are being applied.
	failClosed atomic.Bool
	// verdict is the exit status of a deliberate refusal once decided
	// (0: none). The budget timer and panic recovery end the run with it
	// instead of admitting.
	verdict atomic.Int32

	// stall, when set by a test, runs just before the append: a stand-in
	// for a disk that hangs, to prove the budget timer ends the run.
	stall func()
	// stallEarly, when set by a test, runs as soon as the event is built:
	// a stand-in for a spool, kick list or session record on a disk that
	// hangs before the append.
	stallEarly func()
	// stallBeforeEvent, when set by a test, runs before the event is made:
	// a stand-in for a CPU so starved that the budget runs out first.
	stallBeforeEvent func()
	// uidKnown: the event's session_uid is the session's own (made at this
	// connect, or found for this disconnect), not one made up for it.
	uidKnown bool

	// backend, when set by a test, opens the firewall backend instead of
	// firewall.Open: a stand-in for a kernel or a helper that hangs.
	backend func(kind string) (firewall.Backend, error)
}

// Main runs the hook and ends through r.Exit. Panics are recovered: a bug
// must never refuse a login.
func (r *Run) Main() {
	budget := time.AfterFunc(config.Default().HookBudget, r.overBudget)
	defer budget.Stop()
	defer func() {
		if p := recover(); p != nil {
			r.printf("internal error (the event may be missing; please report): %v\n%s", p, firstFrames(debug.Stack()))
			r.dump("internal error")
			code := ExitAdmit
			if r.failClosed.Load() {
				code = ExitRefuse // a restricted user's rules may be missing
			} else if v := r.verdict.Load(); v != 0 {
				code = int(v) // a refusal already decided stands
			}
			r.exit(code)
		}
	}()
	r.exit(r.run(budget))
}

func (r *Run) exit(code int) { r.once.Do(func() { r.Exit(code) }) }

func (r *Run) printf(format string, args ...any) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(r.Stderr, "%s%s\n", Prefix, strings.TrimRight(msg, "\n"))
}

// overBudget runs on the timer's goroutine: the run took too long (a hung
// disk, a stuck firewall call). Say so, keep the event in ocserv's log if it
// was not committed, and let the login through.
func (r *Run) overBudget() {
	if r.failClosed.Load() {
		r.printf("time budget spent after %s while applying a restricted user's firewall rules; refusing the login rather than letting the user in unrestricted", time.Since(r.Start).Round(time.Millisecond))
		r.dump("time budget spent")
		r.exit(ExitRefuse)
		return
	}
	if v := r.verdict.Load(); v != 0 {
		r.printf("time budget spent after %s; the login was already refused (%d), which stands", time.Since(r.Start).Round(time.Millisecond), v)
		r.dump("time budget spent")
		r.exit(int(v))
		return
	}
	r.printf("time budget spent after %s; exiting 0 so the login is not held up", time.Since(r.Start).Round(time.Millisecond))
	r.dump("time budget spent")
	r.exit(ExitAdmit)
}

// used is how much of the budget the run has spent.
func (r *Run) used() time.Duration { return time.Since(r.Start) - r.paused }

// dump writes the uncommitted event to stderr, the one place left where an
// operator can still find it (ocserv sends it to its log or the journal).
func (r *Run) dump(why string) {
	if p := r.pending.Swap(nil); p != nil {
		r.printf("%s before the event reached the spool; the event follows so it is not lost: %s", why, strings.TrimRight(string(*p), "\n"))
		return
	}
	if !r.drafted.Load() && r.Env["REASON"] != "" && r.Env[chainedEnv] == "" {
		// Spent before the event existed: say at least whose it was.
		r.printf("%s before the event was made; it is lost: REASON=%q USERNAME=%q ID=%q DEVICE=%q", why, r.Env["REASON"], r.Env["USERNAME"], r.Env["ID"], r.Env["DEVICE"])
	}
}

type options struct {
	configPath string
	removeAll  bool
	version    bool
	fw         bool // run as ocserv's fw script
}

func parseArgs(args []string) (options, error) {
	var o options
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--config" || a == "-config":
			if i+1 >= len(args) {
				return o, errors.New("--config needs a file name")
			}
			i++
			o.configPath = args[i]
		case strings.HasPrefix(a, "--config="):
			o.configPath = strings.TrimPrefix(a, "--config=")
		case a == "--removeall":
			o.removeAll = true
		case a == "--fw":
			o.fw = true
		case a == "--version":
			o.version = true
		default:
			return o, fmt.Errorf("unknown argument %q (usage: hook [--config FILE] [--fw] [--removeall] [--version])", a)
		}
	}
	return o, nil
}

func (r *Run) run(budget *time.Timer) int {
	crashpoint.Arm(r.Env[crashpoint.Env])
	if r.Env[chainedEnv] != "" {
		// We are the OCSERV_NEXT_SCRIPT of this hook running as ocserv's
		// fw script: that run records the event.
		return ExitAdmit
	}
	opts, err := parseArgs(r.Args)
	if err != nil {
		r.printf("%v", err)
		if r.Env["REASON"] == "" {
			return ExitUsage // a person at a terminal, not ocserv
		}
	}
	if opts.version {
		fmt.Fprintln(r.Stderr, "ocserv-telemetry hook", Version)
		return ExitAdmit
	}
	cfg := r.loadConfig(opts.configPath)
	r.budget = cfg.HookBudget
	budget.Reset(r.budget - r.used())
	if opts.removeAll {
		return r.removeAll(cfg)
	}

	t, err := events.ParseReason(r.Env["REASON"])
	if err != nil {
		r.printf("%v; nothing recorded", err)
		return ExitAdmit
	}
	if r.stallBeforeEvent != nil {
		r.stallBeforeEvent()
	}
	ev := events.FromEnv(t, r.Env)
	r.stamp(ev, cfg)
	for _, p := range ev.Problems {
		r.printf("%s", p)
	}
	// From here on a budget expiry must be able to leave the event in
	// ocserv's log: everything below can block on the disk (kick list,
	// spool, session record, firewall). Later encodes replace this one.
	r.encode(ev)
	if r.stallEarly != nil {
		r.stallEarly()
	}
	code := ExitAdmit
	if t == events.Connect && r.refused(cfg, ev) {
		// Refused before any firewall work or next script: ocserv will not
		// start the session, so there is nothing to restrict.
		code = ExitRefuse
		r.encode(ev) // the refusal, for a budget expiry from here on
	}
	// The spool is opened, and the session_uid settled, before any
	// firewall work: the rules record the session that owns them, and a
	// disconnect removes only its own (ocserv can give the device to the
	// next session before this disconnect runs).
	sp, spErr := spool.Open(cfg.SpoolDir, spool.Options{Fsync: cfg.Fsync, LockWait: r.lockWait(cfg), Create: true})
	if spErr != nil {
		r.printf("%v", spErr)
		sp = nil
	} else {
		defer sp.Close()
	}
	r.sessionUID(sp, ev)
	switch {
	case code == ExitRefuse: // kicked: no firewall work, no next script
	case opts.fw:
		r.encode(ev) // so that a budget expiry can still log the event
		code = r.asFirewallScript(cfg, ev, budget)
	case cfg.Firewall == config.FirewallOn && t == events.Connect && !ev.Policy.Restricted():
		// ocserv runs the fw script only for restricted users, so this
		// connect came through the plain wrapper: clear rules of ours a
		// missed disconnect left on the device, or they would restrict a
		// user ocserv did not restrict.
		r.clearLeftovers(cfg, ev)
	case cfg.Firewall == config.FirewallOn && ev.Policy.Restricted() && t == events.Connect:
		r.printf("FIREWALL=on, but ocserv ran the hook as its connect script for restricted user %q: the rules are ocserv-fw's; install the hook as ocserv's fw script (README, firewall modes)", ev.Session.Username)
	}

	if sp == nil {
		r.keep(ev, "spool unusable")
		return code
	}
	if r.stall != nil {
		if _, err := r.encode(ev); err == nil {
			r.stall()
		}
	}
	r.write(sp, ev)
	return code
}

func (r *Run) loadConfig(flag string) config.Config {
	path := config.Path(flag, func(k string) string { return r.Env[k] })
	cfg, probs, err := config.Load(path)
	if err != nil {
		r.printf("%v; using defaults", err)
	}
	for _, p := range probs {
		r.printf("config %s: %v", path, p)
	}
	return cfg
}

// kicked refuses a connect of a user an operator kicked (docs/design.md's
// second deliberate refusal): it is checked on every connect, cookie
// resumptions included, which is what makes a kick stick.
func (r *Run) kicked(cfg config.Config, ev *events.Event) bool {
	user := r.Env["USERNAME"]
	e, err := kick.Check(cfg.SpoolDir, user, time.Now())
	if err != nil {
		r.printf("%v", err)
	}
	if e == nil {
		return false
	}
	why := "kicked by an operator"
	if e.Reason != "" {
		why += ": " + e.Reason
	}
	if e.Source == kick.SourcePolicy {
		why = "policy: " + e.Reason // the ledger's kick, ahead of its verdict reaching the mirror
	}
	if e.Until != nil {
		why += " (until " + e.Until.UTC().Format(time.RFC3339) + ")"
	}
	r.refuse(ev, why)
	return true
}

// lockWait is the lock's sub-budget, never more than what is left.
func (r *Run) lockWait(cfg config.Config) time.Duration {
	left := r.budget - r.used() - 20*time.Millisecond
	if cfg.LockBudget < left {
		return cfg.LockBudget
	}
	if left < 0 {
		return 0
	}
	return left
}

// stamp fills what the environment does not say.
func (r *Run) stamp(ev *events.Event, cfg config.Config) {
	ev.EventID = newEventID()
	ev.ServerID = cfg.ServerID
	ev.Time = r.Start.UTC().Format(time.RFC3339Nano)
	ev.BootID = spool.BootID()
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) == nil {
		ev.MonoNS = ts.Nano()
	}
	ev.Firewall = &events.Firewall{Mode: cfg.Firewall, Action: "none"}
	if ev.Type == events.Connect {
		admitted := true
		ev.Admitted = &admitted
	}
	ev.Hook = &events.HookInfo{Version: Version}
}

func newEventID() string { return events.NewUUIDv7() }

// sessionUID gives the event the session_uid of its ocserv worker: made at
// connect, kept under ID and DEVICE until disconnect. sp is nil when the
// spool could not be opened: a new one is made, and nothing is kept.
// r.uidKnown records whether a non-connect event found its connect's.
func (r *Run) sessionUID(sp *spool.Spool, ev *events.Event) {
	s := ev.Session
	if s == nil || s.ID == 0 || s.Device == "" {
		ev.SessionUID = newEventID()
		ev.Problems = append(ev.Problems, "session_uid: no valid ID and DEVICE to keep it under; made a new one")
		return
	}
	key := spool.SessionKey(s.ID, s.Device)
	if ev.Type != events.Connect {
		var uid string
		var ok bool
		if sp != nil {
			var err error
			if uid, ok, err = sp.LoadSession(key); err != nil {
				r.printf("%v", err)
			}
		}
		if ok {
			ev.SessionUID, r.uidKnown = uid, true
			if ev.Type == events.Disconnect {
				if err := sp.DropSession(key); err != nil {
					r.printf("%v", err)
				}
			}
			return
		}
		ev.Problems = append(ev.Problems, "session_uid: none kept for this worker (connect not seen by this hook); made a new one")
	}
	ev.SessionUID = newEventID()
	// Only a connect starts a session record. A host-update without one
	// is usually late: ocserv waits for neither the disconnect nor the
	// host-update script, so after a quick logout the host-update can run
	// last, and a record it made would outlive the session.
	if ev.Type == events.Connect {
		r.uidKnown = true
		if sp != nil {
			if err := sp.StoreSession(key, ev.SessionUID); err != nil {
				r.printf("%v", err)
			}
		}
	}
}

// owner is the session this run's firewall rules belong to: ocserv's ID
// and the session_uid, when this run knows the session's real one.
func (r *Run) owner(ev *events.Event) firewall.Owner {
	o := firewall.Owner{}
	if ev.Session != nil {
		o.ID = ev.Session.ID
	}
	if r.uidKnown {
		o.UID = ev.SessionUID
	}
	return o
}

// write appends the event, or falls back to a file of its own when the lock
// is not free in time, or as a last resort keeps it in ocserv's log.
func (r *Run) write(sp *spool.Spool, ev *events.Event) {
	_, err := sp.Append(func(st spool.Stamp) ([]byte, error) {
		ev.Seq, ev.SpoolID = st.Seq, st.SpoolID
		return r.encode(ev)
	})
	if err == nil {
		r.pending.Store(nil)
		return
	}
	if !errors.Is(err, spool.ErrLockTimeout) {
		r.printf("%v; trying the fallback file", err)
	}
	ev.Seq, ev.SpoolID = 0, sp.Meta().SpoolID
	ev.Hook.Fallback = true
	line, encErr := r.encode(ev)
	if encErr != nil {
		r.printf("%v", encErr)
		return
	}
	if _, err := sp.AppendFallback(line); err != nil {
		r.printf("%v", err)
		r.dump("spool unwritable")
		return
	}
	r.pending.Store(nil)
}

func (r *Run) encode(ev *events.Event) ([]byte, error) {
	ev.Hook.ElapsedUS = time.Since(r.Start).Microseconds()
	line, err := ev.Marshal()
	if err != nil {
		return nil, err
	}
	if len(line) > spool.MaxLine && ev.Policy != nil {
		line, err = shortened(ev, len(line))
		if err != nil {
			return nil, err
		}
	}
	r.pending.Store(&line)
	r.drafted.Store(true)
	return line, nil
}

// shortened encodes ev without its policy lists, for an event whose line
// would be longer than the spool takes (policy variables may hold up to
// 128 KiB each, and a port list grows fourfold in JSON). The event itself
// is left as it is: the firewall works from its policy.
func shortened(ev *events.Event, n int) ([]byte, error) {
	short := *ev
	p := *ev.Policy
	p.Routes, p.NoRoutes, p.DNS, p.AllowPorts, p.DenyPorts = []string{}, []string{}, []string{}, nil, nil
	p.ListsOmitted = true
	short.Policy = &p
	short.Problems = append(append([]string(nil), ev.Problems...), fmt.Sprintf(
		"policy: %d routes, %d no-routes, %d DNS servers, %d allowed and %d denied ports left out of this event (%d bytes, over the spool's %d-byte line limit); the firewall used them all",
		len(ev.Policy.Routes), len(ev.Policy.NoRoutes), len(ev.Policy.DNS), len(ev.Policy.AllowPorts), len(ev.Policy.DenyPorts), n, spool.MaxLine))
	return short.Marshal()
}

// keep encodes an event that cannot reach the spool and leaves it in
// ocserv's log.
func (r *Run) keep(ev *events.Event, why string) {
	if _, err := r.encode(ev); err != nil {
		r.printf("%v", err)
		return
	}
	r.dump(why)
}

// firstFrames keeps a panic's stack short enough for one log entry.
func firstFrames(stack []byte) string {
	lines := strings.Split(string(stack), "\n")
	if len(lines) > 12 {
		lines = lines[:12]
	}
	return strings.Join(lines, "\n")
}
