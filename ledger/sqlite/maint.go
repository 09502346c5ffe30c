package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// pruneChunk bounds one delete, so the writer is never held for long.
const pruneChunk = 5000

// Prune deletes what the retention no longer keeps, chunk by chunk, each
// chunk its own short transaction.
func (s *Store) Prune(ctx context.Context, r ledger.Retention, now time.Time) (ledger.Pruned, error) {
	var p ledger.Pruned
	if r.Sessions <= 0 && r.Samples <= 0 {
		return p, nil
	}
	step := func(n *int64, q string, args ...any) error {
		for {
			res, err := s.w.ExecContext(ctx, q, append(args, pruneChunk)...)
			if err != nil {
				return wrap("sqlite ledger: prune", err)
			}
			k, _ := res.RowsAffected()
			*n += k
			if k < pruneChunk {
				return nil
			}
		}
	}
	if r.Samples > 0 {
		cut := now.Add(-r.Samples).UnixMicro()
		if err := step(&p.Samples, `DELETE FROM samples WHERE (session_uid, slot) IN
			(SELECT session_uid, slot FROM samples WHERE observed_at < ? LIMIT ?)`, cut); err != nil {
			return p, err
		}
	}
	if r.Sessions > 0 {
		cut := now.Add(-r.Sessions)
		c := cut.UnixMicro()
		for _, x := range []struct {
			n    *int64
			q    string
			args []any
		}{
			{&p.Sessions, `DELETE FROM sessions WHERE rowid IN (SELECT rowid FROM sessions WHERE ended_at < ? LIMIT ?)`, []any{c}},
			{new(int64), `DELETE FROM session_counters WHERE session_uid IN (SELECT k.session_uid FROM session_counters k
				WHERE NOT EXISTS (SELECT 1 FROM sessions x WHERE x.session_uid = k.session_uid) LIMIT ?)`, nil},
			{&p.Samples, `DELETE FROM samples WHERE (session_uid, slot) IN (SELECT s.session_uid, s.slot FROM samples s
				WHERE s.observed_at < ? AND NOT EXISTS (SELECT 1 FROM sessions x WHERE x.session_uid = s.session_uid) LIMIT ?)`, []any{c}},
			{&p.Applied, `DELETE FROM applied_events WHERE event_id IN (SELECT event_id FROM applied_events WHERE event_time < ? LIMIT ?)`, []any{c}},
			{&p.UsageDays, `DELETE FROM usage_daily WHERE (day, username, server_id) IN
				(SELECT day, username, server_id FROM usage_daily WHERE day < ? LIMIT ?)`, []any{ledger.Day(cut)}},
			// A month goes when all of it is older than the retention.
			{&p.UsageMonths, `DELETE FROM usage_monthly WHERE (month, username) IN
				(SELECT month, username FROM usage_monthly WHERE month < ? LIMIT ?)`, []any{ledger.Day(cut)[:7]}},
			{&p.Audit, `DELETE FROM audit WHERE rowid IN (SELECT rowid FROM audit WHERE time < ? LIMIT ?)`, []any{c}},
			{&p.Notices, `DELETE FROM spool_notices WHERE rowid IN (SELECT rowid FROM spool_notices WHERE time < ? LIMIT ?)`, []any{c}},
			{&p.Rejected, `DELETE FROM rejected_events WHERE stream_seq IN (SELECT stream_seq FROM rejected_events WHERE received < ? LIMIT ?)`, []any{c}},
			// Links whose sessions are gone, and that no joined event can
			// still need (their logical session is gone too).
			{new(int64), `DELETE FROM session_links WHERE session_uid IN (SELECT l.session_uid FROM session_links l
				WHERE NOT EXISTS (SELECT 1 FROM sessions x WHERE x.session_uid = l.session_uid OR x.logical_uid = l.logical_uid) LIMIT ?)`, nil},
		} {
			if err := step(x.n, x.q, x.args...); err != nil {
				return p, err
			}
		}
	}
	return p, nil
}

// Reset empties every table (replay --reset).
func (s *Store) Reset(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return wrap("sqlite ledger: reset", err)
	}
	defer tx.Rollback()
	for _, t := range ledger.Tables {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+t); err != nil {
			return wrap("sqlite ledger: reset "+t, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE ingest_state SET stream_seq = 0, stream_time = NULL, last_event_time = NULL,
		applied = 0, duplicates = 0, rejected = 0, expired = 0`); err != nil {
		return wrap("sqlite ledger: reset ingest_state", err)
	}
	return wrap("sqlite ledger: reset", tx.Commit())
}

// Checksum digests every table in primary-key order, through the domain
// types, so the digest is the same on every engine.
func (s *Store) Checksum(ctx context.Context) (map[string]string, error) {
	// One read transaction: every table from the same snapshot.
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, wrap("sqlite ledger: checksum", err)
	}
	defer tx.Rollback()
	out := map[string]string{}
	each := func(table, q string, row func(rows *sql.Rows, c *ledger.Checksummer) error) error {
		rows, err := tx.QueryContext(ctx, q)
		if err != nil {
			return wrap("sqlite ledger: checksum "+table, err)
		}
		defer rows.Close()
		c := ledger.NewChecksummer()
		for rows.Next() {
			if err := row(rows, c); err != nil {
				return wrap("sqlite ledger: checksum "+table, err)
			}
		}
		if err := rows.Err(); err != nil {
			return wrap("sqlite ledger: checksum "+table, err)
		}
		out[table] = c.Sum()
		return nil
	}
	// Rows are ordered in Go-comparable form: uuids as 16 bytes sort like
	// their text, so ORDER BY the blob is the uuid order on every engine.
	steps := []struct {
		table, q string
		row      func(*sql.Rows, *ledger.Checksummer) error
	}{
		{"sessions", `SELECT ` + sessionCols + sessionsFrom + ` ORDER BY session_uid`, func(r *sql.Rows, c *ledger.Checksummer) error {
			x, err := scanSession(r)
			if err == nil {
				c.Row(ledger.SessionRow(x)...)
			}
			return err
		}},
		{"session_links", `SELECT session_uid, logical_uid FROM session_links ORDER BY session_uid`, func(r *sql.Rows, c *ledger.Checksummer) error {
			var u, l []byte
			err := r.Scan(&u, &l)
			c.Row(us2(u), us2(l))
			return err
		}},
		{"samples", `SELECT session_uid, slot, server_id, observed_at, bytes_in, bytes_out, delta_in, delta_out, duration_s
			FROM samples ORDER BY session_uid, slot`, func(r *sql.Rows, c *ledger.Checksummer) error {
			var x ledger.Sample
			var u []byte
			var at int64
			err := r.Scan(&u, &x.Slot, &x.ServerID, &at, &x.BytesIn, &x.BytesOut, &x.DeltaIn, &x.DeltaOut, &x.DurationS)
			c.Row(us2(u), x.Slot, x.ServerID, time.UnixMicro(at), x.BytesIn, x.BytesOut, x.DeltaIn, x.DeltaOut, x.DurationS)
			return err
		}},
		{"usage_daily", `SELECT day, username, server_id, bytes_in, bytes_out, seconds, sessions FROM usage_daily
			ORDER BY day, username, server_id`, func(r *sql.Rows, c *ledger.Checksummer) error {
			var u ledger.UsageDelta
			err := r.Scan(&u.Day, &u.Username, &u.ServerID, &u.BytesIn, &u.BytesOut, &u.Seconds, &u.Sessions)
			c.Row(u.Day, u.Username, u.ServerID, u.BytesIn, u.BytesOut, u.Seconds, u.Sessions)
			return err
		}},
		{"usage_monthly", `SELECT month, username, bytes_in, bytes_out, seconds, sessions FROM usage_monthly
			ORDER BY month, username`, func(r *sql.Rows, c *ledger.Checksummer) error {
			var u ledger.UsageDelta
			err := r.Scan(&u.Day, &u.Username, &u.BytesIn, &u.BytesOut, &u.Seconds, &u.Sessions)
			c.Row(u.Day, u.Username, u.BytesIn, u.BytesOut, u.Seconds, u.Sessions)
			return err
		}},
		{"audit", `SELECT ` + auditCols + ` FROM audit ORDER BY event_id`, func(r *sql.Rows, c *ledger.Checksummer) error {
			a, err := scanAudit(r)
			c.Row(ledger.AuditRow(&a)...)
			return err
		}},
		{"spool_notices", `SELECT event_id, server_id, type, time, reason, events, bytes, seq_ranges FROM spool_notices ORDER BY event_id`,
			func(r *sql.Rows, c *ledger.Checksummer) error {
				n, err := scanNotice(r)
				c.Row(n.EventID, n.ServerID, n.Type, n.Time, n.Reason, n.Events, n.Bytes, string(n.SeqRanges))
				return err
			}},
		{"servers", `SELECT server_id, spool_id, first_seen, last_seen, last_type, events, dropped_events FROM servers ORDER BY server_id`,
			func(r *sql.Rows, c *ledger.Checksummer) error {
				var v ledger.Server
				var fs, ls int64
				err := r.Scan(&v.ServerID, &v.SpoolID, &fs, &ls, &v.LastType, &v.Events, &v.DroppedEvents)
				c.Row(v.ServerID, v.SpoolID, time.UnixMicro(fs), time.UnixMicro(ls), v.LastType, v.Events, v.DroppedEvents)
				return err
			}},
		{"applied_events", `SELECT event_id, stream_seq, event_time FROM applied_events ORDER BY event_id`, func(r *sql.Rows, c *ledger.Checksummer) error {
			var id []byte
			var seq, at int64
			err := r.Scan(&id, &seq, &at)
			c.Row(us2(id), seq, time.UnixMicro(at))
			return err
		}},
		{"rejected_events", `SELECT stream_seq, subject, event_id, reason, payload, received FROM rejected_events ORDER BY stream_seq`,
			func(r *sql.Rows, c *ledger.Checksummer) error {
				var x ledger.Rejected
				var seq, at int64
				err := r.Scan(&seq, &x.Subject, &x.EventID, &x.Reason, &x.Payload, &at)
				c.Row(seq, x.Subject, x.EventID, x.Reason, x.Payload, time.UnixMicro(at))
				return err
			}},
	}
	for _, st := range steps {
		if err := each(st.table, st.q, st.row); err != nil {
			return nil, err
		}
	}
	return out, nil
}
