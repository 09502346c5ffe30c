package console

import (
	"net/http"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// handleAudit lists the audit log (every host's commands and the
// console's logins and actions), newest first, with filters.
func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	q := r.URL.Query()
	aq := ledger.AuditQuery{Limit: 50}
	v := s.view(r, c, "audit", "Audit log").set("Q", map[string]string{
		"server": q.Get("server"), "action": q.Get("action"), "key": q.Get("key"), "user": q.Get("user"),
		"actor": q.Get("actor"), "refused": q.Get("refused"), "from": q.Get("from"), "to": q.Get("to"),
	})
	var err error
	for _, f := range []struct {
		name string
		dst  *string
	}{{"server", &aq.Server}, {"action", &aq.Action}, {"key", &aq.Key}, {"user", &aq.User}, {"actor", &aq.Actor}, {"cursor", &aq.Cursor}} {
		if *f.dst, err = textArg(f.name, q.Get(f.name), 256); err != nil {
			v.set("Error", err.Error()).render(w, http.StatusBadRequest)
			return
		}
	}
	aq.Refused = q.Get("refused") == "on"
	if aq.From, err = parseTime("from", q.Get("from")); err == nil {
		aq.To, err = parseTime("to", q.Get("to"))
	}
	if err != nil {
		v.set("Error", err.Error()).render(w, http.StatusBadRequest)
		return
	}
	page, err := s.o.Ledger.Audit(r.Context(), aq)
	if err != nil {
		if ledger.ErrorCode(err) == ledger.ECodeInvalid {
			v.set("Error", err.Error()).render(w, http.StatusBadRequest)
			return
		}
		s.ledgerFail(w, r, c, err)
		return
	}
	next := q
	next.Set("cursor", page.NextCursor)
	v.set("Entries", page.Items).set("Next", page.NextCursor).set("NextQuery", "/audit?"+next.Encode()).render(w, http.StatusOK)
}
