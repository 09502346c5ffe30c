package hook

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/firewall"
)

// The three ways ocserv runs the hook (docs/firewall.md):
//
//   - (a) no restriction configured: ocserv runs the connect and disconnect
//     scripts, i.e. the hook's /bin/sh wrapper. The hook records events.
//   - (b) restricted users with ocserv-fw in charge: ocserv runs its
//     ocserv-fw, which applies the rules and runs the wrapper through
//     /bin/sh "$OCSERV_NEXT_SCRIPT". The hook records events and never
//     stacks rules on top of ocserv-fw's.
//   - (c) the hook as ocserv's fw script (installed with --fw, FIREWALL=on):
//     it applies the policy, runs OCSERV_NEXT_SCRIPT through /bin/sh as
//     ocserv-fw does, passes that script's verdict on, and records one
//     event with the outcome of both.

// ExitRefuse refuses a login: only for the deliberate refusals.
const ExitRefuse = 1

// chainedEnv is set in the environment of the OCSERV_NEXT_SCRIPT the hook
// runs. When that script is (or calls) the hook again, the inner run sees
// it and does nothing: one event per ocserv event, never two.
const chainedEnv = "OCSERV_TELEMETRY_CHAINED"

// asFirewallScript does the fw script's job for one event and returns the
// exit status ocserv should see.
func (r *Run) asFirewallScript(cfg config.Config, ev *events.Event, budget *time.Timer) int {
	if cfg.Firewall != config.FirewallOn {
		r.printf("run as ocserv's fw script (--fw) but FIREWALL=%s; applying the policy anyway, so no restricted user is let in unrestricted", cfg.Firewall)
	}
	dev := r.Env["DEVICE"]
	// An invalid policy fails closed exactly like a restricted one: an
	// entry that did not parse may be the very restriction (ocserv's
	// restrict-user-to-ports = "tcp()" gives an invalid policy that does
	// not look restricted), so such a user is never let in without rules.
	mustEnforce := ev.Policy.Restricted() || (ev.Policy != nil && ev.Policy.Invalid)
	code := ExitAdmit
	switch ev.Type {
	case events.Connect:
		// If the budget runs out while the rules are half-way, the user
		// must not get in unrestricted.
		r.failClosed.Store(mustEnforce)
		out := r.firewall(cfg, func(ctx context.Context, b firewall.Backend) firewall.Outcome {
			return firewall.Connect(ctx, b, dev, r.owner(ev), ev.Policy)
		}, ev)
		r.failClosed.Store(false)
		if out.Refuse() {
			r.refuse(ev, "firewall: neither the user's rules nor a reject-all rule could be applied")
			return ExitRefuse // ocserv-fw's set -e would not run the next script either
		}
		if status := r.runNext(ev, budget); status != 0 {
			r.refuse(ev, "next script: OCSERV_NEXT_SCRIPT refused the login")
			r.verdict.Store(int32(status)) // its own status, not ours
			code = status
			if out.Action == firewall.ActionApplied || out.Action == firewall.ActionRejectAll {
				// ocserv runs no disconnect script for a refused login:
				// the rules would stay on the device name and restrict
				// (or close) whoever gets it next without restriction.
				r.withdraw(cfg, dev, r.owner(ev))
			}
		}
	case events.Disconnect:
		out := r.firewall(cfg, func(ctx context.Context, b firewall.Backend) firewall.Outcome {
			return firewall.Disconnect(ctx, b, dev, r.owner(ev))
		}, ev)
		if s := out.SupersededBy; s != nil {
			ev.Firewall.SupersededBy = &events.SessionRef{ID: s.ID, SessionUID: s.UID}
		}
		r.runNext(ev, budget) // ocserv ignores a disconnect script's status
	default:
		// ocserv never runs the fw script for host-update; if a future
		// version does, chain it and touch no rules.
		r.runNext(ev, budget)
	}
	return code
}

// openFirewall opens the configured backend (a test may stand in its own).
// It is opened held: the sockets of its deletions stay open until
// releaseFirewall, after the event is written, so that the kernel's wait
// for an RCU grace period on closing them (most of a disconnect's
// firewall time with nftables) overlaps the spool write and its fsync
// instead of coming before them. The rules themselves are gone when the
// backend's call returns.
func (r *Run) openFirewall(kind string) (firewall.Backend, error) {
	if r.backend != nil {
		return r.backend(kind)
	}
	b, err := firewall.OpenHeld(kind)
	if c, ok := b.(io.Closer); ok && err == nil {
		r.held = append(r.held, c)
	}
	return b, err
}

// releaseFirewall closes what openFirewall's backends held, waiting for
// the kernel as the process's exit would.
func (r *Run) releaseFirewall() {
	for _, c := range r.held {
		if err := c.Close(); err != nil {
			r.printf("firewall: %v", err)
		}
	}
	r.held = nil
}

// refuse records a deliberate refusal and makes it the run's verdict, so
// that neither the budget timer nor a recovered panic can turn it into an
// admission afterwards.
func (r *Run) refuse(ev *events.Event, why string) {
	r.verdict.Store(ExitRefuse)
	no := false
	ev.Admitted = &no
	ev.Refusal = why
	r.printf("refusing the login of %q: %s", ev.Session.Username, why)
}

// firewall runs one firewall step inside the firewall's sub-budget (never
// more than what is left of the whole budget) and records the outcome.
func (r *Run) firewall(cfg config.Config, step func(context.Context, firewall.Backend) firewall.Outcome, ev *events.Event) firewall.Outcome {
	limit := cfg.FirewallBudget
	if left := r.budget - r.used() - 30*time.Millisecond; left < limit {
		limit = left
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	b, err := r.openFirewall(cfg.FirewallBackend)
	if err != nil {
		r.printf("firewall: %v", err)
		b = nil // Connect fails closed on a nil backend for a restricted user
	}
	out := step(ctx, b)
	ev.Firewall.Action = out.Action
	ev.Firewall.Backend = out.Backend
	ev.Firewall.Micros = out.Elapsed.Microseconds()
	if out.Err != nil {
		ev.Firewall.Error = out.Err.Error()
		r.printf("firewall %s on %q: %v", out.Action, r.Env["DEVICE"], out.Err)
	}
	return out
}

// withdraw removes the rules just applied for a login that was refused
// after all. Not a security matter (the session never starts), so a
// failure is only reported; the next connect on dev replaces them anyway.
func (r *Run) withdraw(cfg config.Config, dev string, owner firewall.Owner) {
	limit := cfg.FirewallBudget
	if left := r.budget - r.used() - 30*time.Millisecond; left < limit {
		limit = left
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	b, err := r.openFirewall(cfg.FirewallBackend)
	if err == nil {
		err = firewall.Disconnect(ctx, b, dev, owner).Err
	}
	if err != nil {
		r.printf("firewall: removing the rules of the refused login on %q: %v", dev, err)
	}
}

// clearLeftovers removes whatever rules of ours are on the device of an
// unrestricted user's connect. Only Remove: firewall.Connect would treat an
// unrestricted user's unparseable DNS entry as a reason to reject-all.
func (r *Run) clearLeftovers(cfg config.Config, ev *events.Event) {
	dev := ev.Session.Device
	if dev == "" {
		return // no valid device: nothing can have been applied to it
	}
	r.firewall(cfg, func(ctx context.Context, b firewall.Backend) firewall.Outcome {
		if b == nil {
			return firewall.Outcome{Action: firewall.ActionNone}
		}
		start := time.Now()
		err := b.Clear(ctx, dev)
		return firewall.Outcome{Action: firewall.ActionNone, Backend: b.Name(), Err: err, Elapsed: time.Since(start)}
	}, ev)
}

// runNext runs OCSERV_NEXT_SCRIPT exactly as ocserv-fw does, /bin/sh
// "$OCSERV_NEXT_SCRIPT" with ocserv's environment, and returns its exit
// status. Its run time is the operator's and is not counted against the
// hook's budget: the timer stops while it runs.
func (r *Run) runNext(ev *events.Event, budget *time.Timer) int {
	next := r.Env["OCSERV_NEXT_SCRIPT"]
	if next == "" {
		return 0
	}
	env := make([]string, 0, len(r.Env)+1)
	for k, v := range r.Env {
		if k == "OCSERV_NEXT_SCRIPT" {
			continue // ocserv-fw unsets it before running the script
		}
		env = append(env, k+"="+v)
	}
	env = append(env, chainedEnv+"=1")
	cmd := exec.Command("/bin/sh", next)
	cmd.Env = env
	// Files, not pipes: Wait returns when the script exits, even if a
	// child it left behind still holds them, so nothing of the script's
	// can hold the hook after the script itself is done. How long the
	// script runs is the operator's, as under ocserv-fw (ocserv waits for a
	// connect script without a timeout): no deadline here, and its time
	// is not counted against the hook's budget.
	cmd.Stdout = os.Stderr // ocserv sends a script's stdout to its log too
	cmd.Stderr = os.Stderr
	budget.Stop()
	began := time.Now()
	err := cmd.Run()
	r.paused += time.Since(began) // what the script took is not ours
	budget.Reset(r.budget - r.used())
	status := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		status = exit.ExitCode()
		if status < 0 { // killed by a signal: ocserv treats that as a failure
			status = ExitRefuse
		}
	case err != nil:
		r.printf("OCSERV_NEXT_SCRIPT %q: %v", next, err)
		status = ExitRefuse // a script that cannot run refuses, as under ocserv-fw
	}
	ev.Hook.Chained = &status
	return status
}

// removeAll deletes every rule, chain and table the hook made, with both
// backends (a host may have switched backends since).
func (r *Run) removeAll(cfg config.Config) int {
	code := ExitAdmit
	for _, kind := range []string{firewall.KindNftables, firewall.KindIptables} {
		b, err := firewall.Open(kind)
		if err != nil {
			r.printf("--removeall: %s: not available here (%v)", kind, err)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = b.RemoveAll(ctx)
		cancel()
		if err != nil {
			r.printf("--removeall: %s: %v", kind, err)
			code = ExitRefuse
		}
	}
	return code
}
