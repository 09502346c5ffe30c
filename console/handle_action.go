package console

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

// actionDef is an action the console offers: a command of the hosts'
// command service, asked for one user on one server.
type actionDef struct {
	Name, Verb, Explain string
	Reason, For         bool // takes a reason / a duration
}

var actions = map[string]actionDef{
	"disconnect": {Name: "disconnect", Verb: "Disconnect",
		Explain: "ends the user's sessions on this server now; the client may come back with its session cookie (use kick to keep it out)"},
	"kick": {Name: "kick", Verb: "Kick", Reason: true, For: true,
		Explain: "ends the user's sessions on this server and refuses every reconnect, cookie resumptions included, until unkicked (or for the time given)"},
	"unkick": {Name: "unkick", Verb: "Unkick",
		Explain: "lets the user log in on this server again"},
}

// actionArgs are an action's validated arguments.
type actionArgs struct {
	Def    actionDef
	Server string
	User   string
	Reason string
	For    string
	Return string
}

func readActionArgs(r *http.Request, get func(string) string) (actionArgs, string) {
	a := actionArgs{Return: localPath(get("return"))}
	def, ok := actions[r.PathValue("action")]
	if !ok {
		return a, "unknown action " + fmt.Sprintf("%q", short(r.PathValue("action"))) + " (disconnect, kick or unkick)"
	}
	a.Def = def
	a.Server, a.User = get("server"), get("user")
	if !events.IsToken(a.Server, 128) {
		return a, fmt.Sprintf("server: %q is not a server id", short(a.Server))
	}
	if _, err := cmdsvc.ValidName(a.User); err != nil {
		return a, fmt.Sprintf("user: %q %v", short(a.User), err)
	}
	if def.Reason {
		a.Reason = strings.TrimSpace(get("reason"))
		if len(a.Reason) > 200 || strings.ContainsAny(a.Reason, "\r\n\x00") {
			return a, "reason: one line of at most 200 characters"
		}
	}
	if def.For {
		a.For = strings.TrimSpace(get("for"))
		if a.For != "" {
			d, err := time.ParseDuration(a.For)
			if err != nil || d <= 0 || d > 366*24*time.Hour {
				return a, fmt.Sprintf("for: %q is not a duration like 30m or 24h (at most a year; empty: until unkicked)", short(a.For))
			}
		}
	}
	return a, ""
}

// handleConfirm shows what an action will do and asks for confirmation;
// the form posts to /actions/{action}. Viewers get a refusal.
func (s *Server) handleConfirm(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	if !c.Account.Role.CanAct() {
		s.fail(w, r, c, http.StatusForbidden, "Your account is a viewer: actions need an operator account.")
		return
	}
	a, bad := readActionArgs(r, r.URL.Query().Get)
	if bad != "" {
		s.fail(w, r, c, http.StatusBadRequest, "Bad action: "+bad+".")
		return
	}
	s.view(r, c, "confirm", a.Def.Verb+" "+a.User).set("A", a).render(w, http.StatusOK)
}

// handleAction runs a confirmed action: role, arguments, then the signed
// command for this web user; the outcome is audited by the console and by
// the host, and shown as a flash on the page the user came from.
func (s *Server) handleAction(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	a, bad := readActionArgs(r, r.PostFormValue)
	audit := cmdsvc.Audit{Action: a.Def.Name, Actor: c.Account.Name, Role: string(c.Account.Role),
		Args: map[string]string{"server": a.Server, "user": a.User, "remote": c.IP}}
	if a.Reason != "" {
		audit.Args["reason"] = a.Reason
	}
	if a.For != "" {
		audit.Args["for"] = a.For
	}
	if !c.Account.Role.CanAct() {
		audit.Phase, audit.Code, audit.Message = cmdsvc.PhaseRefused, "forbidden", "viewer accounts cannot act"
		if audit.Action == "" {
			audit.Action = short(r.PathValue("action"))
		}
		s.audit(audit)
		s.fail(w, r, c, http.StatusForbidden, "Your account is a viewer: actions need an operator account.")
		return
	}
	if bad != "" {
		s.fail(w, r, c, http.StatusBadRequest, "Bad action: "+bad+".")
		return
	}
	if s.o.Commands == nil {
		s.fail(w, r, c, http.StatusServiceUnavailable, "Actions are unavailable: the console has no key (LEDGER_CONSOLE_KEY).")
		return
	}
	args := map[string]string{"user": a.User}
	if a.Reason != "" {
		args["reason"] = a.Reason
	}
	if a.For != "" {
		args["for"] = a.For
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	start := s.o.Now()
	rep, err := s.o.Commands.DoAs(ctx, c.Account.Name, a.Server, a.Def.Name, args)
	audit.Phase, audit.Subject = cmdsvc.PhaseDone, cmdsvc.Subject(s.prefix(), a.Server, a.Def.Name)
	audit.ElapsedMS = s.o.Now().Sub(start).Milliseconds()
	var flash string
	switch {
	case err != nil:
		audit.Code, audit.Message = "unavailable", err.Error()
		flash = fmt.Sprintf("%s %s on %s failed: %v", a.Def.Verb, a.User, a.Server, err)
	case !rep.OK && rep.Error != nil:
		audit.Code, audit.Message = rep.Error.Code, rep.Error.Message
		flash = fmt.Sprintf("%s refused %s of %s: %s (%s)", a.Server, a.Def.Name, a.User, rep.Error.Message, rep.Error.Code)
	default:
		audit.OK = true
		flash = fmt.Sprintf("%s: %s done on %s.", a.User, a.Def.Name, a.Server)
	}
	s.audit(audit)
	s.o.Sessions.Flash(c.Session.ID, flash)
	http.Redirect(w, r, a.Return, http.StatusSeeOther)
}

func (s *Server) prefix() string {
	if s.o.Prefix == "" {
		return "ocserv"
	}
	return s.o.Prefix
}
