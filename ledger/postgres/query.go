package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// where builds a conjunction with numbered placeholders: "?" in a
// condition becomes the next $n.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	for _, a := range args {
		w.args = append(w.args, a)
		cond = strings.Replace(cond, "?", fmt.Sprintf("$%d", len(w.args)), 1)
	}
	w.conds = append(w.conds, cond)
}

// arg adds an argument without a condition and returns its placeholder.
func (w *where) arg(a any) string {
	w.args = append(w.args, a)
	return fmt.Sprintf("$%d", len(w.args))
}

func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

func (s *Store) sessions(ctx context.Context, q string, args ...any) ([]ledger.Session, error) {
	rows, err := s.pool.Query(ctx, q, args...)
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
	query, args, err := historySQL(q)
	if err != nil {
		return page, err
	}
	list, err := s.sessions(ctx, query, args...)
	if err != nil {
		return page, wrap("postgres ledger: history", err)
	}
	if len(list) > q.Limit {
		list = list[:q.Limit]
		last := list[len(list)-1]
		page.NextCursor = ledger.Cursor{Time: last.ConnectedAt, ID: last.UID}.Encode()
	}
	page.Items = list
	return page, nil
}

// historySQL is the statement of a checked history question: a page and
// one row more, to know whether another page follows.
func historySQL(q ledger.HistoryQuery) (string, []any, error) {
	var w where
	if q.User != "" {
		w.add("username = ?", q.User)
	}
	if q.Server != "" {
		w.add("server_id = ?", q.Server)
	}
	if q.IP != "" {
		p := w.arg(q.IP)
		w.conds = append(w.conds, "(ip_real = "+p+" OR vpn_ipv4 = "+p+" OR vpn_ipv6 = "+p+")")
	}
	if q.LogicalUID != "" {
		w.add("logical_uid = ?::uuid", q.LogicalUID)
	}
	if !q.To.IsZero() {
		w.add("connected_at < ?", q.To)
	}
	if !q.From.IsZero() {
		w.add("(ended_at IS NULL OR ended_at >= ?)", q.From)
	}
	if q.OpenOnly {
		w.add("state = 'open'")
	}
	if q.Cursor != "" {
		c, err := ledger.DecodeCursor(q.Cursor)
		if err != nil {
			return "", nil, err
		}
		w.add("(connected_at, session_uid) < (?, ?::uuid)", c.Time, c.ID)
	}
	lim := w.arg(q.Limit + 1)
	// sessions.session_uid, not session_uid: a bare name in ORDER BY is
	// the output column first, and the output's session_uid is the uuid
	// as text. Ordered by the uuid itself (as the cursor compares it),
	// the user's, server's or connect index gives the whole order and the
	// scan stops at the page's end; ordered by the text, the index gave
	// only connected_at and an incremental sort (and a text collation the
	// cursor knew nothing of) decided the ties.
	return `SELECT ` + selectSessionCols + sessionsFrom + w.String() +
		` ORDER BY connected_at DESC, sessions.session_uid DESC LIMIT ` + lim, w.args, nil
}

// Session is one session with its samples.
func (s *Store) Session(ctx context.Context, uid string) (ledger.Session, []ledger.Sample, error) {
	u, err := ledger.CheckUID("session", uid)
	if err != nil {
		return ledger.Session{}, nil, err
	}
	list, err := s.sessions(ctx, `SELECT `+selectSessionCols+sessionsFrom+` WHERE session_uid = $1::uuid`, u)
	if err != nil {
		return ledger.Session{}, nil, wrap("postgres ledger: session", err)
	}
	if len(list) == 0 {
		return ledger.Session{}, nil, ledger.Errorf(ledger.ECodeNotFound, "no session %s in the ledger", u)
	}
	rows, err := s.pool.Query(ctx, `SELECT slot, server_id, observed_at, bytes_in, bytes_out, delta_in, delta_out, duration_s
		FROM samples WHERE session_uid = $1::uuid ORDER BY slot`, u)
	if err != nil {
		return ledger.Session{}, nil, wrap("postgres ledger: samples", err)
	}
	defer rows.Close()
	var samples []ledger.Sample
	for rows.Next() {
		x := ledger.Sample{SessionUID: u}
		if err := rows.Scan(&x.Slot, &x.ServerID, &x.ObservedAt, &x.BytesIn, &x.BytesOut, &x.DeltaIn, &x.DeltaOut, &x.DurationS); err != nil {
			return ledger.Session{}, nil, wrap("postgres ledger: samples", err)
		}
		x.ObservedAt = x.ObservedAt.UTC()
		samples = append(samples, x)
	}
	return list[0], samples, wrap("postgres ledger: samples", rows.Err())
}

// Who: see sqlite.Store.Who; the same bounded scan per address column,
// and past a full one the older sessions not ended by the instant.
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
		// ended_at and session_uid); only the sessions it keeps are
		// fetched.
		list, err := s.sessions(ctx, `SELECT `+selectSessionCols+sessionsFrom+` WHERE session_uid IN (
			SELECT session_uid FROM (SELECT session_uid, ended_at FROM sessions
				WHERE `+col+` = $1 AND connected_at <= $2 ORDER BY connected_at DESC LIMIT $3) c
			WHERE ended_at IS NULL OR ended_at >= $4)`, q.IP, start, ledger.WhoScan, end)
		if err != nil {
			return nil, wrap("postgres ledger: who", err)
		}
		// A full scan may have left out an older session still open at
		// the instant (later sessions of the address, all ended: a user
		// cycling connects, servers sharing a pool): look past its edge,
		// at the sessions not ended by then only. A scan that was not
		// full (the common case) costs one more read of the same index entries (at
		// most WhoScan of them), which the scan just brought into memory.
		var edge time.Time
		err = s.pool.QueryRow(ctx, `SELECT connected_at FROM sessions
			WHERE `+col+` = $1 AND connected_at <= $2 ORDER BY connected_at DESC LIMIT 1 OFFSET $3`,
			q.IP, start, ledger.WhoScan-1).Scan(&edge)
		switch {
		case err == nil:
			older, err := s.sessions(ctx, `SELECT `+selectSessionCols+sessionsFrom+` WHERE session_uid IN (
				SELECT session_uid FROM sessions
					WHERE `+col+` = $1 AND connected_at <= $2 AND (ended_at IS NULL OR ended_at >= $3))`, q.IP, edge, end)
			if err != nil {
				return nil, wrap("postgres ledger: who", err)
			}
			list = append(list, older...)
		case !errors.Is(err, pgx.ErrNoRows):
			return nil, wrap("postgres ledger: who", err)
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
		period = "to_char(day, 'YYYY-MM-DD')"
	case ledger.ByMonth:
		period = "to_char(day, 'YYYY-MM')"
	}
	server := "''"
	if q.PerServer {
		server = "server_id"
	}
	var w where
	w.add("day >= ?::date AND day < ?::date", ledger.Day(q.From), ledger.Day(q.To))
	if q.User != "" {
		w.add("username = ?", q.User)
	}
	if q.Server != "" {
		w.add("server_id = ?", q.Server)
	}
	if q.Top > 0 {
		inner := where{conds: append([]string(nil), w.conds...)}
		lim := w.arg(q.Top)
		w.conds = append(w.conds, `username IN (SELECT username FROM usage_daily`+inner.String()+
			` GROUP BY username ORDER BY sum(bytes_in + bytes_out) DESC, username COLLATE "C" LIMIT `+lim+`)`)
	}
	rows, err := s.pool.Query(ctx, `SELECT username, `+period+`, `+server+`, sum(bytes_in)::bigint, sum(bytes_out)::bigint,
		sum(seconds)::bigint, sum(sessions)::bigint FROM usage_daily`+w.String()+` GROUP BY 1, 2, 3`, w.args...)
	if err != nil {
		return nil, wrap("postgres ledger: usage", err)
	}
	defer rows.Close()
	var out []ledger.UsageRow
	for rows.Next() {
		var r ledger.UsageRow
		if err := rows.Scan(&r.Username, &r.Period, &r.ServerID, &r.BytesIn, &r.BytesOut, &r.Seconds, &r.Sessions); err != nil {
			return nil, wrap("postgres ledger: usage", err)
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
		return nil, wrap("postgres ledger: usage", err)
	}
	ledger.SortUsage(out)
	return out, nil
}

// usageMonthly answers whole months over every server from
// usage_monthly.
func (s *Store) usageMonthly(ctx context.Context, q ledger.UsageQuery) ([]ledger.UsageRow, error) {
	period := "''"
	if q.By == ledger.ByMonth {
		period = "to_char(month, 'YYYY-MM')"
	}
	var w where
	w.add("month >= ?::date AND month < ?::date", ledger.Day(q.From), ledger.Day(q.To))
	if q.User != "" {
		w.add("username = ?", q.User)
	}
	if q.Top > 0 {
		inner := where{conds: append([]string(nil), w.conds...)}
		lim := w.arg(q.Top)
		w.conds = append(w.conds, `username IN (SELECT username FROM usage_monthly`+inner.String()+
			` GROUP BY username ORDER BY sum(bytes_in + bytes_out) DESC, username COLLATE "C" LIMIT `+lim+`)`)
	}
	rows, err := s.pool.Query(ctx, `SELECT username, `+period+`, sum(bytes_in)::bigint, sum(bytes_out)::bigint,
		sum(seconds)::bigint, sum(sessions)::bigint FROM usage_monthly`+w.String()+` GROUP BY 1, 2`, w.args...)
	if err != nil {
		return nil, wrap("postgres ledger: usage", err)
	}
	defer rows.Close()
	var out []ledger.UsageRow
	for rows.Next() {
		var r ledger.UsageRow
		if err := rows.Scan(&r.Username, &r.Period, &r.BytesIn, &r.BytesOut, &r.Seconds, &r.Sessions); err != nil {
			return nil, wrap("postgres ledger: usage", err)
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
		return nil, wrap("postgres ledger: usage", err)
	}
	ledger.SortUsage(out)
	return out, nil
}

const auditCols = `event_id::text, server_id, time, phase, action, subject, key, key_name, role, ok, code, message, args::text, elapsed_ms, suppressed, actor`

func scanAudit(r pgx.Row) (ledger.AuditEntry, error) {
	var a ledger.AuditEntry
	var args string
	if err := r.Scan(&a.EventID, &a.ServerID, &a.Time, &a.Phase, &a.Action, &a.Subject, &a.Key, &a.KeyName, &a.Role, &a.OK,
		&a.Code, &a.Message, &args, &a.ElapsedMS, &a.Suppressed, &a.Actor); err != nil {
		return a, err
	}
	a.Time = a.Time.UTC()
	if args != "{}" && args != "" {
		json.Unmarshal([]byte(args), &a.Args)
	}
	return a, nil
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
		p := w.arg(q.Key)
		w.conds = append(w.conds, "(key = "+p+" OR key_name = "+p+")")
	}
	if q.Refused {
		w.add("NOT ok")
	}
	if q.User != "" {
		w.add("target_user = ?", q.User)
	}
	if q.Actor != "" {
		w.add("actor = ?", q.Actor)
	}
	if !q.From.IsZero() {
		w.add("time >= ?", q.From)
	}
	if !q.To.IsZero() {
		w.add("time < ?", q.To)
	}
	if q.Cursor != "" {
		c, err := ledger.DecodeCursor(q.Cursor)
		if err != nil {
			return page, err
		}
		w.add("(time, event_id) < (?, ?::uuid)", c.Time, c.ID)
	}
	lim := w.arg(q.Limit + 1)
	rows, err := s.pool.Query(ctx, `SELECT `+auditCols+` FROM audit`+w.String()+` ORDER BY time DESC, event_id DESC LIMIT `+lim, w.args...)
	if err != nil {
		return page, wrap("postgres ledger: audit", err)
	}
	defer rows.Close()
	for rows.Next() {
		a, err := scanAudit(rows)
		if err != nil {
			return page, wrap("postgres ledger: audit", err)
		}
		page.Items = append(page.Items, a)
	}
	if err := rows.Err(); err != nil {
		return page, wrap("postgres ledger: audit", err)
	}
	if len(page.Items) > q.Limit {
		page.Items = page.Items[:q.Limit]
		last := page.Items[len(page.Items)-1]
		page.NextCursor = ledger.Cursor{Time: last.Time, ID: last.EventID}.Encode()
	}
	return page, nil
}

// Servers lists every server seen, with its open sessions.
func (s *Store) Servers(ctx context.Context) ([]ledger.Server, error) {
	rows, err := s.pool.Query(ctx, `SELECT server_id, spool_id, first_seen, last_seen, last_type, events, dropped_events,
		(SELECT count(*) FROM sessions x WHERE x.server_id = s.server_id AND x.state = 'open')
		FROM servers s ORDER BY server_id COLLATE "C"`)
	if err != nil {
		return nil, wrap("postgres ledger: servers", err)
	}
	defer rows.Close()
	var out []ledger.Server
	for rows.Next() {
		var v ledger.Server
		if err := rows.Scan(&v.ServerID, &v.SpoolID, &v.FirstSeen, &v.LastSeen, &v.LastType, &v.Events, &v.DroppedEvents, &v.OpenSessions); err != nil {
			return nil, wrap("postgres ledger: servers", err)
		}
		v.FirstSeen, v.LastSeen = v.FirstSeen.UTC(), v.LastSeen.UTC()
		out = append(out, v)
	}
	return out, wrap("postgres ledger: servers", rows.Err())
}

// Rejected lists the newest rejected events.
func (s *Store) Rejected(ctx context.Context, limit int) ([]ledger.Rejected, error) {
	rows, err := s.pool.Query(ctx, `SELECT stream_seq, subject, event_id, reason, payload, received
		FROM rejected_events ORDER BY stream_seq DESC LIMIT $1`, max(1, limit))
	if err != nil {
		return nil, wrap("postgres ledger: rejected", err)
	}
	defer rows.Close()
	var out []ledger.Rejected
	for rows.Next() {
		var r ledger.Rejected
		var seq int64
		if err := rows.Scan(&seq, &r.Subject, &r.EventID, &r.Reason, &r.Payload, &r.Received); err != nil {
			return nil, wrap("postgres ledger: rejected", err)
		}
		r.StreamSeq, r.Received = uint64(seq), r.Received.UTC()
		out = append(out, r)
	}
	return out, wrap("postgres ledger: rejected", rows.Err())
}

// Notices lists the newest spool notices.
func (s *Store) Notices(ctx context.Context, limit int) ([]ledger.SpoolNotice, error) {
	rows, err := s.pool.Query(ctx, `SELECT event_id::text, server_id, type, time, reason, events, bytes, seq_ranges
		FROM spool_notices ORDER BY time DESC, event_id DESC LIMIT $1`, max(1, limit))
	if err != nil {
		return nil, wrap("postgres ledger: notices", err)
	}
	defer rows.Close()
	var out []ledger.SpoolNotice
	for rows.Next() {
		n, err := scanNotice(rows)
		if err != nil {
			return nil, wrap("postgres ledger: notices", err)
		}
		out = append(out, n)
	}
	return out, wrap("postgres ledger: notices", rows.Err())
}

func scanNotice(r pgx.Row) (ledger.SpoolNotice, error) {
	var n ledger.SpoolNotice
	var ranges string
	if err := r.Scan(&n.EventID, &n.ServerID, &n.Type, &n.Time, &n.Reason, &n.Events, &n.Bytes, &ranges); err != nil {
		return n, err
	}
	n.Time = n.Time.UTC()
	if ranges != "" {
		n.SeqRanges = json.RawMessage(ranges)
	}
	return n, nil
}
