package engine

import (
	"container/heap"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
)

// act ends what the evaluation says must end, and lifts the policy's
// kicks when the user is allowed again.
func (e *Engine) act(ctx context.Context, f *UserFacts, ev *policy.Evaluation) {
	u := f.Effective.User
	v := &ev.Verdict
	if (!v.Allowed || ev.Excess) && len(ev.End) > 0 && !e.commandable(u) {
		return
	}
	if !v.Allowed {
		// Every server the user is on: the kick puts them on its kick
		// list (so a cookie reconnect is refused even before the verdict
		// reaches that host's mirror) and disconnects them there.
		servers := map[string]bool{}
		for _, o := range ev.End {
			servers[o.ServerID] = true
		}
		for _, s := range sortedKeys(servers) {
			if !e.due_(u, s, "kick") {
				continue
			}
			err := e.command(ctx, func(c context.Context) error { return e.o.Enforcer.Kick(c, s, u, v.Message, e.o.KickFor) })
			e.count(func(st *Stats) { st.Kicks++ })
			if err != nil {
				e.commandFailed(u, s, "kick", err)
				continue
			}
			e.o.Log.Info("policy: sessions ended", "user", u, "server", s, "reason", v.Reason)
			if err := e.o.Store.PutPolicyKick(ctx, ledger.PolicyKick{Username: u, ServerID: s, At: e.o.Now().UTC(), Reason: v.Message}); err != nil {
				e.o.Log.Warn("policy: cannot record a kick (it expires by itself)", "user", u, "server", s, "err", err.Error())
			}
			e.markKicked(u, s, true)
			delete(e.paced, paceKey(u, s, "unkick")) // a lift after this kick is a new fact
		}
		return
	}
	e.lift(ctx, u)
	if !ev.Excess || len(ev.End) == 0 || e.o.Enforcer == nil {
		return
	}
	// The excess over the session limit.
	ended := map[string]bool{} // servers where a session was ended
	for _, o := range ev.End {
		if o.WorkerID == 0 || !e.due_(u, o.ServerID+"\x00"+o.SessionUID, "disconnect") {
			continue
		}
		err := e.command(ctx, func(c context.Context) error { return e.o.Enforcer.Disconnect(c, o.ServerID, o.WorkerID, u) })
		e.count(func(st *Stats) { st.Disconnects++ })
		if err != nil {
			e.commandFailed(u, o.ServerID, "disconnect", err)
			continue
		}
		e.o.Log.Info("policy: session over the limit ended", "user", u, "server", o.ServerID, "worker", o.WorkerID,
			"on_excess", f.Effective.Sessions.OnExcess, "max", f.Effective.Sessions.Max)
		ended[o.ServerID] = true
	}
	if f.Effective.Sessions.OnExcess != policy.ExcessNewest || e.o.NewestHold <= 0 {
		return
	}
	// The ended session's cookie would bring it straight back (ocserv
	// keeps a disconnected session's cookie valid) and it would win in
	// turn: the server it ran on refuses the user for a while, unless the
	// winning session is on that same server.
	keep := map[string]bool{}
	ending := map[string]bool{}
	for _, o := range ev.End {
		ending[o.SessionUID] = true
	}
	for _, o := range f.Inputs.Open {
		if !ending[o.SessionUID] {
			keep[o.ServerID] = true
		}
	}
	for _, s := range sortedKeys(ended) {
		if keep[s] {
			continue
		}
		err := e.command(ctx, func(c context.Context) error {
			return e.o.Enforcer.Kick(c, s, u, fmt.Sprintf("session limit of %d: a newer session elsewhere wins", f.Effective.Sessions.Max), e.o.NewestHold)
		})
		if err != nil {
			e.commandFailed(u, s, "kick", err)
		}
	}
}

// lift takes the policy's kicks of u off every server it put them on.
func (e *Engine) lift(ctx context.Context, u string) {
	if len(e.kicked[u]) == 0 || e.o.Enforcer == nil {
		return
	}
	for _, s := range sortedKeys(e.kicked[u]) {
		if !e.due_(u, s, "unkick") {
			continue
		}
		err := e.command(ctx, func(c context.Context) error { return e.o.Enforcer.Unkick(c, s, u) })
		e.count(func(st *Stats) { st.Unkicks++ })
		if err != nil {
			e.commandFailed(u, s, "unkick", err)
			continue
		}
		if err := e.o.Store.DeletePolicyKick(ctx, u, s); err != nil {
			e.o.Log.Warn("policy: cannot forget a lifted kick", "user", u, "server", s, "err", err.Error())
		}
		e.markKicked(u, s, false)
		delete(e.paced, paceKey(u, s, "kick")) // a denial after this lift is a new fact: no pause
		e.o.Log.Info("policy: kick lifted", "user", u, "server", s)
	}
	if len(e.kicked[u]) > 0 {
		// Not every server answered: try again soon.
		e.Touch(u)
	}
}

func (e *Engine) markKicked(u, s string, on bool) {
	if on {
		if e.kicked[u] == nil {
			e.kicked[u] = map[string]bool{}
		}
		e.kicked[u][s] = true
		return
	}
	delete(e.kicked[u], s)
	if len(e.kicked[u]) == 0 {
		delete(e.kicked, u)
	}
}

// due_ paces commands: the same action for the same user and target at
// most once per Retry (a batch of events right after a kick must not send
// it again before its disconnect event arrives).
func (e *Engine) due_(u, target, action string) bool {
	if e.o.Enforcer == nil {
		return false
	}
	k := paceKey(u, target, action)
	now := e.o.Now()
	if t, ok := e.paced[k]; ok && now.Sub(t) < e.o.Retry {
		// Still needed: look again when the pause is over.
		heap.Push(e.next, wake{at: t.Add(e.o.Retry), user: u})
		return false
	}
	e.paced[k] = now
	if len(e.paced) > 100000 {
		for k, t := range e.paced {
			if now.Sub(t) >= e.o.Retry {
				delete(e.paced, k)
			}
		}
	}
	return true
}

// commandable reports whether the command service takes u as a user
// argument. A group's policy also covers members whose names it refuses
// ("jörg", "john smith"): their verdict still reaches every host and the
// hook refuses their logins, but no command can end a session of theirs,
// so none is sent (it would only fail, every Retry) and the engine says
// so once per user.
func (e *Engine) commandable(u string) bool {
	if policy.ValidName(u) == nil || e.o.Enforcer == nil {
		return true
	}
	if !e.noCmd[u] {
		if e.noCmd == nil {
			e.noCmd = map[string]bool{}
		}
		e.noCmd[u] = true
		e.count(func(st *Stats) { st.NoCommand++ })
		e.o.Log.Warn("policy: cannot end this user's sessions by command (the command service accepts letters, digits and . _ @ + - only); their logins are still refused", "user", u)
	}
	return false
}

func paceKey(u, target, action string) string { return u + "\x00" + target + "\x00" + action }

func (e *Engine) command(ctx context.Context, f func(context.Context) error) error {
	c, cancel := context.WithTimeout(ctx, e.o.CommandTimeout)
	defer cancel()
	return f(c)
}

func (e *Engine) commandFailed(u, s, action string, err error) {
	e.count(func(st *Stats) { st.CommandErrs++ })
	// One line per server and error until it changes (or a minute
	// passes): a host that does not trust the key must not flood the log
	// with a line per user every few seconds.
	msg := err.Error()
	now := e.o.Now()
	if l, ok := e.logged[s]; !ok || l.msg != msg || now.Sub(l.at) >= time.Minute {
		e.o.Log.Warn("policy: command failed; it is sent again at the next evaluation", "action", action, "user", u, "server", s,
			"err", msg, "failures_since_last_line", l.n)
		e.logged[s] = loggedErr{msg: msg, at: now}
	} else {
		l.n++
		e.logged[s] = l
	}
	e.Touch(u) // the next evaluation retries (paced by Retry)
}

// loggedErr is the last command error logged for a server.
type loggedErr struct {
	msg string
	at  time.Time
	n   int // failures since, not logged
}

// limitNotices are the session-limit notices: logins the hooks refused,
// and sessions the engine ends now.
func (e *Engine) limitNotices(f *UserFacts, ev *policy.Evaluation, now time.Time) []policy.Notice {
	s := f.Effective.Sessions
	if s == nil {
		return nil
	}
	var out []policy.Notice
	for _, r := range f.Refused {
		out = append(out, policy.SessionLimitNotice(f.Effective.User, s, "refused", r.ServerID, r.SessionUID, now))
	}
	if ev.Verdict.Allowed && ev.Excess {
		done := map[string]bool{}
		for _, o := range ev.End {
			l := o.LogicalUID
			if l == "" {
				l = o.SessionUID
			}
			if !done[l] {
				done[l] = true
				out = append(out, policy.SessionLimitNotice(f.Effective.User, s, "ended", o.ServerID, l, now))
			}
		}
	}
	return out
}

// notify records notices once each and publishes the new ones on
// <prefix>.notices.<kind> (Nats-Msg-Id: the notice id, so a stream over
// the subject keeps each once).
func (e *Engine) notify(ctx context.Context, ns []policy.Notice) error {
	var fresh []policy.Notice
	for _, n := range ns {
		n.ID = NoticeID(n.Key)
		if !e.sent[n.ID] {
			fresh = append(fresh, n)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	added, err := e.o.Store.AddPolicyNotices(ctx, fresh, e.o.Webhook)
	if err != nil {
		return fmt.Errorf("record notices: %w", err)
	}
	for _, n := range fresh {
		e.sent[n.ID] = true
	}
	if len(e.sent) > 1_000_000 {
		e.sent = map[string]bool{} // the store still refuses repeats
	}
	for _, n := range added {
		e.o.Log.Info("policy notice", "kind", n.Kind, "user", n.User, "message", n.Message)
		if e.o.NC != nil {
			b, _ := json.Marshal(n)
			m := nats.NewMsg(e.o.Prefix + ".notices." + n.Kind)
			m.Header.Set(nats.MsgIdHdr, n.ID)
			m.Data = b
			if err := e.o.NC.PublishMsg(m); err != nil {
				e.o.Log.Warn("policy notice not published (it stays recorded in the ledger)", "id", n.ID, "err", err.Error())
			}
		}
	}
	e.count(func(s *Stats) { s.Notices += int64(len(added)) })
	if len(added) > 0 && e.o.Webhook && e.o.OnNotice != nil {
		e.o.OnNotice()
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
