package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// Apply applies a batch in one transaction (ledger.ApplyTx).
func (s *Store) Apply(ctx context.Context, msgs []ledger.Message) (ledger.BatchResult, error) {
	return s.ApplyChunks(ctx, ledger.OneChunk(msgs))
}

// ApplyChunks applies every chunk next yields in one transaction
// (ledger.ApplyChunks).
func (s *Store) ApplyChunks(ctx context.Context, next ledger.Chunks) (ledger.BatchResult, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return ledger.BatchResult{}, wrap("postgres ledger: begin", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	res, err := ledger.ApplyChunks(ctx, &ingestTx{tx: tx}, next, s.o.Apply)
	if err != nil {
		return res, wrap("postgres ledger: apply", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return res, wrap("postgres ledger: commit", err)
	}
	return res, nil
}

// ApplyChunksAfter applies every chunk next yields in a transaction
// built while prev is written and commits (ledger.PipelinedIngest), on a
// connection of its own. Its rows are written once prev's are: prev then
// holds every row lock it will take and only commits, so this
// transaction may wait for prev (a row both write) and prev never waits
// for this one.
func (s *Store) ApplyChunksAfter(ctx context.Context, prev *ledger.Pending, next ledger.Chunks) (*ledger.Pending, error) {
	prev.WaitBefore()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, wrap("postgres ledger: begin", err)
	}
	rollback := func() { tx.Rollback(context.WithoutCancel(ctx)) }
	it := &ingestTx{tx: tx}
	pr, err := ledger.ApplyChunksAfter(ctx, it, next, s.o.Apply, prev.Carried())
	if err != nil {
		rollback()
		return nil, wrap("postgres ledger: apply", err)
	}
	write := func() error {
		if s.beforeWrite != nil {
			s.beforeWrite(tx)
		}
		if pr.Changes == nil {
			return nil
		}
		if err := it.Write(ctx, pr.Changes); err != nil {
			return wrap("postgres ledger: apply", fmt.Errorf("write rows: %w", err))
		}
		return nil
	}
	commit := func() error {
		if err := tx.Commit(ctx); err != nil {
			rollback()
			return wrap("postgres ledger: commit", err)
		}
		return nil
	}
	return ledger.NewPending(pr.Result, pr.Carry, prev, write, commit, rollback), nil
}

// Position is the committed ingest position.
func (s *Store) Position(ctx context.Context) (ledger.Position, error) {
	p, err := readPosition(ctx, s.pool)
	return p, wrap("postgres ledger: position", err)
}

type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

const selectPosition = `SELECT stream_seq, stream_time, last_event_time, applied, duplicates, rejected, expired
	FROM ingest_state WHERE id = 1`

func readPosition(ctx context.Context, q rowQuerier) (ledger.Position, error) {
	return scanPosition(q.QueryRow(ctx, selectPosition))
}

func scanPosition(r pgx.Row) (ledger.Position, error) {
	var p ledger.Position
	var st, lt *time.Time
	var seq int64
	err := r.Scan(&seq, &st, &lt, &p.Applied, &p.Duplicates, &p.Rejected, &p.Expired)
	p.StreamSeq, p.StreamTime, p.LastEventTime = uint64(seq), ft(st), ft(lt)
	return p, err
}

// ingestTx is one Apply's transaction. LoadSessions reads the session
// links and the ingest position in the same round trip as the sessions
// (ledger.ApplyTx asks for them next, for the same uids); they are kept
// here until asked for, and dropped by Write, so a value served is always
// what the transaction would read at that point.
type ingestTx struct {
	tx pgx.Tx

	linkUIDs []string          // the uids links were read for
	links    map[string]string // nil when none were read ahead
	pos      *ledger.Position  // nil when not read ahead
}

// Claim inserts the batch's event ids. The common case, ids never seen,
// takes the fast path: one COPY, inside a savepoint. When an id is
// already there (a redelivery, a replay) the COPY fails on the primary key
// and the savepoint is rolled back: the ids are then inserted ON CONFLICT
// DO NOTHING, which reports which were new. Either way the primary key
// decides; the fast path only saves the per-row statement.
func (t *ingestTx) Claim(ctx context.Context, claims []ledger.Claim) ([]bool, error) {
	out := make([]bool, len(claims))
	ok, err := t.copyOrConflict(ctx, "applied_events", []string{"event_id", "stream_seq", "event_time"}, len(claims),
		func(i int, row []any) {
			c := claims[i]
			row[0], row[1], row[2] = uuidArg(c.EventID), int64(c.StreamSeq), c.Time
		})
	if err != nil {
		return nil, err
	}
	if ok {
		for i := range out {
			out[i] = true
		}
		return out, nil
	}
	ids := make([]string, len(claims))
	seqs := make([]int64, len(claims))
	times := make([]time.Time, len(claims))
	for i, c := range claims {
		ids[i], seqs[i], times[i] = c.EventID, int64(c.StreamSeq), c.Time
	}
	res, err := t.tx.Query(ctx, `INSERT INTO applied_events (event_id, stream_seq, event_time)
		SELECT * FROM unnest($1::text[]::uuid[], $2::bigint[], $3::timestamptz[])
		ON CONFLICT DO NOTHING RETURNING event_id::text`, ids, seqs, times)
	if err != nil {
		return nil, err
	}
	fresh := map[string]bool{}
	for res.Next() {
		var id string
		if err := res.Scan(&id); err != nil {
			res.Close()
			return nil, err
		}
		fresh[id] = true
	}
	if err := res.Err(); err != nil {
		return nil, err
	}
	for i, c := range claims {
		out[i] = fresh[c.EventID]
	}
	return out, nil
}

// uuidArg is a uuid for COPY: its 16 bytes, which pgx encodes directly;
// given the text, pgx first fails to encode a string as a uuid (making an
// error per value) and then parses it (a tenth of the COPYs' client time).
// Text that is no uuid stays text, for the server to refuse.
func uuidArg(s string) any {
	u, err := uuid.Parse(s)
	if err != nil {
		return s
	}
	return [16]byte(u)
}

// copyOrConflict COPYs n rows into table inside a savepoint; false (and
// nothing written) when a row's key is already there. fill sets row i's
// values in row (len(cols) long, reused: pgx encodes each row before
// asking for the next). Rows are made as pgx streams them, in its
// encoding goroutine, while the server takes the ones sent: not all
// first, each in a slice of its own, with the server waiting.
func (t *ingestTx) copyOrConflict(ctx context.Context, table string, cols []string, n int, fill func(i int, row []any)) (bool, error) {
	sp, err := t.tx.Begin(ctx)
	if err != nil {
		return false, err
	}
	row := make([]any, len(cols))
	_, err = sp.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromSlice(n, func(i int) ([]any, error) {
		fill(i, row)
		return row, nil
	}))
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
		return false, sp.Rollback(ctx)
	}
	if err != nil {
		sp.Rollback(ctx)
		return false, err
	}
	return true, sp.Commit(ctx)
}

// identityCols are the sessions table's; counterCols session_counters'.
const identityCols = `session_uid, logical_uid, server_id, spool_id, username, groupname, vhost, worker_id, device,
	ip_real, ip_real_local, vpn_ipv4, vpn_ipv4_local, vpn_ipv6, vpn_ipv6_local, hostname, user_agent,
	device_type, device_platform, cookie_id, connected_at, connected_coarse, ended_at, ended_coarse,
	state, end_reason, origin`

const counterCols = `bytes_in, bytes_out, seconds, samples, last_sample_at, settled, acct_in, acct_out`

// identityColumns and counterColumns name the same columns for COPY.
var (
	identityColumns = columns(identityCols)
	counterColumns  = append([]string{"session_uid"}, columns(counterCols)...)
)

func columns(list string) []string {
	var out []string
	for _, c := range strings.Split(list, ",") {
		out = append(out, strings.TrimSpace(c))
	}
	return out
}

// split parts rows into those whose uid is in isNew and the rest.
func split(rows []*ledger.Session, isNew map[string]bool) (fresh, stored []*ledger.Session) {
	for _, s := range rows {
		if isNew[s.UID] {
			fresh = append(fresh, s)
		} else {
			stored = append(stored, s)
		}
	}
	return fresh, stored
}

// selectSessionCols reads a whole session from sessionsFrom, uuids as
// text so rows scan into strings.
const selectSessionCols = `session_uid::text, logical_uid::text, server_id, spool_id, username, groupname, vhost, worker_id, device,
	ip_real, ip_real_local, vpn_ipv4, vpn_ipv4_local, vpn_ipv6, vpn_ipv6_local, hostname, user_agent,
	device_type, device_platform, cookie_id, connected_at, connected_coarse, ended_at, ended_coarse,
	state, end_reason, origin, ` + counterCols

// sessionsFrom joins a session's row with its counters.
const sessionsFrom = ` FROM sessions JOIN session_counters USING (session_uid)`

func scanSession(r pgx.Row) (*ledger.Session, error) {
	var s ledger.Session
	var ipr, iprl, v4, v4l, v6, v6l *string
	var ended, lastSample *time.Time
	err := r.Scan(&s.UID, &s.LogicalUID, &s.ServerID, &s.SpoolID, &s.Username, &s.Groupname, &s.VHost, &s.WorkerID, &s.Device,
		&ipr, &iprl, &v4, &v4l, &v6, &v6l, &s.Hostname, &s.UserAgent, &s.DeviceType, &s.DevicePlatform, &s.CookieID,
		&s.ConnectedAt, &s.ConnectedCoarse, &ended, &s.EndedCoarse, &s.State, &s.EndReason, &s.Origin,
		&s.BytesIn, &s.BytesOut, &s.Seconds, &s.Samples, &lastSample, &s.Settled, &s.AcctIn, &s.AcctOut)
	if err != nil {
		return nil, err
	}
	s.IPReal, s.IPRealLocal, s.VPNIPv4, s.VPNIPv4Local, s.VPNIPv6, s.VPNIPv6Local = ns(ipr), ns(iprl), ns(v4), ns(v4l), ns(v6), ns(v6l)
	s.ConnectedAt, s.EndedAt, s.LastSampleAt = s.ConnectedAt.UTC(), ft(ended), ft(lastSample)
	return &s, nil
}

// LoadSessions reads the stored rows of uids, and with them, in one
// pipelined batch, their links and the ingest position (see ingestTx).
func (t *ingestTx) LoadSessions(ctx context.Context, uids []string) (map[string]*ledger.Session, error) {
	out := map[string]*ledger.Session{}
	links := map[string]string{}
	var pos ledger.Position
	b := &batch{}
	b.queue("read sessions", `SELECT `+selectSessionCols+sessionsFrom+` WHERE session_uid = ANY($1::text[]::uuid[])`, uids).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				s, err := scanSession(rows)
				if err != nil {
					return err
				}
				out[s.UID] = s
			}
			return rows.Err()
		})
	b.queue("read session links", selectLinks, uids).Query(func(rows pgx.Rows) error { return scanLinks(rows, links) })
	b.queue("read ingest position", selectPosition).QueryRow(func(r pgx.Row) (err error) {
		pos, err = scanPosition(r)
		return err
	})
	if err := b.send(ctx, t.tx); err != nil {
		return nil, err
	}
	t.linkUIDs, t.links, t.pos = uids, links, &pos
	return out, nil
}

const selectLinks = `SELECT session_uid::text, logical_uid::text FROM session_links WHERE session_uid = ANY($1::text[]::uuid[])`

func scanLinks(rows pgx.Rows, out map[string]string) error {
	for rows.Next() {
		var u, l string
		if err := rows.Scan(&u, &l); err != nil {
			return err
		}
		out[u] = l
	}
	return rows.Err()
}

// LoadLinks returns the links LoadSessions read for the same uids, or
// reads them.
func (t *ingestTx) LoadLinks(ctx context.Context, uids []string) (map[string]string, error) {
	if t.links != nil && slices.Equal(t.linkUIDs, uids) {
		links := t.links
		t.linkUIDs, t.links = nil, nil
		return links, nil
	}
	rows, err := t.tx.Query(ctx, selectLinks, uids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	return out, scanLinks(rows, out)
}

// Position returns the position LoadSessions read, or reads it.
func (t *ingestTx) Position(ctx context.Context) (ledger.Position, error) {
	if p := t.pos; p != nil {
		t.pos = nil
		return *p, nil
	}
	return readPosition(ctx, t.tx)
}

// Write sends every table's rows as one pipelined batch: one set-based
// statement per table.
func (t *ingestTx) Write(ctx context.Context, c *ledger.Changes) error {
	t.linkUIDs, t.links, t.pos = nil, nil, nil // what was read ahead is stale from here
	b := &batch{}
	// The batch's new sessions (most of its session rows) go in by COPY:
	// no arbiter lookup per row, and the heap takes them in bulk. The
	// primary key still decides: should a row be there after all, the
	// COPY is undone and every row takes the upsert.
	newSessions, sessions := split(c.Sessions, c.New)
	newCounters, counters := split(c.Counters, c.New)
	if len(newSessions) > 0 {
		ok, err := t.copyOrConflict(ctx, "sessions", identityColumns, len(newSessions), func(i int, row []any) {
			s := newSessions[i]
			copy(row, []any{uuidArg(s.UID), uuidArg(s.LogicalUID), s.ServerID, s.SpoolID, s.Username, s.Groupname, s.VHost, s.WorkerID, s.Device,
				np(s.IPReal), np(s.IPRealLocal), np(s.VPNIPv4), np(s.VPNIPv4Local), np(s.VPNIPv6), np(s.VPNIPv6Local), s.Hostname, s.UserAgent,
				s.DeviceType, s.DevicePlatform, s.CookieID, s.ConnectedAt, s.ConnectedCoarse, tp(s.EndedAt), s.EndedCoarse,
				s.State, s.EndReason, s.Origin})
		})
		if err != nil {
			return fmt.Errorf("copy new sessions: %w", err)
		}
		if !ok {
			sessions = c.Sessions
		}
	}
	if len(newCounters) > 0 {
		ok, err := t.copyOrConflict(ctx, "session_counters", counterColumns, len(newCounters), func(i int, row []any) {
			s := newCounters[i]
			row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8] = uuidArg(s.UID), s.BytesIn, s.BytesOut, s.Seconds, s.Samples, tp(s.LastSampleAt), s.Settled, s.AcctIn, s.AcctOut
		})
		if err != nil {
			return fmt.Errorf("copy new session_counters: %w", err)
		}
		if !ok {
			counters = c.Counters
		}
	}
	if n := len(sessions); n > 0 {
		var (
			uid, logical, server, spool, user, group, vhost, device = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
			ipr, iprl, v4, v4l, v6, v6l                             = make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
			host, ua, dtype, dplat, cookie, state, reason, origin   = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
			worker                                                  = make([]int64, n)
			conn                                                    = make([]time.Time, n)
			ended                                                   = make([]*time.Time, n)
			ccoarse, ecoarse                                        = make([]bool, n), make([]bool, n)
		)
		for i, s := range sessions {
			uid[i], logical[i], server[i], spool[i], user[i], group[i], vhost[i], device[i] = s.UID, s.LogicalUID, s.ServerID, s.SpoolID, s.Username, s.Groupname, s.VHost, s.Device
			ipr[i], iprl[i], v4[i], v4l[i], v6[i], v6l[i] = np(s.IPReal), np(s.IPRealLocal), np(s.VPNIPv4), np(s.VPNIPv4Local), np(s.VPNIPv6), np(s.VPNIPv6Local)
			host[i], ua[i], dtype[i], dplat[i], cookie[i], state[i], reason[i], origin[i] = s.Hostname, s.UserAgent, s.DeviceType, s.DevicePlatform, s.CookieID, s.State, s.EndReason, s.Origin
			worker[i], conn[i], ended[i], ccoarse[i], ecoarse[i] = s.WorkerID, s.ConnectedAt, tp(s.EndedAt), s.ConnectedCoarse, s.EndedCoarse
		}
		b.queue("upsert sessions", `INSERT INTO sessions (`+identityCols+`)
			SELECT * FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[],
				$10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],
				$18::text[], $19::text[], $20::text[], $21::timestamptz[], $22::boolean[], $23::timestamptz[], $24::boolean[],
				$25::text[], $26::text[], $27::text[])
			ON CONFLICT (session_uid) DO UPDATE SET (`+identityCols+`) = (
				excluded.session_uid, excluded.logical_uid, excluded.server_id, excluded.spool_id, excluded.username, excluded.groupname, excluded.vhost, excluded.worker_id, excluded.device,
				excluded.ip_real, excluded.ip_real_local, excluded.vpn_ipv4, excluded.vpn_ipv4_local, excluded.vpn_ipv6, excluded.vpn_ipv6_local, excluded.hostname, excluded.user_agent,
				excluded.device_type, excluded.device_platform, excluded.cookie_id, excluded.connected_at, excluded.connected_coarse, excluded.ended_at, excluded.ended_coarse,
				excluded.state, excluded.end_reason, excluded.origin)`,
			uid, logical, server, spool, user, group, vhost, worker, device, ipr, iprl, v4, v4l, v6, v6l, host, ua,
			dtype, dplat, cookie, conn, ccoarse, ended, ecoarse, state, reason, origin)
	}
	if n := len(counters); n > 0 {
		uid := make([]string, n)
		bin, bout, secs, samples, ain, aout := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		last := make([]*time.Time, n)
		settled := make([]bool, n)
		for i, s := range counters {
			uid[i], bin[i], bout[i], secs[i], samples[i], last[i], settled[i], ain[i], aout[i] = s.UID, s.BytesIn, s.BytesOut, s.Seconds, s.Samples, tp(s.LastSampleAt), s.Settled, s.AcctIn, s.AcctOut
		}
		b.queue("upsert session_counters", `INSERT INTO session_counters (session_uid, `+counterCols+`)
			SELECT * FROM unnest($1::text[]::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::timestamptz[], $7::boolean[], $8::bigint[], $9::bigint[])
			ON CONFLICT (session_uid) DO UPDATE SET (`+counterCols+`) = (excluded.bytes_in, excluded.bytes_out, excluded.seconds,
				excluded.samples, excluded.last_sample_at, excluded.settled, excluded.acct_in, excluded.acct_out)`,
			uid, bin, bout, secs, samples, last, settled, ain, aout)
	}
	if len(c.Links) > 0 {
		var u, l []string
		for k, v := range c.Links {
			u, l = append(u, k), append(l, v)
		}
		b.queue("upsert session_links", `INSERT INTO session_links (session_uid, logical_uid) SELECT * FROM unnest($1::text[]::uuid[], $2::text[]::uuid[])
			ON CONFLICT (session_uid) DO UPDATE SET logical_uid = excluded.logical_uid`, u, l)
	}
	if n := len(c.Samples); n > 0 {
		ok, err := t.copyOrConflict(ctx, "samples", []string{"session_uid", "slot", "server_id", "observed_at", "bytes_in", "bytes_out",
			"delta_in", "delta_out", "duration_s"}, n, func(i int, row []any) {
			x := &c.Samples[i]
			row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8] = uuidArg(x.SessionUID), x.Slot, x.ServerID, x.ObservedAt, x.BytesIn, x.BytesOut, x.DeltaIn, x.DeltaOut, x.DurationS
		})
		if err != nil {
			return fmt.Errorf("copy samples: %w", err)
		}
		if !ok {
			// A sample already stored under another event id: keep
			// the first, as on SQLite.
			uid, server := make([]string, n), make([]string, n)
			at := make([]time.Time, n)
			slot, bin, bout, din, dout, dur := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
			for i, x := range c.Samples {
				uid[i], server[i], at[i] = x.SessionUID, x.ServerID, x.ObservedAt
				slot[i], bin[i], bout[i], din[i], dout[i], dur[i] = x.Slot, x.BytesIn, x.BytesOut, x.DeltaIn, x.DeltaOut, x.DurationS
			}
			b.queue("insert samples", `INSERT INTO samples (session_uid, slot, server_id, observed_at, bytes_in, bytes_out, delta_in, delta_out, duration_s)
				SELECT * FROM unnest($1::text[]::uuid[], $2::bigint[], $3::text[], $4::timestamptz[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
				ON CONFLICT DO NOTHING`, uid, slot, server, at, bin, bout, din, dout, dur)
		}
	}
	if n := len(c.Usage); n > 0 {
		day, user, server := make([]string, n), make([]string, n), make([]string, n)
		bin, bout, secs, sess := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		for i, u := range c.Usage {
			day[i], user[i], server[i], bin[i], bout[i], secs[i], sess[i] = u.Day, u.Username, u.ServerID, u.BytesIn, u.BytesOut, u.Seconds, u.Sessions
		}
		b.queue("upsert usage_daily", `INSERT INTO usage_daily AS u (day, username, server_id, bytes_in, bytes_out, seconds, sessions)
			SELECT * FROM unnest($1::text[]::date[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])
			ON CONFLICT (day, username, server_id) DO UPDATE SET bytes_in = u.bytes_in + excluded.bytes_in,
				bytes_out = u.bytes_out + excluded.bytes_out, seconds = u.seconds + excluded.seconds, sessions = u.sessions + excluded.sessions`,
			day, user, server, bin, bout, secs, sess)
	}
	if n := len(c.Monthly); n > 0 {
		month, user := make([]string, n), make([]string, n)
		bin, bout, secs, sess := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		for i, u := range c.Monthly {
			month[i], user[i], bin[i], bout[i], secs[i], sess[i] = u.Day+"-01", u.Username, u.BytesIn, u.BytesOut, u.Seconds, u.Sessions
		}
		b.queue("upsert usage_monthly", `INSERT INTO usage_monthly AS u (month, username, bytes_in, bytes_out, seconds, sessions)
			SELECT * FROM unnest($1::text[]::date[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
			ON CONFLICT (month, username) DO UPDATE SET bytes_in = u.bytes_in + excluded.bytes_in,
				bytes_out = u.bytes_out + excluded.bytes_out, seconds = u.seconds + excluded.seconds, sessions = u.sessions + excluded.sessions`,
			month, user, bin, bout, secs, sess)
	}
	if n := len(c.Audit); n > 0 {
		id, server, phase, action, subject, key, keyName, role, code, msg, args := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		at := make([]time.Time, n)
		ok := make([]bool, n)
		elapsed, supp := make([]int64, n), make([]int64, n)
		actor, target := make([]string, n), make([]string, n)
		for i, a := range c.Audit {
			id[i], server[i], at[i], phase[i], action[i], subject[i], key[i], keyName[i], role[i] = a.EventID, a.ServerID, a.Time, a.Phase, a.Action, a.Subject, a.Key, a.KeyName, a.Role
			ok[i], code[i], msg[i], args[i], elapsed[i], supp[i] = a.OK, a.Code, a.Message, argsJSON(a.Args), a.ElapsedMS, a.Suppressed
			actor[i], target[i] = a.Actor, a.Args["user"]
		}
		b.queue("insert audit", `INSERT INTO audit (event_id, server_id, time, phase, action, subject, key, key_name, role, ok, code, message, args, elapsed_ms, suppressed, actor, target_user)
			SELECT * FROM unnest($1::text[]::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
				$10::boolean[], $11::text[], $12::text[], $13::text[]::jsonb[], $14::bigint[], $15::bigint[], $16::text[], $17::text[]) ON CONFLICT DO NOTHING`,
			id, server, at, phase, action, subject, key, keyName, role, ok, code, msg, args, elapsed, supp, actor, target)
	}
	for _, n := range c.Notices {
		b.queue("insert spool_notices", `INSERT INTO spool_notices (event_id, server_id, type, time, reason, events, bytes, seq_ranges)
			VALUES ($1::text::uuid, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
			n.EventID, n.ServerID, n.Type, n.Time, n.Reason, n.Events, n.Bytes, string(n.SeqRanges))
	}
	if n := len(c.Servers); n > 0 {
		id, spool, typ := make([]string, n), make([]string, n), make([]string, n)
		first, last := make([]time.Time, n), make([]time.Time, n)
		evs, dropped := make([]int64, n), make([]int64, n)
		for i, v := range c.Servers {
			id[i], spool[i], first[i], last[i], typ[i], evs[i], dropped[i] = v.ServerID, v.SpoolID, v.FirstSeen, v.LastSeen, v.LastType, v.Events, v.Dropped
		}
		b.queue("upsert servers", `INSERT INTO servers AS s (server_id, spool_id, first_seen, last_seen, last_type, events, dropped_events)
			SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::bigint[], $7::bigint[])
			ON CONFLICT (server_id) DO UPDATE SET
			first_seen = least(s.first_seen, excluded.first_seen),
			spool_id = CASE WHEN excluded.last_seen >= s.last_seen THEN excluded.spool_id ELSE s.spool_id END,
			last_type = CASE WHEN excluded.last_seen >= s.last_seen THEN excluded.last_type ELSE s.last_type END,
			last_seen = greatest(s.last_seen, excluded.last_seen),
			events = s.events + excluded.events, dropped_events = s.dropped_events + excluded.dropped_events`,
			id, spool, first, last, typ, evs, dropped)
	}
	for _, r := range c.Rejected {
		b.queue("insert rejected_events", `INSERT INTO rejected_events (stream_seq, subject, event_id, reason, payload, received)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
			int64(r.StreamSeq), r.Subject, r.EventID, r.Reason, r.Payload, r.Received)
	}
	p := c.Position
	b.queue("update ingest_state", `UPDATE ingest_state SET stream_seq = $1, stream_time = $2, last_event_time = $3,
		applied = $4, duplicates = $5, rejected = $6, expired = $7 WHERE id = 1`,
		int64(p.StreamSeq), tp(p.StreamTime), tp(p.LastEventTime), p.Applied, p.Duplicates, p.Rejected, p.Expired)
	return b.send(ctx, t.tx)
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
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return wrap("postgres ledger: begin", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := ledger.RejectTx(ctx, &ingestTx{tx: tx}, m, reason); err != nil {
		return wrap("postgres ledger: reject", err)
	}
	return wrap("postgres ledger: commit", tx.Commit(ctx))
}
