package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// where builds a conjunction of conditions with their arguments.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	w.conds = append(w.conds, cond)
	w.args = append(w.args, args...)
}

func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

func (s *Store) sessions(ctx context.Context, q string, args ...any) ([]ledger.Session, error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ledger.Session
	for rows.Next() {
		x, err := scanSession(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *x)
	}
	return out, rows.Err()
}

// History pages sessions newest connect first.
func (s *Store) History(ctx context.Context, q ledger.HistoryQuery) (ledger.Page[ledger.Session], error) {
	var page ledger.Page[ledger.Session]
	if err := q.Check(); err != nil {
		return page, err
	}
	var w where
	if q.User != "" {
		w.add("username = ?", q.User)
	}
	if q.Server != "" {
		w.add("server_id = ?", q.Server)
	}
	if q.IP != "" {
		w.add("(ip_real = ? OR vpn_ipv4 = ? OR vpn_ipv6 = ?)", q.IP, q.IP, q.IP)
	}
	if q.LogicalUID != "" {
		w.add("logical_uid = ?", ub(q.LogicalUID))
	}
	if !q.To.IsZero() {
		w.add("connected_at < ?", q.To.UnixMicro())
	}
	if !q.From.IsZero() {
		w.add("(ended_at IS NULL OR ended_at >= ?)", q.From.UnixMicro())
	}
	if q.OpenOnly {
		w.add("state = 'open'")
	}
	if q.Cursor != "" {
		c, err := ledger.DecodeCursor(q.Cursor)
		if err != nil {
			return page, err
		}
		w.add("(connected_at < ? OR connected_at = ? AND session_uid < ?)", c.Time.UnixMicro(), c.Time.UnixMicro(), ub(c.ID))
	}
	w.args = append(w.args, q.Limit+1)
	list, err := s.sessions(ctx, `SELECT `+sessionCols+sessionsFrom+w.String()+
		` ORDER BY connected_at DESC, session_uid DESC LIMIT ?`, w.args...)
	if err != nil {
		return page, wrap("sqlite ledger: history", err)
	}
	if len(list) > q.Limit {
		list = list[:q.Limit]
		last := list[len(list)-1]
		page.NextCursor = ledger.Cursor{Time: last.ConnectedAt, ID: last.UID}.Encode()
	}
	page.Items = list
	return page, nil
}

// Session is one session with its samples.
func (s *Store) Session(ctx context.Context, uid string) (ledger.Session, []ledger.Sample, error) {
	u, err := ledger.CheckUID("session", uid)
	if err != nil {
		return ledger.Session{}, nil, err
	}
	list, err := s.sessions(ctx, `SELECT `+sessionCols+sessionsFrom+` WHERE session_uid = ?`, ub(u))
	if err != nil {
		return ledger.Session{}, nil, wrap("sqlite ledger: session", err)
	}
	if len(list) == 0 {
		return ledger.Session{}, nil, ledger.Errorf(ledger.ECodeNotFound, "no session %s in the ledger", u)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT slot, server_id, observed_at, bytes_in, bytes_out, delta_in, delta_out, duration_s
		FROM samples WHERE session_uid = ? ORDER BY slot`, ub(u))
	if err != nil {
		return ledger.Session{}, nil, wrap("sqlite ledger: samples", err)
	}
	defer rows.Close()
	var samples []ledger.Sample
	for rows.Next() {
		x := ledger.Sample{SessionUID: u}
		var at int64
		if err := rows.Scan(&x.Slot, &x.ServerID, &at, &x.BytesIn, &x.BytesOut, &x.DeltaIn, &x.DeltaOut, &x.DurationS); err != nil {
			return ledger.Session{}, nil, wrap("sqlite ledger: samples", err)
		}
		x.ObservedAt = time.UnixMicro(at).UTC()
		samples = append(samples, x)
	}
	return list[0], samples, wrap("sqlite ledger: samples", rows.Err())
}

// whoIndex names the index of each address column (sessions_<name>).
var whoIndex = map[string]string{"vpn_ipv4": "vpn4", "vpn_ipv6": "vpn6", "ip_real": "real"}

// Who lists the sessions that held the VPN address, or came from the real
// address, at q.At: per address column, the WhoScan newest sessions that
// connected by then, of which those not ended before it, and past a full
// scan the older ones not ended before it.
func (s *Store) Who(ctx context.Context, q ledger.WhoQuery) ([]ledger.Session, error) {
	if err := q.Check(); err != nil {
		return nil, err
	}
	var cols []string
	if q.Kind != ledger.WhoReal {
		if strings.Contains(q.IP, ":") {
			cols = append(cols, "vpn_ipv6")
		} else {
			cols = append(cols, "vpn_ipv4")
		}
	}
	if q.Kind != ledger.WhoVPN {
		cols = append(cols, "ip_real")
	}
	start, end := ledger.WhoWindow(q.At)
	seen := map[string]bool{}
	var out []ledger.Session
	for _, col := range cols {
		// The bounded scan reads the address index alone (it carries
		// ended_at); only the sessions it keeps are fetched.
		list, err := s.sessions(ctx, `SELECT `+sessionCols+sessionsFrom+` WHERE sessions.rowid IN (
			SELECT rowid FROM (SELECT rowid, ended_at FROM sessions INDEXED BY sessions_`+whoIndex[col]+`
				WHERE `+col+` = ? AND connected_at <= ? ORDER BY connected_at DESC LIMIT ?)
			WHERE ended_at IS NULL OR ended_at >= ?)`, q.IP, start.UnixMicro(), ledger.WhoScan, end.UnixMicro())
		if err != nil {
			return nil, wrap("sqlite ledger: who", err)
		}
		// A full scan may have left out an older session still open at
		// the instant (later sessions of the address, all ended: a user
		// cycling connects, servers sharing a pool): look past its edge,
		// at the sessions not ended by then only. A scan that was not
		// full (the common case) costs one more read of the same index entries (at
		// most WhoScan of them), which the scan just brought into memory.
		var edge int64
		err = s.r.QueryRowContext(ctx, `SELECT connected_at FROM sessions INDEXED BY sessions_`+whoIndex[col]+`
			WHERE `+col+` = ? AND connected_at <= ? ORDER BY connected_at DESC LIMIT 1 OFFSET ?`,
			q.IP, start.UnixMicro(), ledger.WhoScan-1).Scan(&edge)
		switch {
		case err == nil:
			older, err := s.sessions(ctx, `SELECT `+sessionCols+sessionsFrom+` WHERE sessions.rowid IN (
				SELECT rowid FROM sessions INDEXED BY sessions_`+whoIndex[col]+`
					WHERE `+col+` = ? AND connected_at <= ? AND (ended_at IS NULL OR ended_at >= ?))`, q.IP, edge, end.UnixMicro())
			if err != nil {
				return nil, wrap("sqlite ledger: who", err)
			}
			list = append(list, older...)
		case !errors.Is(err, sql.ErrNoRows):
			return nil, wrap("sqlite ledger: who", err)
		}
		for _, x := range list {
			if !seen[x.UID] && ledger.HeldAt(&x, q.At) {
				seen[x.UID] = true
				out = append(out, x)
			}
		}
	}
	ledger.SortSessions(out)
	return out, nil
}

// Usage sums usage_daily.
func (s *Store) Usage(ctx context.Context, q ledger.UsageQuery) ([]ledger.UsageRow, error) {
	if err := q.Check(time.Now()); err != nil {
		return nil, err
	}
	if q.FromMonthly() {
		return s.usageMonthly(ctx, q)
	}
	period := "''"
	switch q.By {
	case ledger.ByDay:
		period = "day"
	case ledger.ByMonth:
		period = "substr(day, 1, 7)"
	}
	server := "''"
	if q.PerServer {
		server = "server_id"
	}
	var w where
	w.add("day >= ? AND day < ?", ledger.Day(q.From), ledger.Day(q.To))
	if q.User != "" {
		w.add("username = ?", q.User)
	}
	if q.Server != "" {
		w.add("server_id = ?", q.Server)
	}
	if q.Top > 0 {
		// The top users over the whole range, then their rows.
		inner := where{conds: append([]string(nil), w.conds...), args: append([]any(nil), w.args...)}
		w.add(`username IN (SELECT username FROM usage_daily`+inner.String()+
			` GROUP BY username ORDER BY sum(bytes_in + bytes_out) DESC, username LIMIT ?)`, append(inner.args, q.Top)...)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT username, `+period+`, `+server+`, sum(bytes_in), sum(bytes_out), sum(seconds), sum(sessions)
		FROM usage_daily`+w.String()+` GROUP BY 1, 2, 3`, w.args...)
	if err != nil {
		return nil, wrap("sqlite ledger: usage", err)
	}
	defer rows.Close()
	var out []ledger.UsageRow
	for rows.Next() {
		var r ledger.UsageRow
		if err := rows.Scan(&r.Username, &r.Period, &r.ServerID, &r.BytesIn, &r.BytesOut, &r.Seconds, &r.Sessions); err != nil {
			return nil, wrap("sqlite ledger: usage", err)
		}
		if q.By == ledger.ByRange {
			r.Period = q.Period("")
		}
		out = append(out, r)
		if err := q.Over(len(out)); err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("sqlite ledger: usage", err)
	}
	ledger.SortUsage(out)
	return out, nil
}

// usageMonthly answers whole months over every server from
// usage_monthly.
func (s *Store) usageMonthly(ctx context.Context, q ledger.UsageQuery) ([]ledger.UsageRow, error) {
	period := "''"
	if q.By == ledger.ByMonth {
		period = "month"
	}
	var w where
	w.add("month >= ? AND month < ?", ledger.Day(q.From)[:7], ledger.Day(q.To)[:7])
	if q.User != "" {
		w.add("username = ?", q.User)
	}
	if q.Top > 0 {
		inner := where{conds: append([]string(nil), w.conds...), args: append([]any(nil), w.args...)}
		w.add(`username IN (SELECT username FROM usage_monthly`+inner.String()+
			` GROUP BY username ORDER BY sum(bytes_in + bytes_out) DESC, username LIMIT ?)`, append(inner.args, q.Top)...)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT username, `+period+`, sum(bytes_in), sum(bytes_out), sum(seconds), sum(sessions)
		FROM usage_monthly`+w.String()+` GROUP BY 1, 2`, w.args...)
	if err != nil {
		return nil, wrap("sqlite ledger: usage", err)
	}
	defer rows.Close()
	var out []ledger.UsageRow
	for rows.Next() {
		var r ledger.UsageRow
		if err := rows.Scan(&r.Username, &r.Period, &r.BytesIn, &r.BytesOut, &r.Seconds, &r.Sessions); err != nil {
			return nil, wrap("sqlite ledger: usage", err)
		}
		if q.By == ledger.ByRange {
			r.Period = q.Period("")
		}
		out = append(out, r)
		if err := q.Over(len(out)); err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("sqlite ledger: usage", err)
	}
	ledger.SortUsage(out)
	return out, nil
}

// Audit pages audit entries newest first.
func (s *Store) Audit(ctx context.Context, q ledger.AuditQuery) (ledger.Page[ledger.AuditEntry], error) {
	var page ledger.Page[ledger.AuditEntry]
	if err := q.Check(); err != nil {
		return page, err
	}
	var w where
	if q.Server != "" {
		w.add("server_id = ?", q.Server)
	}
	if q.Action != "" {
		w.add("action = ?", q.Action)
	}
	if q.Key != "" {
		w.add("(key = ? OR key_name = ?)", q.Key, q.Key)
	}
	if q.Refused {
		w.add("ok = 0")
	}
	if q.User != "" {
		w.add("target_user = ?", q.User)
	}
	if q.Actor != "" {
		w.add("actor = ?", q.Actor)
	}
	if !q.From.IsZero() {
		w.add("time >= ?", q.From.UnixMicro())
	}
	if !q.To.IsZero() {
		w.add("time < ?", q.To.UnixMicro())
	}
	if q.Cursor != "" {
		c, err := ledger.DecodeCursor(q.Cursor)
		if err != nil {
			return page, err
		}
		w.add("(time < ? OR time = ? AND event_id < ?)", c.Time.UnixMicro(), c.Time.UnixMicro(), ub(c.ID))
	}
	w.args = append(w.args, q.Limit+1)
	rows, err := s.r.QueryContext(ctx, `SELECT `+auditCols+` FROM audit`+w.String()+` ORDER BY time DESC, event_id DESC LIMIT ?`, w.args...)
	if err != nil {
		return page, wrap("sqlite ledger: audit", err)
	}
	defer rows.Close()
	for rows.Next() {
		a, err := scanAudit(rows)
		if err != nil {
			return page, wrap("sqlite ledger: audit", err)
		}
		page.Items = append(page.Items, a)
	}
	if err := rows.Err(); err != nil {
		return page, wrap("sqlite ledger: audit", err)
	}
	if len(page.Items) > q.Limit {
		page.Items = page.Items[:q.Limit]
		last := page.Items[len(page.Items)-1]
		page.NextCursor = ledger.Cursor{Time: last.Time, ID: last.EventID}.Encode()
	}
	return page, nil
}

const auditCols = `event_id, server_id, time, phase, action, subject, key, key_name, role, ok, code, message, args, elapsed_ms, suppressed, actor`

func scanAudit(r scanner) (ledger.AuditEntry, error) {
	var a ledger.AuditEntry
	var id []byte
	var t int64
	var args string
	if err := r.Scan(&id, &a.ServerID, &t, &a.Phase, &a.Action, &a.Subject, &a.Key, &a.KeyName, &a.Role, &a.OK,
		&a.Code, &a.Message, &args, &a.ElapsedMS, &a.Suppressed, &a.Actor); err != nil {
		return a, err
	}
	a.EventID, a.Time = us2(id), time.UnixMicro(t).UTC()
	if args != "{}" && args != "" {
		json.Unmarshal([]byte(args), &a.Args)
	}
	return a, nil
}

// Servers lists every server seen, with its open sessions.
func (s *Store) Servers(ctx context.Context) ([]ledger.Server, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT server_id, spool_id, first_seen, last_seen, last_type, events, dropped_events,
		(SELECT count(*) FROM sessions WHERE sessions.server_id = servers.server_id AND state = 'open')
		FROM servers ORDER BY server_id`)
	if err != nil {
		return nil, wrap("sqlite ledger: servers", err)
	}
	defer rows.Close()
	var out []ledger.Server
	for rows.Next() {
		var v ledger.Server
		var fs, ls int64
		if err := rows.Scan(&v.ServerID, &v.SpoolID, &fs, &ls, &v.LastType, &v.Events, &v.DroppedEvents, &v.OpenSessions); err != nil {
			return nil, wrap("sqlite ledger: servers", err)
		}
		v.FirstSeen, v.LastSeen = time.UnixMicro(fs).UTC(), time.UnixMicro(ls).UTC()
		out = append(out, v)
	}
	return out, wrap("sqlite ledger: servers", rows.Err())
}

// Rejected lists the newest rejected events.
func (s *Store) Rejected(ctx context.Context, limit int) ([]ledger.Rejected, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT stream_seq, subject, event_id, reason, payload, received
		FROM rejected_events ORDER BY stream_seq DESC LIMIT ?`, max(1, limit))
	if err != nil {
		return nil, wrap("sqlite ledger: rejected", err)
	}
	defer rows.Close()
	var out []ledger.Rejected
	for rows.Next() {
		var r ledger.Rejected
		var seq, at int64
		if err := rows.Scan(&seq, &r.Subject, &r.EventID, &r.Reason, &r.Payload, &at); err != nil {
			return nil, wrap("sqlite ledger: rejected", err)
		}
		r.StreamSeq, r.Received = uint64(seq), time.UnixMicro(at).UTC()
		out = append(out, r)
	}
	return out, wrap("sqlite ledger: rejected", rows.Err())
}

// Notices lists the newest spool notices.
func (s *Store) Notices(ctx context.Context, limit int) ([]ledger.SpoolNotice, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT event_id, server_id, type, time, reason, events, bytes, seq_ranges
		FROM spool_notices ORDER BY time DESC, event_id DESC LIMIT ?`, max(1, limit))
	if err != nil {
		return nil, wrap("sqlite ledger: notices", err)
	}
	defer rows.Close()
	var out []ledger.SpoolNotice
	for rows.Next() {
		n, err := scanNotice(rows)
		if err != nil {
			return nil, wrap("sqlite ledger: notices", err)
		}
		out = append(out, n)
	}
	return out, wrap("sqlite ledger: notices", rows.Err())
}

func scanNotice(r scanner) (ledger.SpoolNotice, error) {
	var n ledger.SpoolNotice
	var id []byte
	var at int64
	var ranges string
	if err := r.Scan(&id, &n.ServerID, &n.Type, &at, &n.Reason, &n.Events, &n.Bytes, &ranges); err != nil {
		return n, err
	}
	n.EventID, n.Time = us2(id), time.UnixMicro(at).UTC()
	if ranges != "" {
		n.SeqRanges = json.RawMessage(ranges)
	}
	return n, nil
}
