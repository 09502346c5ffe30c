package console

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// serverRow is one server on the overview: what the live state knows
// and what the ledger knows, either of which may be missing.
type serverRow struct {
	ID       string
	Live     *ServerLive
	Ledger   *ledger.Server
	State    string
	Class    string // ok, warn, bad
	Online   int
	Users    int
	LastSeen time.Time
	Stale    bool
	Clones   []string
}

// overviewData builds the overview's body (also sent on the live stream).
func (s *Server) overviewData(ctx context.Context) (map[string]any, error) {
	now := s.o.Now()
	rows := map[string]*serverRow{}
	row := func(id string) *serverRow {
		if r, ok := rows[id]; ok {
			return r
		}
		r := &serverRow{ID: id}
		rows[id] = r
		return r
	}
	lsrv, err := s.ledgerServers(ctx)
	if err != nil {
		return nil, err
	}
	for i := range lsrv {
		if lsrv[i].ServerID == s.o.Config.ServerID {
			continue // the console's own audit events
		}
		r := row(lsrv[i].ServerID)
		r.Ledger = &lsrv[i]
		r.LastSeen = lsrv[i].LastSeen
	}
	totalOnline := 0
	for _, l := range s.o.Live.Servers() {
		if l.ServerID == s.o.Config.ServerID {
			continue
		}
		l := l
		r := row(l.ServerID)
		r.Live = &l
		if l.LastSeen.After(r.LastSeen) {
			r.LastSeen = l.LastSeen
		}
		r.Online, r.Users = len(l.Sessions), l.Users
		r.Clones = l.Clones
		totalOnline += r.Online
	}
	var list, stale, clones []*serverRow
	for _, r := range rows {
		r.Stale = now.Sub(r.LastSeen) > s.o.Config.StaleAfter
		switch {
		case r.Live == nil || r.Live.Status == nil:
			r.State, r.Class = "no live state", "warn"
		case !r.Live.Status.Online:
			r.State, r.Class = "ocserv down: "+r.Live.Status.Status, "bad"
			if r.Live.Status.Error != "" {
				r.State += " (" + r.Live.Status.Error + ")"
			}
		default:
			r.State, r.Class = "up", "ok"
		}
		if r.Stale {
			r.Class = "bad"
			stale = append(stale, r)
		}
		if len(r.Clones) > 0 {
			r.Class = "bad"
			clones = append(clones, r)
		}
		list = append(list, r)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	sort.Slice(stale, func(i, j int) bool { return stale[i].LastSeen.Before(stale[j].LastSeen) })
	sort.Slice(clones, func(i, j int) bool { return clones[i].ID < clones[j].ID })
	return map[string]any{
		"Servers": list, "Stale": stale, "Clones": clones, "TotalOnline": totalOnline,
		"TotalUsers": s.o.Live.OnlineUsers(), "Now": now.UTC(), "StaleAfter": s.o.Config.StaleAfter,
		"LiveProblem": s.o.Live.Problem(),
	}, nil
}

// ledgerServers caches the ledger's server list for a few seconds: the
// live stream re-renders the overview at every change, and the list
// changes slowly.
func (s *Server) ledgerServers(ctx context.Context) ([]ledger.Server, error) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if s.o.Now().Sub(s.serversAt) < serversTTL && s.servers != nil {
		return s.servers, nil
	}
	l, err := s.o.Ledger.Servers(ctx)
	if err != nil {
		return nil, err
	}
	s.servers, s.serversAt = l, s.o.Now()
	return l, nil
}

const serversTTL = 5 * time.Second

func (s *Server) handleOverview(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	d, err := s.overviewData(r.Context())
	if err != nil {
		s.ledgerFail(w, r, c, err)
		return
	}
	v := s.view(r, c, "overview", "Fleet overview")
	for k, x := range d {
		v.set(k, x)
	}
	v.set("Body", d).render(w, http.StatusOK)
}
