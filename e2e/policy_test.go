//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/mirror"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// Fleet policy with real ocserv servers, clients, shippers, commanders and
// the ledger (docs/policy.md). One fleet of two servers for every case, in
// order; each case leaves the users it used allowed again.
func TestPolicyFleet(t *testing.T) {
	f := newPolicyFleet(t, 2, policyAcctInterval)
	a, b := f.beds[0], f.beds[1]

	// A quota of 4 MiB crossed by traffic on two servers: both sessions
	// end within one accounting interval + 5 s; the next login, by
	// password and with a cookie, is refused on both; a reset lets the
	// user back in.
	t.Run("QuotaAcrossServers", func(t *testing.T) {
		f.ctlOK("quota", "alice", "4MiB")
		cookie, err := a.Authenticate("alice", a.Password("alice"))
		if err != nil {
			t.Fatal(err)
		}
		ca, err := a.Connect("alice", a.Password("alice"), testbed.ConnectOptions{VPNCScript: true})
		if err != nil {
			t.Fatal(err)
		}
		cb, err := b.Connect("alice", b.Password("alice"), testbed.ConnectOptions{VPNCScript: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := ca.SendTraffic(3 << 20); err != nil {
			t.Fatal(err)
		}
		if err := cb.SendTraffic(2 << 20); err != nil {
			t.Fatal(err)
		}
		crossed := time.Now() // both servers counted it; the next accounting reading carries it
		bound := policyAcctInterval + 5*time.Second
		endA := gone(t, a, ca, "alice", bound+10*time.Second)
		endB := gone(t, b, cb, "alice", bound+10*time.Second)
		last := endA
		if endB.After(last) {
			last = endB
		}
		if d := last.Sub(crossed); d > bound {
			t.Errorf("the sessions ended %s after the traffic that crossed the quota; the promise is one accounting interval + 5 s (%s)", d, bound)
		} else {
			t.Logf("both sessions ended %s after the crossing traffic (bound %s)", d.Round(time.Millisecond), bound)
		}
		for _, bed := range []*testbed.Bed{a, b} {
			n := len(connects(bed, "alice"))
			if _, err := bed.Connect("alice", bed.Password("alice"), testbed.ConnectOptions{Timeout: 20 * time.Second}); err == nil {
				t.Fatalf("%s: a password login of a user over quota was admitted", bed.ServerID())
			}
			ev := refusedLogin(t, bed, "alice", n, "policy: ")
			if ev.Verdict == nil || ev.Verdict.Reason != policy.ReasonQuota || ev.Verdict.Mirror != mirror.StateFresh {
				t.Errorf("%s: the refused event's verdict %+v, want reason quota from a fresh mirror", bed.ServerID(), ev.Verdict)
			}
		}
		n := len(connects(a, "alice"))
		if _, err := a.ConnectCookie(cookie, 20*time.Second); err == nil {
			t.Fatal("a login with a cookie issued before the quota was crossed was admitted")
		}
		refusedLogin(t, a, "alice", n, "policy: ")

		out := f.ctlOK("usage", "--user", "alice")
		if !strings.Contains(out, "denied (quota)") || !strings.Contains(out, "QUOTA LEFT") {
			t.Errorf("ctl usage does not show the denial:\n%s", out)
		}
		f.ctlOK("quota", "reset", "alice")
		for _, bed := range []*testbed.Bed{a, b} {
			waitCond(t, "alice allowed in "+bed.ServerID()+"'s mirror", 30*time.Second, func() bool { return mirrorOf(bed, "alice").Verdict == nil })
			c, err := bed.Connect("alice", bed.Password("alice"))
			if err != nil {
				t.Fatalf("%s: login after the reset: %v", bed.ServerID(), err)
			}
			c.Disconnect()
		}
		f.ctlOK("quota", "alice", "none")
	})

	// An expiry that passes while the user is connected ends the session.
	t.Run("ExpiryWhileConnected", func(t *testing.T) {
		c, err := a.Connect("bob", a.Password("bob"))
		if err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(6 * time.Second).UTC().Truncate(time.Second)
		f.ctlOK("expire", "bob", at.Format(time.RFC3339))
		end := gone(t, a, c, "bob", 30*time.Second)
		if end.Before(at) {
			t.Errorf("bob's session ended at %s, before his expiry %s", end, at)
		}
		n := len(connects(a, "bob"))
		if _, err := a.Connect("bob", a.Password("bob"), testbed.ConnectOptions{Timeout: 20 * time.Second}); err == nil {
			t.Fatal("an expired account logged in")
		}
		ev := refusedLogin(t, a, "bob", n, "policy: ")
		if ev.Verdict == nil || ev.Verdict.Reason != policy.ReasonExpired {
			t.Errorf("verdict %+v, want expired", ev.Verdict)
		}
		f.ctlOK("expire", "bob", "none")
		waitCond(t, "bob allowed again", 30*time.Second, func() bool { return mirrorOf(a, "bob").Verdict == nil })
	})

	// Limit 1, newest wins: a login on B ends the session on A.
	t.Run("NewestWins", func(t *testing.T) {
		f.ctlOK("limit", "carol", "1", "--newest-wins")
		ca, err := a.Connect("carol", a.Password("carol"))
		if err != nil {
			t.Fatal(err)
		}
		cb, err := b.Connect("carol", b.Password("carol"))
		if err != nil {
			t.Fatalf("the newest login must be admitted: %v", err)
		}
		gone(t, a, ca, "carol", 20*time.Second)
		if cb.Exited() {
			t.Fatal("the newest session ended too")
		}
		us, _ := b.OcctlUsers()
		found := false
		for _, u := range us {
			found = found || u.Username == "carol"
		}
		if !found {
			t.Fatal("carol's newest session is not on B")
		}
		cb.Disconnect()
		f.ctlOK("limit", "carol", "none")
	})

	// Limit 1, refuse: with a session on A, a login on B is refused.
	t.Run("Refuse", func(t *testing.T) {
		f.ctlOK("limit", "alice", "1")
		ca, err := a.Connect("alice", a.Password("alice"))
		if err != nil {
			t.Fatal(err)
		}
		waitCond(t, "B's mirror to hold alice's session on A", 30*time.Second, func() bool {
			v := mirrorOf(b, "alice").Verdict
			return v != nil && v.RefusesSession(b.ServerID())
		})
		n := len(connects(b, "alice"))
		if _, err := b.Connect("alice", b.Password("alice"), testbed.ConnectOptions{Timeout: 20 * time.Second}); err == nil {
			t.Fatal("a second session past a limit of 1 was admitted")
		}
		ev := refusedLogin(t, b, "alice", n, policy.RefusalSessionLimit)
		if ev.Verdict == nil || ev.Verdict.Reason != "session_limit" {
			t.Errorf("verdict %+v", ev.Verdict)
		}
		if ca.Exited() {
			t.Error("the refused login ended the first session")
		}
		// The refused connect reaches the ledger as an event: a notice.
		waitCond(t, "the session-limit notice of the refusal", 30*time.Second, func() bool {
			return strings.Contains(f.ctlOK("policy", "notices", "--user", "alice", "--kind", "session_limit"), "a new login was refused")
		})
		ca.Disconnect()
		f.ctlOK("limit", "alice", "none")
	})

	// The ledger stops: the mirrors go stale. Admit (A): a denied user is
	// admitted and the event flagged; refuse (B): everyone is refused.
	// Back: fresh again.
	t.Run("StaleMirror", func(t *testing.T) {
		f.ctlOK("expire", "bob", "2020-01-01")
		waitCond(t, "bob denied in A's mirror", 30*time.Second, func() bool {
			v := mirrorOf(a, "bob").Verdict
			return v != nil && !v.Allowed
		})
		env, err := os.ReadFile(b.ConfigPath())
		if err != nil {
			t.Fatal(err)
		}
		write(t, b.ConfigPath(), string(env)+"POLICY_STALE=refuse\n", 0o600)
		f.ledger.stop(t)
		f.waitMirror(a, mirror.StateStale)
		c, err := a.Connect("bob", a.Password("bob"))
		if err != nil {
			t.Fatalf("stale mirror, admit mode: the login must go ahead: %v", err)
		}
		cs := connects(a, "bob")
		last := cs[len(cs)-1]
		if last.Verdict == nil || last.Verdict.Mirror != mirror.StateStale || last.Verdict.StaleMode != "admit" || !*last.Admitted {
			t.Errorf("admit mode event: %+v admitted %v", last.Verdict, *last.Admitted)
		}
		c.Disconnect()
		n := len(connects(b, "alice"))
		if _, err := b.Connect("alice", b.Password("alice"), testbed.ConnectOptions{Timeout: 20 * time.Second}); err == nil {
			t.Fatal("stale mirror, refuse mode: a login was admitted")
		}
		ev := refusedLogin(t, b, "alice", n, policy.RefusalStale)
		if ev.Verdict == nil || ev.Verdict.Mirror != mirror.StateStale || ev.Verdict.StaleMode != "refuse" {
			t.Errorf("refuse mode event: %+v", ev.Verdict)
		}
		st := f.ctlOK("status", "--all", "--json")
		var doc any
		json.Unmarshal([]byte(st), &doc)
		if n := countPolicyStates(doc, mirror.StateStale); n != 2 {
			t.Errorf("%d servers' status say the mirror is stale, want 2:\n%s", n, st)
		}
		f.startLedger()
		f.waitMirror(b, mirror.StateFresh)
		c, err = b.Connect("alice", b.Password("alice"))
		if err != nil {
			t.Fatalf("a fresh mirror again: %v", err)
		}
		c.Disconnect()
		f.ctlOK("expire", "bob", "none")
	})

	// Every command the ledger sent was audited by the servers, with its
	// key's policy role.
	t.Run("Audited", func(t *testing.T) {
		n := 0
		for _, e := range f.events.all() {
			if e.Type != events.Audit || e.Audit == nil {
				continue
			}
			var a struct {
				Action, Role, Phase string
				OK                  bool
			}
			json.Unmarshal(*e.Audit, &a)
			if a.Role == "policy" {
				n++
				if a.Action != "kick" && a.Action != "unkick" && a.Action != "disconnect" {
					t.Errorf("the policy key ran %s", a.Action)
				}
			}
		}
		if n == 0 {
			t.Fatal("no audit event of the policy key")
		}
	})
}

// countPolicyStates counts the "policy" objects in a status document whose
// state is state.
func countPolicyStates(v any, state string) int {
	n := 0
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if p, ok := c.(map[string]any); ok && k == "policy" && p["state"] == state {
				n++
				continue
			}
			n += countPolicyStates(c, state)
		}
	case []any:
		for _, c := range x {
			n += countPolicyStates(c, state)
		}
	}
	return n
}
