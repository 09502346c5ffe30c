package hook

import (
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/mirror"
)

// ReasonSessionLimit and ReasonStale are the verdict reasons the hook
// adds to the ledger's own (policy.Reason*).
const (
	ReasonSessionLimit = "session_limit"
	ReasonStale        = "stale"
)

// refused runs the connect's deliberate refusal checks: the kick list,
// then fleet policy. A kicked user's event still records what the
// verdicts mirror says (the policy's own kicks come with a verdict).
func (r *Run) refused(cfg config.Config, ev *events.Event) bool {
	k := r.kicked(cfg, ev)
	if !cfg.Policy.Enabled {
		return k
	}
	return r.limited(cfg, ev, k) || k
}

// limited applies the ledger's verdict from the local mirror (DESIGN.md's
// fourth deliberate refusal, docs/policy.md): a denied user, or a login
// past a session limit that refuses the excess, is refused. It never
// waits on the network: a mirror older than POLICY_MAX_AGE decides
// nothing and POLICY_STALE applies (admit and flag, or refuse).
// When decided (already refused by a kick) it only records the verdict.
func (r *Run) limited(cfg config.Config, ev *events.Event, decided bool) bool {
	now := time.Now()
	user := r.Env["USERNAME"]
	res := mirror.Lookup(cfg.SpoolDir, user, now, cfg.Policy.MaxAge)
	info := &events.Verdict{Mirror: res.State, Allowed: true}
	ev.Verdict = info
	if res.State != mirror.StateMissing {
		info.AgeMS = res.Age.Milliseconds()
	}
	if res.Err != nil {
		info.Error = res.Err.Error()
		r.printf("%v", res.Err)
	}
	if !res.Usable() {
		info.StaleMode = cfg.Policy.Stale
		if cfg.Policy.Stale != mirror.StaleRefuse || decided {
			return false
		}
		info.Allowed, info.Reason = false, ReasonStale
		why := policy.RefusalStale + " (" + res.State
		if res.State != mirror.StateMissing {
			why += ", " + res.Age.Round(time.Second).String() + " old"
		}
		r.refuse(ev, why+"; POLICY_STALE=refuse)")
		return true
	}
	v := res.Verdict
	if decided {
		// Already refused (kicked): record what the mirror says, once.
		if v.Denies(now) {
			info.Allowed, info.Reason = false, v.Reason
			if v.Until != nil {
				info.Until = v.Until.UTC().Format(time.RFC3339)
			}
		}
		return false
	}
	switch {
	case v.Denies(now):
		info.Allowed, info.Reason = false, v.Reason
		why := policy.RefusalPrefix + v.Message
		if v.Until != nil {
			info.Until = v.Until.UTC().Format(time.RFC3339)
			why += " (until " + info.Until + ")"
		}
		r.refuse(ev, why)
		return true
	case v.RefusesSession(cfg.ServerID):
		info.Allowed, info.Reason = false, ReasonSessionLimit
		r.refuse(ev, policy.RefusalSessionLimit+" of "+itoa(v.Sessions.Max)+" reached on other servers")
		return true
	}
	return false
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for ; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	return string(b[i:])
}
