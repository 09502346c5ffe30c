package console

import (
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// chartDays is how many days of usage the user page charts.
const chartDays = 30

// usageChart is the chart's data, in uPlot's column form, handed to the
// page in a data-chart attribute (no inline script).
type usageChart struct {
	Days []int64 `json:"t"` // Unix seconds of each UTC day
	In   []int64 `json:"in"`
	Out  []int64 `json:"out"`
}

// handleUser shows one VPN user: sessions open now, history, usage per
// day (chart and totals), and the audit entries about them.
func (s *Server) handleUser(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	raw := r.PathValue("name")
	if r.URL.Path == "/user" {
		raw = r.URL.Query().Get("name")
	}
	name, err := textArg("user", raw, 256)
	if err != nil || name == "" {
		s.fail(w, r, c, http.StatusBadRequest, "Bad user name in the address.")
		return
	}
	ctx := r.Context()
	cursor, err := textArg("cursor", r.URL.Query().Get("cursor"), 200)
	if err != nil {
		s.fail(w, r, c, http.StatusBadRequest, "Bad input: "+err.Error()+".")
		return
	}
	hist, err := s.o.Ledger.History(ctx, ledger.HistoryQuery{User: name, Limit: 25, Cursor: cursor})
	if err != nil {
		s.ledgerFail(w, r, c, err)
		return
	}
	now := s.o.Now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	from := today.AddDate(0, 0, -(chartDays - 1))
	rows, err := s.o.Ledger.Usage(ctx, ledger.UsageQuery{From: from, To: today.AddDate(0, 0, 1), By: ledger.ByDay, User: name})
	if err != nil {
		s.ledgerFail(w, r, c, err)
		return
	}
	chart := usageChart{}
	byDay := map[string]ledger.UsageRow{}
	var total ledger.UsageRow
	for _, u := range rows {
		byDay[u.Period] = u
		total.BytesIn += u.BytesIn
		total.BytesOut += u.BytesOut
		total.Seconds += u.Seconds
		total.Sessions += u.Sessions
	}
	for d := from; !d.After(today); d = d.AddDate(0, 0, 1) {
		u := byDay[ledger.Day(d)]
		chart.Days = append(chart.Days, d.Unix())
		chart.In = append(chart.In, u.BytesIn)
		chart.Out = append(chart.Out, u.BytesOut)
	}
	chartJSON, _ := json.Marshal(chart)
	audit, err := s.o.Ledger.Audit(ctx, ledger.AuditQuery{User: name, Limit: 20})
	if err != nil {
		s.ledgerFail(w, r, c, err)
		return
	}
	open := s.o.Live.UserSessions(name)
	ids := map[string]bool{}
	for _, l := range s.o.Live.Servers() {
		ids[l.ServerID] = true
	}
	if l, err := s.ledgerServers(ctx); err == nil {
		for _, x := range l {
			ids[x.ServerID] = true
		}
	}
	delete(ids, s.o.Config.ServerID)
	serverIDs := make([]string, 0, len(ids))
	for id := range ids {
		serverIDs = append(serverIDs, id)
	}
	sort.Strings(serverIDs)
	var pv *policyView
	if s.o.Policies != nil {
		x, err := s.standing(ctx, name)
		if err != nil {
			s.ledgerFail(w, r, c, err)
			return
		}
		if x != nil {
			pv = newPolicyView(x, now)
		}
	}
	self := userPath(name)
	s.view(r, c, "user", name).set("Policy", pv).set("Name", name).set("History", hist.Items).
		set("Next", hist.NextCursor).set("NextQuery", withQuery(self, "cursor", hist.NextCursor)).
		set("Chart", string(chartJSON)).set("Total", total).set("Audit", audit.Items).set("ServerIDs", serverIDs).
		set("Body", map[string]any{"Rows": open, "CanAct": c.Account.Role.CanAct(), "Now": now, "Return": self}).
		render(w, http.StatusOK)
}
