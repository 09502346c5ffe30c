package firewall

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

// Owner is the session a device's rules were made for. ocserv can hand a
// device (vpnsN) to a new session before the old session's disconnect
// script has run, so rules are removed only by the session that owns them
// (issue 11, defect 2).
type Owner struct {
	// ID is ocserv's ID for the session (the worker's PID).
	ID int
	// UID is the hook's session_uid. A disconnect whose session_uid was
	// not found (the record was lost) passes "": the ID alone then decides.
	UID string
}

func (o Owner) String() string {
	if o.UID == "" {
		return fmt.Sprintf("id %d", o.ID)
	}
	return fmt.Sprintf("id %d, session_uid %s", o.ID, o.UID)
}

// matches reports whether rules recorded for rec belong to o: the same ID,
// and the same session_uid when both are known.
func (o Owner) matches(rec Owner) bool {
	return o.ID > 0 && o.ID == rec.ID && (o.UID == "" || rec.UID == "" || o.UID == rec.UID)
}

// NotOwnerError is Remove's answer when the device's rules belong to
// another session: nothing was changed.
type NotOwnerError struct {
	Dev string
	// Current is the session that owns the rules now; zero when the rules
	// carry no owner this package can read.
	Current Owner
}

func (e *NotOwnerError) Error() string {
	if e.Current.ID == 0 {
		return fmt.Sprintf("the rules on %s carry no owner that can be read; left in place", e.Dev)
	}
	return fmt.Sprintf("the rules on %s belong to another session (%s); left in place", e.Dev, e.Current)
}

// errNoOwner is Remove's answer for a session without a valid ID: whose
// rules are on the device cannot be told, so they are left in place.
var errNoOwner = errors.New("no valid session ID: cannot tell whether the device's rules are this session's; left in place")

// Backend installs and removes the per-device rules. Every method is safe
// for concurrent use on different devices, and each change to a device is
// all-or-nothing per address family table (nftables: one transaction for
// both families).
type Backend interface {
	// Name is "nftables" or "iptables".
	Name() string
	// Apply replaces whatever the backend had for dev (leftovers of an
	// earlier session included, whoever owned them) with the policy's
	// rules, recorded as owner's, atomically.
	Apply(ctx context.Context, dev string, owner Owner, p *events.Policy) error
	// RejectAll replaces the device's rules with ones that reject
	// everything from and to dev, recorded as owner's: the fail-closed
	// state.
	RejectAll(ctx context.Context, dev string, owner Owner) error
	// Remove deletes what the backend made for dev if it is owner's (or was
	// made by a release that recorded no owner), and nothing for any other
	// device. When the rules are another session's it changes nothing and
	// returns a *NotOwnerError; the check and the removal are one
	// transaction. Removing what is not there is not an error.
	Remove(ctx context.Context, dev string, owner Owner) error
	// Clear deletes everything the backend made for dev, whoever owns it:
	// leftovers found when a new session takes the device.
	Clear(ctx context.Context, dev string) error
	// RemoveAll deletes every table, chain and rule this backend made, for
	// every device, and nothing else.
	RemoveAll(ctx context.Context) error
}

// Backend kinds accepted by Open.
const (
	KindAuto     = "auto"
	KindNftables = "nftables"
	KindIptables = "iptables"
)

// Open returns the backend of the given kind. "auto" (or "") picks
// nftables when the kernel answers nf_tables netlink requests, else
// iptables. Open itself changes nothing.
func Open(kind string) (Backend, error) { return open(kind, false) }

// OpenHeld is Open for a process that exits soon after its firewall work,
// the hook. Its nftables backend keeps its netlink sockets open until the
// backend's Close (it is an io.Closer; so is every backend OpenHeld
// returns): closing a netfilter socket after a batch that deleted rules
// waits for an RCU grace period (about 10 ms on the test kernel, most of a
// disconnect), and held open until the event is written that wait runs
// beside the hook's own work instead of before it. The rules are gone
// when each call returns, as with Open; only the kernel's freeing of them
// is left for Close (or the process's exit, which waits for it too).
func OpenHeld(kind string) (Backend, error) { return open(kind, true) }

// Every backend OpenHeld returns can be closed.
var (
	_ io.Closer = (*nftBackend)(nil)
	_ io.Closer = (*iptBackend)(nil)
)

func open(kind string, hold bool) (Backend, error) {
	switch kind {
	case KindNftables:
		return newNft(hold), nil
	case KindIptables:
		return newIptables()
	case KindAuto, "":
		n := newNft(hold)
		if err := n.probe(); err == nil {
			return n, nil
		} else if b, ierr := newIptables(); ierr == nil {
			n.Close() // the probe's socket
			return b, nil
		} else {
			n.Close()
			return nil, fmt.Errorf("no firewall backend: nftables: %v; iptables: %v", err, ierr)
		}
	}
	return nil, fmt.Errorf("unknown firewall backend %q (want auto, nftables or iptables)", kind)
}

// Actions reported in Outcome.Action (the event's firewall.action).
const (
	ActionApplied   = "applied"    // the policy's rules are in place
	ActionRemoved   = "removed"    // the device's rules are gone
	ActionRejectAll = "reject-all" // the rules could not be applied; the device is closed
	ActionFailed    = "failed"     // not even reject-all could be applied: refuse the login
	ActionNone      = "none"       // nothing to enforce for this session
)

// Outcome is what Connect or Disconnect did, for the event.
type Outcome struct {
	Action  string
	Backend string
	// SupersededBy is set when a disconnect found the device's rules
	// owned by another session and left them (Action "none").
	SupersededBy *Owner
	// Err is why the action is not the one asked for ("reject-all",
	// "failed"), or a cleanup problem that did not matter for security.
	Err     error
	Elapsed time.Duration
}

// Refuse reports whether the hook must refuse the login: the session needed
// rules and neither they nor reject-all could be installed.
func (o Outcome) Refuse() bool { return o.Action == ActionFailed }

// Connect enforces a session's policy on dev:
//   - an unrestricted policy (nothing to enforce): leftovers of an earlier
//     session on dev are removed and the action is "none";
//   - a restricted policy: Apply; if that fails, RejectAll ("reject-all");
//     if that fails too, "failed";
//   - an invalid policy (p.Invalid): RejectAll without trying the rules.
//
// b may be nil when no backend could be opened: a restricted or invalid
// policy then gives "failed". When ctx has a deadline, Apply gets two
// thirds of the time left and RejectAll keeps the rest, so a slow Apply
// cannot use up the time the fail-closed fallback needs.
func Connect(ctx context.Context, b Backend, dev string, owner Owner, p *events.Policy) Outcome {
	start := time.Now()
	out := Outcome{}
	finish := func(action string, err error) Outcome {
		out.Action, out.Err, out.Elapsed = action, err, time.Since(start)
		return out
	}
	if b != nil {
		out.Backend = b.Name()
	}
	needs := p != nil && (p.Restricted() || p.Invalid)
	if err := ValidDevice(dev); err != nil {
		if !needs {
			return finish(ActionNone, err)
		}
		// No rule can name a device we refuse to write into rules.
		return finish(ActionFailed, err)
	}
	if b == nil {
		if !needs {
			return finish(ActionNone, nil)
		}
		return finish(ActionFailed, errors.New("no firewall backend"))
	}
	if !needs {
		// Leftovers (a missed disconnect) would restrict, or reject, a user
		// ocserv did not restrict. Not a security matter, so an error is only
		// reported.
		return finish(ActionNone, b.Clear(ctx, dev))
	}
	var applyErr error
	if p.Invalid {
		applyErr = errInvalidPolicy
	} else {
		actx, cancel := splitBudget(ctx, 2, 3)
		applyErr = b.Apply(actx, dev, owner, p)
		cancel()
		if applyErr == nil {
			return finish(ActionApplied, nil)
		}
	}
	if err := b.RejectAll(ctx, dev, owner); err != nil {
		return finish(ActionFailed, errors.Join(applyErr, fmt.Errorf("reject-all: %w", err)))
	}
	return finish(ActionRejectAll, applyErr)
}

// Disconnect removes owner's rules for dev ("removed"). Rules another
// session owns now (ocserv gave the device to it before this disconnect
// ran) are left, and the outcome says whose they are (action "none",
// SupersededBy); so are rules of a session without a valid ID. A failure
// leaves the old rules (the next Connect on dev replaces them), so it is
// reported, never fatal.
func Disconnect(ctx context.Context, b Backend, dev string, owner Owner) Outcome {
	start := time.Now()
	out := Outcome{}
	finish := func(action string, err error) Outcome {
		out.Action, out.Err, out.Elapsed = action, err, time.Since(start)
		return out
	}
	if b == nil {
		return finish(ActionFailed, errors.New("no firewall backend"))
	}
	out.Backend = b.Name()
	if err := ValidDevice(dev); err != nil {
		return finish(ActionFailed, err)
	}
	if owner.ID <= 0 {
		return finish(ActionNone, errNoOwner)
	}
	err := b.Remove(ctx, dev, owner)
	var notOwner *NotOwnerError
	switch {
	case err == nil:
		return finish(ActionRemoved, nil)
	case errors.As(err, &notOwner):
		cur := notOwner.Current
		out.SupersededBy = &cur
		return finish(ActionNone, err)
	}
	return finish(ActionFailed, err)
}

// splitBudget returns a context whose deadline is num/den of the time ctx
// has left; without a deadline it is ctx itself.
func splitBudget(ctx context.Context, num, den int64) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	left := time.Until(dl)
	if left <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, time.Now().Add(time.Duration(int64(left)*num/den)))
}
