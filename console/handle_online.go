package console

import (
	"net/http"
	"strings"
)

// onlineFilter narrows the online list: user and ip match a part,
// server and group match exactly.
type onlineFilter struct {
	User, Server, Group, IP string
}

func readOnlineFilter(r *http.Request) (onlineFilter, string) {
	q := r.URL.Query()
	f := onlineFilter{User: strings.TrimSpace(q.Get("user")), Server: strings.TrimSpace(q.Get("server")),
		Group: strings.TrimSpace(q.Get("group")), IP: strings.TrimSpace(q.Get("ip"))}
	for name, v := range map[string]string{"user": f.User, "server": f.Server, "group": f.Group, "ip": f.IP} {
		if len(v) > 128 {
			return f, name + ": longer than 128 characters"
		}
	}
	return f, ""
}

func (f onlineFilter) match(o OnlineSession) bool {
	if f.User != "" && !strings.Contains(strings.ToLower(o.Username), strings.ToLower(f.User)) {
		return false
	}
	if f.Server != "" && o.ServerID != f.Server {
		return false
	}
	if f.Group != "" && o.Groupname != f.Group {
		return false
	}
	if f.IP != "" && !strings.Contains(o.RealIP, f.IP) && !strings.Contains(o.VPNIPv4, f.IP) && !strings.Contains(o.VPNIPv6, f.IP) {
		return false
	}
	return true
}

// onlineData builds the online list's body (also sent on the live stream).
func (s *Server) onlineData(f onlineFilter, canAct bool, csrf string) map[string]any {
	var rows []OnlineSession
	servers := map[string]bool{}
	total := 0
	for _, l := range s.o.Live.Servers() {
		if l.ServerID == s.o.Config.ServerID {
			continue
		}
		servers[l.ServerID] = true
		for _, o := range l.Sessions {
			total++
			if f.match(o) {
				rows = append(rows, o)
			}
		}
	}
	return map[string]any{"Rows": rows, "Total": total, "Shown": len(rows), "Filter": f, "CanAct": canAct,
		"CSRF": csrf, "Now": s.o.Now().UTC(), "Servers": len(servers), "LiveProblem": s.o.Live.Problem(),
		"Return": "/online"}
}

func (s *Server) handleOnline(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	f, bad := readOnlineFilter(r)
	if bad != "" {
		s.fail(w, r, c, http.StatusBadRequest, "Bad filter: "+bad+".")
		return
	}
	d := s.onlineData(f, c.Account.Role.CanAct(), c.Session.CSRF)
	s.view(r, c, "online", "Online now").set("Body", d).set("Filter", f).render(w, http.StatusOK)
}
