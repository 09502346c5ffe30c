package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"

	"github.com/google/uuid"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// Apply applies a batch in one immediate transaction (ledger.ApplyTx).
func (s *Store) Apply(ctx context.Context, msgs []ledger.Message) (ledger.BatchResult, error) {
	return s.ApplyChunks(ctx, ledger.OneChunk(msgs))
}

// ApplyChunks applies every chunk next yields in one immediate
// transaction (ledger.ApplyChunks).
func (s *Store) ApplyChunks(ctx context.Context, next ledger.Chunks) (ledger.BatchResult, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return ledger.BatchResult{}, wrap("sqlite ledger: begin", err)
	}
	defer tx.Rollback()
	// The statements run without ctx's cancellation: the driver watches a
	// cancellable context with a goroutine of its own for every statement
	// (interruptOnDone): about a sixth of BenchmarkApply's CPU per event,
	// at a few statements per event. The transaction still does: database/sql rolls it back
	// when ctx ends, and the next statement then fails.
	res, err := ledger.ApplyChunks(context.WithoutCancel(ctx), &ingestTx{tx: tx}, next, s.o.Apply)
	if err != nil {
		return res, wrap("sqlite ledger: apply", err)
	}
	if err := tx.Commit(); err != nil {
		return res, wrap("sqlite ledger: commit", err)
	}
	return res, nil
}

// Position is the committed ingest position.
func (s *Store) Position(ctx context.Context) (ledger.Position, error) {
	p, err := readPosition(ctx, s.r)
	return p, wrap("sqlite ledger: position", err)
}

type querier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

func readPosition(ctx context.Context, q querier) (ledger.Position, error) {
	var p ledger.Position
	var st, lt sql.NullInt64
	var seq int64
	err := q.QueryRowContext(ctx, `SELECT stream_seq, stream_time, last_event_time, applied, duplicates, rejected, expired
		FROM ingest_state WHERE id = 1`).Scan(&seq, &st, &lt, &p.Applied, &p.Duplicates, &p.Rejected, &p.Expired)
	p.StreamSeq, p.StreamTime, p.LastEventTime = uint64(seq), fromUS(st), fromUS(lt)
	return p, err
}

type ingestTx struct{ tx *sql.Tx }

func ub(s string) []byte {
	u := uuid.MustParse(s)
	return u[:]
}

func us2(b []byte) string {
	u, err := uuid.FromBytes(b)
	if err != nil {
		return ""
	}
	return u.String()
}

func (t *ingestTx) Claim(ctx context.Context, claims []ledger.Claim) ([]bool, error) {
	st, err := t.tx.PrepareContext(ctx, `INSERT INTO applied_events (event_id, stream_seq, event_time) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	out := make([]bool, len(claims))
	for i, c := range claims {
		r, err := st.ExecContext(ctx, ub(c.EventID), int64(c.StreamSeq), c.Time.UnixMicro())
		if err != nil {
			return nil, err
		}
		n, err := r.RowsAffected()
		if err != nil {
			return nil, err
		}
		out[i] = n == 1
	}
	return out, nil
}

// upsertSession writes a whole row; an update (not a replace, which
// would delete and re-insert every index entry) leaves the indexes whose
// columns did not change alone, as for most events (an accounting sample
// changes counters only).
var upsertSession, upsertCounters = upsert("sessions", identityCols), upsert("session_counters", "session_uid, "+counterCols)

func upsert(table, columns string) string {
	cols := strings.Split(strings.Join(strings.Fields(columns), ""), ",")
	var set []string
	for _, c := range cols[1:] {
		set = append(set, c+" = excluded."+c)
	}
	return `INSERT INTO ` + table + ` (` + columns + `) VALUES (` + strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",") +
		`) ON CONFLICT (session_uid) DO UPDATE SET ` + strings.Join(set, ", ")
}

// writeSessions writes the batch's session rows: the new ones whole (an
// upsert, so a row already there after all takes the conflict path), the
// stored ones by an update of the columns that changed only, one
// statement per set of columns. SQLite picks the indexes an UPDATE
// rewrites from its SET list, whatever the values: a disconnect that set
// every column would delete and re-insert the session in all the
// sessions indexes, where it changes the end columns' alone.
func (t *ingestTx) writeSessions(ctx context.Context, c *ledger.Changes) error {
	var whole []*ledger.Session
	byCols := map[ledger.ColumnSet][]*ledger.Session{}
	var sets []ledger.ColumnSet
	for _, s := range c.Sessions {
		d, stored := c.Changed[s.UID]
		if !stored || c.New[s.UID] {
			whole = append(whole, s)
			continue
		}
		if byCols[d] == nil {
			sets = append(sets, d)
		}
		byCols[d] = append(byCols[d], s)
	}
	if err := t.exec(ctx, upsertSession, len(whole),
		func(i int) []any { return identityArgs(whole[i]) }); err != nil {
		return err
	}
	for _, d := range sets {
		rows := byCols[d]
		var set []string
		for i, col := range ledger.IdentityColumns {
			if d.Has(i) {
				set = append(set, col+" = ?")
			}
		}
		q := `UPDATE sessions SET ` + strings.Join(set, ", ") + ` WHERE session_uid = ?`
		if err := t.exec(ctx, q, len(rows), func(i int) []any {
			all := identityArgs(rows[i])
			args := make([]any, 0, len(set)+1)
			for j := range ledger.IdentityColumns {
				if d.Has(j) {
					args = append(args, all[j+1])
				}
			}
			return append(args, all[0])
		}); err != nil {
			return err
		}
	}
	return nil
}

// identityCols are the sessions table's; counterCols session_counters'.
// After session_uid, they are ledger.IdentityColumns (TestIdentityColumns).
const identityCols = `session_uid, logical_uid, server_id, spool_id, username, groupname, vhost, worker_id, device,
	ip_real, ip_real_local, vpn_ipv4, vpn_ipv4_local, vpn_ipv6, vpn_ipv6_local, hostname, user_agent,
	device_type, device_platform, cookie_id, connected_at, connected_coarse, ended_at, ended_coarse,
	state, end_reason, origin`

const counterCols = `bytes_in, bytes_out, seconds, samples, last_sample_at, settled, acct_in, acct_out`

// sessionCols reads a whole session from sessionsFrom.
const sessionCols = identityCols + `, ` + counterCols

// sessionsFrom joins a session's row with its counters.
const sessionsFrom = ` FROM sessions JOIN session_counters USING (session_uid)`

type scanner interface{ Scan(dst ...any) error }

func scanSession(r scanner) (*ledger.Session, error) {
	var s ledger.Session
	var uid, logical []byte
	var ipr, iprl, v4, v4l, v6, v6l sql.NullString
	var conn, ended, lastSample sql.NullInt64
	err := r.Scan(&uid, &logical, &s.ServerID, &s.SpoolID, &s.Username, &s.Groupname, &s.VHost, &s.WorkerID, &s.Device,
		&ipr, &iprl, &v4, &v4l, &v6, &v6l, &s.Hostname, &s.UserAgent, &s.DeviceType, &s.DevicePlatform, &s.CookieID,
		&conn, &s.ConnectedCoarse, &ended, &s.EndedCoarse, &s.State, &s.EndReason, &s.Origin,
		&s.BytesIn, &s.BytesOut, &s.Seconds, &s.Samples, &lastSample, &s.Settled, &s.AcctIn, &s.AcctOut)
	if err != nil {
		return nil, err
	}
	s.UID, s.LogicalUID = us2(uid), us2(logical)
	s.IPReal, s.IPRealLocal, s.VPNIPv4, s.VPNIPv4Local, s.VPNIPv6, s.VPNIPv6Local = ipr.String, iprl.String, v4.String, v4l.String, v6.String, v6l.String
	s.ConnectedAt, s.EndedAt, s.LastSampleAt = fromUS(conn), fromUS(ended), fromUS(lastSample)
	return &s, nil
}

func identityArgs(s *ledger.Session) []any {
	return []any{ub(s.UID), ub(s.LogicalUID), s.ServerID, s.SpoolID, s.Username, s.Groupname, s.VHost, s.WorkerID, s.Device,
		nullStr(s.IPReal), nullStr(s.IPRealLocal), nullStr(s.VPNIPv4), nullStr(s.VPNIPv4Local), nullStr(s.VPNIPv6), nullStr(s.VPNIPv6Local),
		s.Hostname, s.UserAgent, s.DeviceType, s.DevicePlatform, s.CookieID,
		us(s.ConnectedAt), b2i(s.ConnectedCoarse), us(s.EndedAt), b2i(s.EndedCoarse), s.State, s.EndReason, s.Origin}
}

func counterArgs(s *ledger.Session) []any {
	return []any{ub(s.UID), s.BytesIn, s.BytesOut, s.Seconds, s.Samples, us(s.LastSampleAt), b2i(s.Settled), s.AcctIn, s.AcctOut}
}

// inChunks runs f over ids in groups small enough for SQLite's limit on
// bound parameters.
func inChunks(ids []string, f func(chunk []any, marks string) error) error {
	const n = 500
	for i := 0; i < len(ids); i += n {
		chunk := ids[i:min(i+n, len(ids))]
		args := make([]any, len(chunk))
		for j, id := range chunk {
			args[j] = ub(id)
		}
		if err := f(args, strings.TrimSuffix(strings.Repeat("?,", len(chunk)), ",")); err != nil {
			return err
		}
	}
	return nil
}

func (t *ingestTx) LoadSessions(ctx context.Context, uids []string) (map[string]*ledger.Session, error) {
	out := map[string]*ledger.Session{}
	err := inChunks(uids, func(args []any, marks string) error {
		rows, err := t.tx.QueryContext(ctx, `SELECT `+sessionCols+sessionsFrom+` WHERE session_uid IN (`+marks+`)`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			s, err := scanSession(rows)
			if err != nil {
				return err
			}
			out[s.UID] = s
		}
		return rows.Err()
	})
	return out, err
}

func (t *ingestTx) LoadLinks(ctx context.Context, uids []string) (map[string]string, error) {
	out := map[string]string{}
	err := inChunks(uids, func(args []any, marks string) error {
		rows, err := t.tx.QueryContext(ctx, `SELECT session_uid, logical_uid FROM session_links WHERE session_uid IN (`+marks+`)`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var u, l []byte
			if err := rows.Scan(&u, &l); err != nil {
				return err
			}
			out[us2(u)] = us2(l)
		}
		return rows.Err()
	})
	return out, err
}

func (t *ingestTx) Position(ctx context.Context) (ledger.Position, error) {
	return readPosition(ctx, t.tx)
}

// exec runs one prepared statement over n rows.
func (t *ingestTx) exec(ctx context.Context, q string, n int, args func(i int) []any) error {
	if n == 0 {
		return nil
	}
	st, err := t.tx.PrepareContext(ctx, q)
	if err != nil {
		return err
	}
	defer st.Close()
	for i := 0; i < n; i++ {
		if _, err := st.ExecContext(ctx, args(i)...); err != nil {
			return err
		}
	}
	return nil
}

func (t *ingestTx) Write(ctx context.Context, c *ledger.Changes) error {
	if err := t.writeSessions(ctx, c); err != nil {
		return err
	}
	if err := t.exec(ctx, upsertCounters, len(c.Counters),
		func(i int) []any { return counterArgs(c.Counters[i]) }); err != nil {
		return err
	}
	links := make([][2]string, 0, len(c.Links))
	for u, l := range c.Links {
		links = append(links, [2]string{u, l})
	}
	if err := t.exec(ctx, `INSERT INTO session_links (session_uid, logical_uid) VALUES (?, ?)
		ON CONFLICT (session_uid) DO UPDATE SET logical_uid = excluded.logical_uid`, len(links),
		func(i int) []any { return []any{ub(links[i][0]), ub(links[i][1])} }); err != nil {
		return err
	}
	if err := t.exec(ctx, `INSERT INTO samples (session_uid, slot, server_id, observed_at, bytes_in, bytes_out, delta_in, delta_out, duration_s)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`, len(c.Samples), func(i int) []any {
		x := c.Samples[i]
		return []any{ub(x.SessionUID), x.Slot, x.ServerID, x.ObservedAt.UnixMicro(), x.BytesIn, x.BytesOut, x.DeltaIn, x.DeltaOut, x.DurationS}
	}); err != nil {
		return err
	}
	if err := t.exec(ctx, `INSERT INTO usage_daily (day, username, server_id, bytes_in, bytes_out, seconds, sessions)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (day, username, server_id) DO UPDATE SET
		bytes_in = bytes_in + excluded.bytes_in, bytes_out = bytes_out + excluded.bytes_out,
		seconds = seconds + excluded.seconds, sessions = sessions + excluded.sessions`, len(c.Usage), func(i int) []any {
		u := c.Usage[i]
		return []any{u.Day, u.Username, u.ServerID, u.BytesIn, u.BytesOut, u.Seconds, u.Sessions}
	}); err != nil {
		return err
	}
	if err := t.exec(ctx, `INSERT INTO usage_monthly (month, username, bytes_in, bytes_out, seconds, sessions)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (month, username) DO UPDATE SET
		bytes_in = bytes_in + excluded.bytes_in, bytes_out = bytes_out + excluded.bytes_out,
		seconds = seconds + excluded.seconds, sessions = sessions + excluded.sessions`, len(c.Monthly), func(i int) []any {
		u := c.Monthly[i]
		return []any{u.Day, u.Username, u.BytesIn, u.BytesOut, u.Seconds, u.Sessions}
	}); err != nil {
		return err
	}
	if err := t.exec(ctx, `INSERT INTO audit (event_id, server_id, time, phase, action, subject, key, key_name, role, ok, code, message, args, elapsed_ms, suppressed, actor, target_user)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`, len(c.Audit), func(i int) []any {
		a := c.Audit[i]
		return []any{ub(a.EventID), a.ServerID, a.Time.UnixMicro(), a.Phase, a.Action, a.Subject, a.Key, a.KeyName, a.Role,
			b2i(a.OK), a.Code, a.Message, argsJSON(a.Args), a.ElapsedMS, a.Suppressed, a.Actor, a.Args["user"]}
	}); err != nil {
		return err
	}
	if err := t.exec(ctx, `INSERT INTO spool_notices (event_id, server_id, type, time, reason, events, bytes, seq_ranges)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`, len(c.Notices), func(i int) []any {
		n := c.Notices[i]
		return []any{ub(n.EventID), n.ServerID, n.Type, n.Time.UnixMicro(), n.Reason, n.Events, n.Bytes, string(n.SeqRanges)}
	}); err != nil {
		return err
	}
	if err := t.exec(ctx, `INSERT INTO servers (server_id, spool_id, first_seen, last_seen, last_type, events, dropped_events)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (server_id) DO UPDATE SET
		first_seen = min(first_seen, excluded.first_seen),
		spool_id = CASE WHEN excluded.last_seen >= last_seen THEN excluded.spool_id ELSE spool_id END,
		last_type = CASE WHEN excluded.last_seen >= last_seen THEN excluded.last_type ELSE last_type END,
		last_seen = max(last_seen, excluded.last_seen),
		events = events + excluded.events, dropped_events = dropped_events + excluded.dropped_events`, len(c.Servers), func(i int) []any {
		v := c.Servers[i]
		return []any{v.ServerID, v.SpoolID, v.FirstSeen.UnixMicro(), v.LastSeen.UnixMicro(), v.LastType, v.Events, v.Dropped}
	}); err != nil {
		return err
	}
	if err := t.exec(ctx, `INSERT INTO rejected_events (stream_seq, subject, event_id, reason, payload, received)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`, len(c.Rejected), func(i int) []any {
		r := c.Rejected[i]
		return []any{int64(r.StreamSeq), r.Subject, r.EventID, r.Reason, r.Payload, r.Received.UnixMicro()}
	}); err != nil {
		return err
	}
	p := c.Position
	_, err := t.tx.ExecContext(ctx, `UPDATE ingest_state SET stream_seq = ?, stream_time = ?, last_event_time = ?,
		applied = ?, duplicates = ?, rejected = ?, expired = ? WHERE id = 1`,
		int64(p.StreamSeq), us(p.StreamTime), us(p.LastEventTime), p.Applied, p.Duplicates, p.Rejected, p.Expired)
	return err
}

func argsJSON(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// Reject records one message as rejected (ledger.RejectTx).
func (s *Store) Reject(ctx context.Context, m ledger.Message, reason string) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return wrap("sqlite ledger: begin", err)
	}
	defer tx.Rollback()
	if err := ledger.RejectTx(ctx, &ingestTx{tx: tx}, m, reason); err != nil {
		return wrap("sqlite ledger: reject", err)
	}
	return wrap("sqlite ledger: commit", tx.Commit())
}
