package cmdsvc

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/kick"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
)

// validArgs are arguments that pass each action's checks, so a refusal
// can only come from the role.
var validArgs = map[string]map[string]string{
	"user": {"user": "alice"}, "id": {"id": "9113"}, "session": {"sid": "abcdef"}, "kick": {"user": "alice"},
	"unkick": {"user": "alice"}, "disconnect": {"user": "alice"}, "terminate": {"user": "alice"}, "unban": {"ip": "192.0.2.7"},
}

// The ledger's policy key (role policy) may disconnect, kick and unkick,
// and nothing else: every other action the service offers, read-only ones
// included, is refused as forbidden before it runs, and audited.
func TestPolicyRoleOnlyEndsSessions(t *testing.T) {
	b := newBed(t)
	b.extra = append(UserActions(nil), ConfigActions(nil)...)
	b.start()
	c := b.client(b.pol)
	acts := b.svc.Actions()
	slices.Sort(acts)
	if len(acts) < 20 {
		t.Fatalf("only %d actions registered: the test must cover the user and config actions too", len(acts))
	}
	allowed := 0
	for _, a := range acts {
		if opauth.PolicyActions[a] {
			continue
		}
		before := len(b.argv())
		rep, err := c.Do(ctx(t), testServer, a, validArgs[a])
		wantCode(t, rep, err, opauth.CodeForbidden)
		if !strings.Contains(rep.Error.Message, "policy role") {
			t.Errorf("%s: refusal %q does not say why", a, rep.Error.Message)
		}
		if len(b.argv()) != before {
			t.Errorf("%s: occtl ran for a forbidden command: %v", a, b.argv()[before:])
		}
	}
	for _, a := range []string{"kick", "disconnect", "unkick"} {
		ok(t)(c.Do(ctx(t), testServer, a, validArgs[a]))
		allowed++
	}
	refused, done := 0, 0
	for _, e := range b.audits() {
		switch {
		case e.Audit.Role == string(opauth.Policy) && e.Audit.Phase == PhaseRefused && e.Audit.Code == opauth.CodeForbidden:
			refused++
		case e.Audit.Role == string(opauth.Policy) && e.Audit.Phase == PhaseDone && e.Audit.OK:
			done++
		}
	}
	if refused != len(acts)-3 || done != allowed {
		t.Errorf("audits: %d forbidden and %d done by the policy key, want %d and %d", refused, done, len(acts)-3, allowed)
	}
}

// A policy kick never replaces or lifts an operator's kick; the policy key
// lifts only its own; an operator's kick replaces a policy one.
func TestPolicyKickLeavesOperatorKicks(t *testing.T) {
	b := newBed(t)
	b.start()
	pol, op := b.client(b.pol), b.client(b.rw)
	dir := b.sp.Dir()

	ok(t)(op.Do(ctx(t), testServer, "kick", map[string]string{"user": "alice", "reason": "abuse ticket 7"}))
	rep := ok(t)(pol.Do(ctx(t), testServer, "kick", map[string]string{"user": "alice", "reason": "quota", "for": "5m"}))
	if !strings.Contains(string(rep.Result), `"kept_operator_kick":true`) {
		t.Errorf("policy kick over an operator's: %s", rep.Result)
	}
	e, _ := kick.Check(dir, "alice", time.Now())
	if e == nil || e.Source != "" || e.Reason != "abuse ticket 7" || e.Until != nil {
		t.Fatalf("the operator's kick changed: %+v", e)
	}
	rep = ok(t)(pol.Do(ctx(t), testServer, "unkick", map[string]string{"user": "alice"}))
	if e, _ := kick.Check(dir, "alice", time.Now()); e == nil || !strings.Contains(string(rep.Result), `"kept_operator_kick":true`) {
		t.Fatalf("the policy key lifted an operator's kick: %s", rep.Result)
	}
	ok(t)(op.Do(ctx(t), testServer, "unkick", map[string]string{"user": "alice"}))

	ok(t)(pol.Do(ctx(t), testServer, "kick", map[string]string{"user": "alice", "reason": "quota", "for": "5m"}))
	if e, _ := kick.Check(dir, "alice", time.Now()); e == nil || e.Source != kick.SourcePolicy || e.Until == nil {
		t.Fatalf("policy kick: %+v", e)
	}
	ok(t)(pol.Do(ctx(t), testServer, "unkick", map[string]string{"user": "alice"}))
	if e, _ := kick.Check(dir, "alice", time.Now()); e != nil {
		t.Fatalf("the policy key must lift its own kick: %+v", e)
	}
	// An operator's kick replaces a policy one.
	ok(t)(pol.Do(ctx(t), testServer, "kick", map[string]string{"user": "alice", "reason": "quota"}))
	ok(t)(op.Do(ctx(t), testServer, "kick", map[string]string{"user": "alice", "reason": "ticket 8"}))
	if e, _ := kick.Check(dir, "alice", time.Now()); e == nil || e.Source != "" || e.Reason != "ticket 8" {
		t.Fatalf("operator over policy: %+v", e)
	}
}

// disconnect id N if_user U runs only while worker N is still U's: worker
// IDs are PIDs, reused, and the ledger's view can be late.
func TestDisconnectIfUser(t *testing.T) {
	b := newBed(t)
	b.start()
	c := b.client(b.pol)
	rep, err := c.Do(ctx(t), testServer, "disconnect", map[string]string{"id": "9113", "if_user": "alice"})
	wantCode(t, rep, err, CodeNotFound)
	if slices.Contains(b.argv(), "disconnect id 9113") {
		t.Fatal("disconnected bob's worker on a guard for alice")
	}
	ok(t)(c.Do(ctx(t), testServer, "disconnect", map[string]string{"id": "9113", "if_user": "bob"}))
	if !slices.Contains(b.argv(), "disconnect id 9113") {
		t.Fatalf("argv %v: the guarded disconnect did not run", b.argv())
	}
	rep, err = c.Do(ctx(t), testServer, "disconnect", map[string]string{"id": "4242", "if_user": "bob"})
	wantCode(t, rep, err, CodeNotFound)
	rep, err = c.Do(ctx(t), testServer, "disconnect", map[string]string{"user": "bob", "if_user": "bob"})
	wantCode(t, rep, err, CodeInvalidArgument)
}
