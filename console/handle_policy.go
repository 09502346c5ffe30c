package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/api"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/engine"
)

// policyActionDef is a policy action the console offers on the user page:
// a request to the ledger's policy endpoints, for one user.
type policyActionDef struct {
	Name   string // in the console's paths
	Ledger string // the ledger's action (and the console's audit action)
}

var policyActions = map[string]policyActionDef{
	"reset":  {Name: "reset", Ledger: "policy-reset"},
	"extend": {Name: "extend", Ledger: "policy-set"},
}

// policyConfirm is what the confirmation page shows and its form posts.
type policyConfirm struct {
	Def    policyActionDef
	User   string
	Return string
	// reset
	Usage *usageView
	// extend
	Current, New         time.Time
	CurrentText, NewText string
	Expiry               *expiryView
}

const policiesOff = "Policies are off on this ledger (LEDGER_POLICY=off): there is nothing to show or change."

// handlePolicyConfirm shows what a quota reset or an expiry extension
// will do, computed from where the user stands now, and asks for
// confirmation; the form posts to /actions/policy/{action}.
func (s *Server) handlePolicyConfirm(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	if s.o.Policies == nil {
		s.fail(w, r, c, http.StatusNotFound, policiesOff)
		return
	}
	if !c.Account.Role.CanAct() {
		s.fail(w, r, c, http.StatusForbidden, "Your account is a viewer: actions need an operator account.")
		return
	}
	def, ok := policyActions[r.PathValue("action")]
	if !ok {
		s.fail(w, r, c, http.StatusNotFound, fmt.Sprintf("Unknown policy action %q (reset or extend).", short(r.PathValue("action"))))
		return
	}
	q := r.URL.Query()
	user := q.Get("user")
	if err := policy.ValidName(user); err != nil {
		s.fail(w, r, c, http.StatusBadRequest, fmt.Sprintf("Bad input: user: %q %v.", short(user), err))
		return
	}
	pc := policyConfirm{Def: def, User: user, Return: localPath(q.Get("return"))}
	if pc.Return == "/" {
		pc.Return = userPath(user)
	}
	x, err := s.standing(r.Context(), user)
	if err != nil {
		s.ledgerFail(w, r, c, err)
		return
	}
	if x == nil {
		s.fail(w, r, c, http.StatusNotFound, "No policy applies to "+user+" (none of their own, none for their group): there is nothing to reset or extend.")
		return
	}
	now := s.o.Now()
	pv := newPolicyView(x, now)
	switch def.Name {
	case "reset":
		kind := q.Get("kind")
		switch kind {
		case "", policy.KindQuota:
			pc.Usage = pv.Quota
			kind = policy.KindQuota
		case policy.KindTime:
			pc.Usage = pv.Time
		default:
			s.fail(w, r, c, http.StatusBadRequest, fmt.Sprintf("Bad input: kind: %q is not quota or time.", short(kind)))
			return
		}
		if pc.Usage == nil {
			s.fail(w, r, c, http.StatusBadRequest, fmt.Sprintf("%s has no %s limit to reset.", user, kindName(kind)))
			return
		}
		s.view(r, c, "policy-confirm", "Reset the "+kindName(kind)+" of "+user).set("P", pc).render(w, http.StatusOK)
	case "extend":
		if pv.Expiry == nil {
			s.fail(w, r, c, http.StatusBadRequest, user+" has no expiry to extend.")
			return
		}
		at, bad := extendExpiry(pv.Expiry.At, now, q.Get("days"), q.Get("until"))
		if bad != "" {
			s.fail(w, r, c, http.StatusBadRequest, "Bad extension: "+bad+".")
			return
		}
		pc.Expiry, pc.Current, pc.New = pv.Expiry, pv.Expiry.At, at
		pc.CurrentText, pc.NewText = expiryText(pv.Expiry.At), expiryText(at)
		s.view(r, c, "policy-confirm", "Extend the expiry of "+user).set("P", pc).render(w, http.StatusOK)
	}
}

func kindName(kind string) string {
	if kind == policy.KindTime {
		return "connected-time"
	}
	return kind
}

// handlePolicyAction runs a confirmed quota reset or expiry extension:
// role, arguments, then the request signed with the console's key for
// this web user to the ledger's policy endpoint (which checks the key's
// role itself); audited by the console with the ledger's answer, and
// recorded by the ledger as "<key> for <web user>".
func (s *Server) handlePolicyAction(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	def, known := policyActions[r.PathValue("action")]
	user := r.PostFormValue("user")
	audit := cmdsvc.Audit{Action: def.Ledger, Actor: c.Account.Name, Role: string(c.Account.Role),
		Args: map[string]string{"user": short(user), "remote": c.IP}}
	if !known {
		audit.Action = short(r.PathValue("action"))
	}
	if !c.Account.Role.CanAct() {
		audit.Phase, audit.Code, audit.Message = cmdsvc.PhaseRefused, "forbidden", "viewer accounts cannot act"
		s.audit(audit)
		s.fail(w, r, c, http.StatusForbidden, "Your account is a viewer: actions need an operator account.")
		return
	}
	if !known {
		s.fail(w, r, c, http.StatusNotFound, fmt.Sprintf("Unknown policy action %q (reset or extend).", short(r.PathValue("action"))))
		return
	}
	if s.o.Policies == nil {
		s.fail(w, r, c, http.StatusNotFound, policiesOff)
		return
	}
	if err := policy.ValidName(user); err != nil {
		s.fail(w, r, c, http.StatusBadRequest, fmt.Sprintf("Bad input: user: %q %v.", short(user), err))
		return
	}
	ret := localPath(r.PostFormValue("return"))
	args := map[string]string{"user": user}
	var flashDone func(res json.RawMessage) string
	switch def.Name {
	case "reset":
		kind := r.PostFormValue("kind")
		if kind != policy.KindQuota && kind != policy.KindTime {
			s.fail(w, r, c, http.StatusBadRequest, fmt.Sprintf("Bad input: kind: %q is not quota or time.", short(kind)))
			return
		}
		args["kind"], audit.Args["kind"] = kind, kind
		flashDone = func(res json.RawMessage) string {
			var rr api.ResetResult
			json.Unmarshal(res, &rr)
			return fmt.Sprintf("%s: %s count reset for this period. %s", user, kindName(kind), standingLine(rr.Standing))
		}
	case "extend":
		cur, err1 := time.Parse(time.RFC3339, r.PostFormValue("current"))
		at, err2 := time.Parse(time.RFC3339, r.PostFormValue("expire"))
		if err1 != nil || err2 != nil {
			s.fail(w, r, c, http.StatusBadRequest, "Bad input: current and expire must be RFC 3339 instants, as the confirmation page sends them.")
			return
		}
		now := s.o.Now()
		if !at.After(cur) || !at.After(now) || at.After(now.AddDate(0, 0, maxExtendDays+1)) {
			s.fail(w, r, c, http.StatusBadRequest, fmt.Sprintf("Bad extension: %s is not later than the current expiry (%s) and now, within %d days.",
				expiryText(at), expiryText(cur), maxExtendDays))
			return
		}
		// The expiry must still be what the operator saw: a second
		// extension confirmed on a stale page must not go through twice.
		x, err := s.standing(r.Context(), user)
		if err != nil {
			s.ledgerFail(w, r, c, err)
			return
		}
		if x == nil || x.Expiry == nil || x.Expiry.Off || !x.Expires.Equal(cur) {
			have := "none"
			if x != nil && !x.Expires.IsZero() {
				have = expiryText(x.Expires)
			}
			s.fail(w, r, c, http.StatusConflict, fmt.Sprintf("%s's expiry changed since the confirmation (it was %s, it is %s now): nothing was changed; look at the user page again.",
				user, expiryText(cur), have))
			return
		}
		delete(args, "user")
		args[policy.ArgScope], args[policy.ArgName] = string(policy.ScopeUser), user
		args[policy.ArgExpire] = at.UTC().Format(time.RFC3339)
		if x.Expiry.WarnDays != 0 {
			args[policy.ArgWarnDays] = fmt.Sprint(x.Expiry.WarnDays)
		}
		audit.Args["expire"], audit.Args["previous"] = args[policy.ArgExpire], cur.UTC().Format(time.RFC3339)
		flashDone = func(res json.RawMessage) string {
			var pr api.PolicyResult
			json.Unmarshal(res, &pr)
			return fmt.Sprintf("%s: expiry extended to %s. %s", user, expiryText(at), standingLine(pr.Standing))
		}
	}
	if s.o.LedgerActions == nil {
		s.fail(w, r, c, http.StatusServiceUnavailable, "Actions are unavailable: the console has no key (LEDGER_CONSOLE_KEY).")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	start := s.o.Now()
	rep, err := s.o.LedgerActions.DoAs(ctx, c.Account.Name, def.Ledger, args)
	audit.Phase, audit.Subject = cmdsvc.PhaseDone, api.Subject(s.prefix(), def.Ledger)
	audit.ElapsedMS = s.o.Now().Sub(start).Milliseconds()
	var flash string
	switch {
	case err != nil:
		audit.Code, audit.Message = "unavailable", err.Error()
		flash = fmt.Sprintf("%s of %s failed: %v", def.Ledger, user, err)
	case !rep.OK && rep.Error != nil:
		audit.Code, audit.Message = rep.Error.Code, rep.Error.Message
		flash = fmt.Sprintf("The ledger refused %s of %s: %s (%s)", def.Ledger, user, rep.Error.Message, rep.Error.Code)
	default:
		audit.OK = true
		flash = flashDone(rep.Result)
	}
	s.audit(audit)
	s.o.Sessions.Flash(c.Session.ID, flash)
	http.Redirect(w, r, ret, http.StatusSeeOther)
}

// standingLine sums up a user's standing after a change, for the flash.
func standingLine(x *engine.Standing) string {
	if x == nil {
		return "No policy applies to them now."
	}
	out := "Now allowed."
	if !x.Verdict.Allowed {
		out = "Still denied: " + x.Verdict.Message + "."
	}
	if q := x.QuotaUsage; q != nil {
		out += fmt.Sprintf(" Quota: %s of %s left.", humanBytes(q.Remaining), humanBytes(q.Limit))
	}
	return out
}

// policiesPageSize is how many policies the list shows at once.
const policiesPageSize = 50

// handlePolicies lists the fleet's policies (read-only), users' and
// groups', in (scope, name) order.
func (s *Server) handlePolicies(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	if s.o.Policies == nil {
		s.fail(w, r, c, http.StatusNotFound, policiesOff)
		return
	}
	q := r.URL.Query()
	scope := q.Get("scope")
	if scope != "" {
		if _, err := policy.ParseScope(scope); err != nil {
			s.fail(w, r, c, http.StatusBadRequest, "Bad input: "+err.Error()+".")
			return
		}
	}
	cursor, err := textArg("cursor", q.Get("cursor"), 512)
	if err != nil {
		s.fail(w, r, c, http.StatusBadRequest, "Bad input: "+err.Error()+".")
		return
	}
	page, err := s.o.Policies.Policies(r.Context(), ledger.PolicyQuery{Scope: policy.Scope(scope), Limit: policiesPageSize, Cursor: cursor})
	if err != nil {
		s.ledgerFail(w, r, c, err)
		return
	}
	type row struct {
		Scope, Name, By string
		Limits          []string
		At              time.Time
	}
	rows := make([]row, 0, len(page.Items))
	for _, p := range page.Items {
		rows = append(rows, row{Scope: string(p.Scope), Name: p.Name, By: p.UpdatedBy, Limits: describePolicy(p), At: p.UpdatedAt})
	}
	s.view(r, c, "policies", "Policies").set("Rows", rows).set("Scope", scope).set("Next", page.NextCursor).
		set("NextQuery", "/policies?"+url.Values{"scope": {scope}, "cursor": {page.NextCursor}}.Encode()).
		render(w, http.StatusOK)
}
