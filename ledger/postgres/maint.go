package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

const pruneChunk = 5000

// Prune deletes what the retention no longer keeps, chunk by chunk.
func (s *Store) Prune(ctx context.Context, r ledger.Retention, now time.Time) (ledger.Pruned, error) {
	var p ledger.Pruned
	step := func(n *int64, q string, args ...any) error {
		for {
			tag, err := s.pool.Exec(ctx, q, append(args, pruneChunk)...)
			if err != nil {
				return wrap("postgres ledger: prune", err)
			}
			*n += tag.RowsAffected()
			if tag.RowsAffected() < pruneChunk {
				return nil
			}
		}
	}
	if r.Samples > 0 {
		if err := step(&p.Samples, `DELETE FROM samples WHERE (session_uid, slot) IN
			(SELECT session_uid, slot FROM samples WHERE observed_at < $1 LIMIT $2)`, now.Add(-r.Samples)); err != nil {
			return p, err
		}
	}
	if r.Sessions > 0 {
		cut := now.Add(-r.Sessions)
		for _, x := range []struct {
			n    *int64
			q    string
			args []any
		}{
			{&p.Sessions, `DELETE FROM sessions WHERE session_uid IN (SELECT session_uid FROM sessions WHERE ended_at < $1 LIMIT $2)`, []any{cut}},
			{new(int64), `DELETE FROM session_counters WHERE session_uid IN (SELECT k.session_uid FROM session_counters k
				WHERE NOT EXISTS (SELECT 1 FROM sessions x WHERE x.session_uid = k.session_uid) LIMIT $1)`, nil},
			{&p.Samples, `DELETE FROM samples WHERE (session_uid, slot) IN (SELECT s.session_uid, s.slot FROM samples s
				WHERE s.observed_at < $1 AND NOT EXISTS (SELECT 1 FROM sessions x WHERE x.session_uid = s.session_uid) LIMIT $2)`, []any{cut}},
			{&p.Applied, `DELETE FROM applied_events WHERE event_id IN (SELECT event_id FROM applied_events WHERE event_time < $1 LIMIT $2)`, []any{cut}},
			{&p.UsageDays, `DELETE FROM usage_daily WHERE (day, username, server_id) IN
				(SELECT day, username, server_id FROM usage_daily WHERE day < $1::date LIMIT $2)`, []any{ledger.Day(cut)}},
			// A month goes when all of it is older than the retention.
			{&p.UsageMonths, `DELETE FROM usage_monthly WHERE (month, username) IN
				(SELECT month, username FROM usage_monthly WHERE month < date_trunc('month', $1::date)::date LIMIT $2)`, []any{ledger.Day(cut)}},
			{&p.Audit, `DELETE FROM audit WHERE event_id IN (SELECT event_id FROM audit WHERE time < $1 LIMIT $2)`, []any{cut}},
			{&p.Notices, `DELETE FROM spool_notices WHERE event_id IN (SELECT event_id FROM spool_notices WHERE time < $1 LIMIT $2)`, []any{cut}},
			{&p.Rejected, `DELETE FROM rejected_events WHERE stream_seq IN (SELECT stream_seq FROM rejected_events WHERE received < $1 LIMIT $2)`, []any{cut}},
			{new(int64), `DELETE FROM session_links WHERE session_uid IN (SELECT l.session_uid FROM session_links l
				WHERE NOT EXISTS (SELECT 1 FROM sessions x WHERE x.session_uid = l.session_uid OR x.logical_uid = l.logical_uid) LIMIT $1)`, nil},
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
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return wrap("postgres ledger: reset", err)
	}
	defer tx.Rollback(ctx)
	for _, t := range ledger.Tables {
		if _, err := tx.Exec(ctx, `TRUNCATE `+t); err != nil {
			return wrap("postgres ledger: reset "+t, err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE ingest_state SET stream_seq = 0, stream_time = NULL, last_event_time = NULL,
		applied = 0, duplicates = 0, rejected = 0, expired = 0`); err != nil {
		return wrap("postgres ledger: reset ingest_state", err)
	}
	return wrap("postgres ledger: reset", tx.Commit(ctx))
}

// Checksum digests every table in primary-key order (text keys in the C
// collation, as SQLite compares them) through the domain types.
func (s *Store) Checksum(ctx context.Context) (map[string]string, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, wrap("postgres ledger: checksum", err)
	}
	defer tx.Rollback(ctx)
	out := map[string]string{}
	steps := []struct {
		table, q string
		row      func(pgx.Rows, *ledger.Checksummer) error
	}{
		{"sessions", `SELECT ` + selectSessionCols + sessionsFrom + ` ORDER BY session_uid`, func(r pgx.Rows, c *ledger.Checksummer) error {
			x, err := scanSession(r)
			if err == nil {
				c.Row(ledger.SessionRow(x)...)
			}
			return err
		}},
		{"session_links", `SELECT session_uid::text, logical_uid::text FROM session_links ORDER BY session_uid`, func(r pgx.Rows, c *ledger.Checksummer) error {
			var u, l string
			err := r.Scan(&u, &l)
			c.Row(u, l)
			return err
		}},
		{"samples", `SELECT session_uid::text, slot, server_id, observed_at, bytes_in, bytes_out, delta_in, delta_out, duration_s
			FROM samples ORDER BY session_uid, slot`, func(r pgx.Rows, c *ledger.Checksummer) error {
			var x ledger.Sample
			err := r.Scan(&x.SessionUID, &x.Slot, &x.ServerID, &x.ObservedAt, &x.BytesIn, &x.BytesOut, &x.DeltaIn, &x.DeltaOut, &x.DurationS)
			c.Row(x.SessionUID, x.Slot, x.ServerID, x.ObservedAt, x.BytesIn, x.BytesOut, x.DeltaIn, x.DeltaOut, x.DurationS)
			return err
		}},
		{"usage_daily", `SELECT to_char(day, 'YYYY-MM-DD'), username, server_id, bytes_in, bytes_out, seconds, sessions FROM usage_daily
			ORDER BY day, username COLLATE "C", server_id COLLATE "C"`, func(r pgx.Rows, c *ledger.Checksummer) error {
			var u ledger.UsageDelta
			err := r.Scan(&u.Day, &u.Username, &u.ServerID, &u.BytesIn, &u.BytesOut, &u.Seconds, &u.Sessions)
			c.Row(u.Day, u.Username, u.ServerID, u.BytesIn, u.BytesOut, u.Seconds, u.Sessions)
			return err
		}},
		{"usage_monthly", `SELECT to_char(month, 'YYYY-MM'), username, bytes_in, bytes_out, seconds, sessions FROM usage_monthly
			ORDER BY month, username COLLATE "C"`, func(r pgx.Rows, c *ledger.Checksummer) error {
			var u ledger.UsageDelta
			err := r.Scan(&u.Day, &u.Username, &u.BytesIn, &u.BytesOut, &u.Seconds, &u.Sessions)
			c.Row(u.Day, u.Username, u.BytesIn, u.BytesOut, u.Seconds, u.Sessions)
			return err
		}},
		{"audit", `SELECT ` + auditCols + ` FROM audit ORDER BY event_id`, func(r pgx.Rows, c *ledger.Checksummer) error {
			a, err := scanAudit(r)
			c.Row(ledger.AuditRow(&a)...)
			return err
		}},
		{"spool_notices", `SELECT event_id::text, server_id, type, time, reason, events, bytes, seq_ranges FROM spool_notices ORDER BY event_id`,
			func(r pgx.Rows, c *ledger.Checksummer) error {
				n, err := scanNotice(r)
				c.Row(n.EventID, n.ServerID, n.Type, n.Time, n.Reason, n.Events, n.Bytes, string(n.SeqRanges))
				return err
			}},
		{"servers", `SELECT server_id, spool_id, first_seen, last_seen, last_type, events, dropped_events FROM servers ORDER BY server_id COLLATE "C"`,
			func(r pgx.Rows, c *ledger.Checksummer) error {
				var v ledger.Server
				err := r.Scan(&v.ServerID, &v.SpoolID, &v.FirstSeen, &v.LastSeen, &v.LastType, &v.Events, &v.DroppedEvents)
				c.Row(v.ServerID, v.SpoolID, v.FirstSeen, v.LastSeen, v.LastType, v.Events, v.DroppedEvents)
				return err
			}},
		{"applied_events", `SELECT event_id::text, stream_seq, event_time FROM applied_events ORDER BY event_id`, func(r pgx.Rows, c *ledger.Checksummer) error {
			var id string
			var seq int64
			var at time.Time
			err := r.Scan(&id, &seq, &at)
			c.Row(id, seq, at)
			return err
		}},
		{"rejected_events", `SELECT stream_seq, subject, event_id, reason, payload, received FROM rejected_events ORDER BY stream_seq`,
			func(r pgx.Rows, c *ledger.Checksummer) error {
				var x ledger.Rejected
				var seq int64
				err := r.Scan(&seq, &x.Subject, &x.EventID, &x.Reason, &x.Payload, &x.Received)
				c.Row(seq, x.Subject, x.EventID, x.Reason, x.Payload, x.Received)
				return err
			}},
	}
	for _, st := range steps {
		rows, err := tx.Query(ctx, st.q)
		if err != nil {
			return nil, wrap("postgres ledger: checksum "+st.table, err)
		}
		c := ledger.NewChecksummer()
		for rows.Next() {
			if err := st.row(rows, c); err != nil {
				rows.Close()
				return nil, wrap("postgres ledger: checksum "+st.table, err)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, wrap("postgres ledger: checksum "+st.table, err)
		}
		out[st.table] = c.Sum()
	}
	return out, nil
}
