package console

import (
	"net/http"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// handleSearch answers the two questions of the search page: who held an
// address at an instant (across the fleet), and sessions by filters. Bad
// input is shown on the page beside the form that was filled in.
func (s *Server) handleSearch(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	q := r.URL.Query()
	v := s.view(r, c, "search", "Search").set("Q", map[string]string{
		"ip": q.Get("ip"), "at": q.Get("at"), "kind": q.Get("kind"), "user": q.Get("user"), "server": q.Get("server"),
		"hip": q.Get("hip"), "from": q.Get("from"), "to": q.Get("to"), "open": q.Get("open"),
	})
	bad := func(msg string) {
		v.set("Error", msg).render(w, http.StatusBadRequest)
	}
	switch {
	case q.Has("who"):
		ip, err := textArg("ip", q.Get("ip"), 64)
		if err != nil {
			bad(err.Error())
			return
		}
		at, err := parseTime("at", q.Get("at"))
		if err != nil {
			bad(err.Error())
			return
		}
		kind := q.Get("kind")
		if kind == "" {
			kind = ledger.WhoAny
		}
		res, err := s.o.Ledger.Who(r.Context(), ledger.WhoQuery{IP: ip, At: at, Kind: kind})
		if err != nil {
			if ledger.ErrorCode(err) == ledger.ECodeInvalid {
				bad(err.Error())
				return
			}
			s.ledgerFail(w, r, c, err)
			return
		}
		v.set("Who", true).set("Results", res)
	case q.Has("history"):
		hq := ledger.HistoryQuery{Limit: 50}
		var err error
		if hq.User, err = textArg("user", q.Get("user"), 256); err != nil {
			bad(err.Error())
			return
		}
		if hq.Server, err = textArg("server", q.Get("server"), 256); err != nil {
			bad(err.Error())
			return
		}
		if hq.IP, err = textArg("ip", q.Get("hip"), 64); err != nil {
			bad(err.Error())
			return
		}
		if hq.From, err = parseTime("from", q.Get("from")); err != nil {
			bad(err.Error())
			return
		}
		if hq.To, err = parseTime("to", q.Get("to")); err != nil {
			bad(err.Error())
			return
		}
		hq.OpenOnly = q.Get("open") == "on"
		if hq.Cursor, err = textArg("cursor", q.Get("cursor"), 200); err != nil {
			bad(err.Error())
			return
		}
		page, err := s.o.Ledger.History(r.Context(), hq)
		if err != nil {
			if ledger.ErrorCode(err) == ledger.ECodeInvalid {
				bad(err.Error())
				return
			}
			s.ledgerFail(w, r, c, err)
			return
		}
		next := q
		next.Set("cursor", page.NextCursor)
		v.set("History", true).set("Results", page.Items).set("Next", page.NextCursor).set("NextQuery", "/search?"+next.Encode())
	}
	v.render(w, http.StatusOK)
}
