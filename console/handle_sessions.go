package console

import (
	"net/http"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
)

// handleSessions lists the logged-in user's own console sessions.
func (s *Server) handleSessions(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	s.view(r, c, "sessions", "Your sessions").set("Sessions", s.o.Sessions.List(c.Account.Name)).
		set("Current", c.Session.ID).render(w, http.StatusOK)
}

// handleRevoke ends one of the user's own sessions (another browser).
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	id := r.PostFormValue("id")
	mine := false
	for _, x := range s.o.Sessions.List(c.Account.Name) {
		if x.ID == id {
			mine = true
		}
	}
	if !mine {
		s.fail(w, r, c, http.StatusNotFound, "No such session of yours.")
		return
	}
	s.o.Sessions.Delete(id)
	s.audit(cmdsvc.Audit{Phase: cmdsvc.PhaseDone, Action: AuditLogout, Actor: c.Account.Name, Role: string(c.Account.Role),
		OK: true, Message: "session revoked from another browser", Args: map[string]string{"remote": c.IP}})
	if id == c.Session.ID {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	s.o.Sessions.Flash(c.Session.ID, "Session ended.")
	http.Redirect(w, r, "/sessions", http.StatusSeeOther)
}
