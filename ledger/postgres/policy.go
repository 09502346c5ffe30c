package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
)

var _ ledger.PolicyStore = (*Store)(nil)

// inTx runs f in one transaction and commits.
func (s *Store) inTx(ctx context.Context, op string, f func(pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return wrap(op, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := f(tx); err != nil {
		return wrap(op, err)
	}
	return wrap(op, tx.Commit(ctx))
}

const bumpRevision = `UPDATE policy_state SET revision = revision + 1 WHERE id = 1`

// PutPolicy stores p (ledger.PolicyStore).
func (s *Store) PutPolicy(ctx context.Context, p policy.Policy, now time.Time) error {
	if err := p.Validate(); err != nil {
		return ledger.Errorf(ledger.ECodeInvalid, "%v", err)
	}
	return s.inTx(ctx, "postgres ledger: put policy", func(tx pgx.Tx) error {
		var err error
		if p.Empty() {
			_, err = tx.Exec(ctx, `DELETE FROM policies WHERE scope = $1 AND name = $2`, string(p.Scope), p.Name)
		} else {
			p.UpdatedAt = now.UTC().Truncate(time.Microsecond)
			spec, merr := json.Marshal(p)
			if merr != nil {
				return merr
			}
			_, err = tx.Exec(ctx, `INSERT INTO policies (scope, name, spec, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (scope, name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
				string(p.Scope), p.Name, string(spec), p.UpdatedAt, p.UpdatedBy)
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, bumpRevision)
		return err
	})
}

// DeletePolicy removes a policy (ledger.PolicyStore).
func (s *Store) DeletePolicy(ctx context.Context, scope policy.Scope, name string) (bool, error) {
	var found bool
	err := s.inTx(ctx, "postgres ledger: delete policy", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM policies WHERE scope = $1 AND name = $2`, string(scope), name)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		found = true
		_, err = tx.Exec(ctx, bumpRevision)
		return err
	})
	return found, err
}

func scanPolicy(r pgx.Row) (policy.Policy, error) {
	var p policy.Policy
	var spec []byte
	if err := r.Scan(&spec); err != nil {
		return p, err
	}
	if err := json.Unmarshal(spec, &p); err != nil {
		return p, fmt.Errorf("stored policy does not parse: %w", err)
	}
	p.UpdatedAt = p.UpdatedAt.UTC()
	return p, nil
}

// Policy returns one policy (ledger.PolicyStore).
func (s *Store) Policy(ctx context.Context, scope policy.Scope, name string) (policy.Policy, error) {
	p, err := scanPolicy(s.pool.QueryRow(ctx, `SELECT spec FROM policies WHERE scope = $1 AND name = $2`, string(scope), name))
	if errors.Is(err, pgx.ErrNoRows) {
		return p, ledger.Errorf(ledger.ECodeNotFound, "no policy for %s %s", scope, name)
	}
	return p, wrap("postgres ledger: policy", err)
}

// Policies lists policies (ledger.PolicyStore).
func (s *Store) Policies(ctx context.Context, q ledger.PolicyQuery) (ledger.Page[policy.Policy], error) {
	var page ledger.Page[policy.Policy]
	if err := q.Check(); err != nil {
		return page, err
	}
	var w where
	if q.Scope != "" {
		w.add(`scope = ?`, string(q.Scope))
	}
	if q.Name != "" {
		w.add(`name = ?`, q.Name)
	}
	if q.Cursor != "" {
		sc, name, _ := ledger.DecodeNameCursor(q.Cursor)
		w.add(`(scope COLLATE "C", name COLLATE "C") > (?, ?)`, sc, name)
	}
	// COLLATE "C": the same byte order as SQLite, so pages split alike.
	rows, err := s.pool.Query(ctx, `SELECT spec FROM policies`+w.String()+` ORDER BY scope COLLATE "C", name COLLATE "C" LIMIT `+w.arg(q.Limit+1), w.args...)
	if err != nil {
		return page, wrap("postgres ledger: policies", err)
	}
	defer rows.Close()
	for rows.Next() {
		p, err := scanPolicy(rows)
		if err != nil {
			return page, wrap("postgres ledger: policies", err)
		}
		page.Items = append(page.Items, p)
	}
	if err := rows.Err(); err != nil {
		return page, wrap("postgres ledger: policies", err)
	}
	if len(page.Items) > q.Limit {
		page.Items = page.Items[:q.Limit]
		last := page.Items[q.Limit-1]
		page.NextCursor = ledger.EncodeNameCursor(string(last.Scope), last.Name)
	}
	return page, nil
}

// PolicyRevision is the policy change counter (ledger.PolicyStore).
func (s *Store) PolicyRevision(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT revision FROM policy_state WHERE id = 1`).Scan(&n)
	return n, wrap("postgres ledger: policy revision", err)
}

// userFilter is a condition on col for users (none when users is nil).
func userFilter(w *where, col string, users []string) {
	if users != nil {
		w.add(col+` = ANY(?::text[])`, users)
	}
}

// RefreshPolicyUsers updates the users' rows from their sessions
// (ledger.PolicyStore).
func (s *Store) RefreshPolicyUsers(ctx context.Context, users []string) error {
	var w where
	w.add(`s.state <> 'refused' AND s.username <> ''`)
	userFilter(&w, "s.username", users)
	_, err := s.pool.Exec(ctx, `INSERT INTO policy_users (username, groupname, first_use, last_connect)
		SELECT s.username,
			(SELECT g.groupname FROM sessions g WHERE g.username = s.username AND g.state <> 'refused'
				ORDER BY g.connected_at DESC, g.session_uid DESC LIMIT 1),
			min(s.connected_at), max(s.connected_at)
		FROM sessions s`+w.String()+`
		GROUP BY s.username
		ON CONFLICT (username) DO UPDATE SET
			groupname = CASE WHEN excluded.last_connect >= policy_users.last_connect THEN excluded.groupname ELSE policy_users.groupname END,
			first_use = least(policy_users.first_use, excluded.first_use),
			last_connect = greatest(policy_users.last_connect, excluded.last_connect)`, w.args...)
	return wrap("postgres ledger: refresh policy users", err)
}

// PolicyUsers returns users' rows (ledger.PolicyStore).
func (s *Store) PolicyUsers(ctx context.Context, users []string) ([]ledger.PolicyUser, error) {
	var w where
	userFilter(&w, "username", users)
	rows, err := s.pool.Query(ctx, `SELECT username, groupname, first_use, last_connect FROM policy_users`+w.String()+` ORDER BY username COLLATE "C"`, w.args...)
	if err != nil {
		return nil, wrap("postgres ledger: policy users", err)
	}
	defer rows.Close()
	var out []ledger.PolicyUser
	for rows.Next() {
		var u ledger.PolicyUser
		if err := rows.Scan(&u.Username, &u.Groupname, &u.FirstUse, &u.LastConnect); err != nil {
			return nil, wrap("postgres ledger: policy users", err)
		}
		u.FirstUse, u.LastConnect = u.FirstUse.UTC(), u.LastConnect.UTC()
		out = append(out, u)
	}
	return out, wrap("postgres ledger: policy users", rows.Err())
}

// GroupMembers lists the users in groups (ledger.PolicyStore).
func (s *Store) GroupMembers(ctx context.Context, groups []string) ([]string, error) {
	var w where
	userFilter(&w, "groupname", groups)
	rows, err := s.pool.Query(ctx, `SELECT username FROM policy_users`+w.String()+` ORDER BY username COLLATE "C"`, w.args...)
	if err != nil {
		return nil, wrap("postgres ledger: group members", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return out, wrap("postgres ledger: group members", err)
}

// UsageSince sums usage per user from a day on (ledger.PolicyStore).
func (s *Store) UsageSince(ctx context.Context, from time.Time, users []string) (map[string]policy.Usage, error) {
	var w where
	if !from.IsZero() {
		w.add(`day >= ?::date`, ledger.Day(from))
	}
	userFilter(&w, "username", users)
	rows, err := s.pool.Query(ctx, `SELECT username, sum(bytes_in)::bigint, sum(bytes_out)::bigint, sum(seconds)::bigint FROM usage_daily`+w.String()+` GROUP BY username`, w.args...)
	if err != nil {
		return nil, wrap("postgres ledger: usage since", err)
	}
	defer rows.Close()
	out := map[string]policy.Usage{}
	for rows.Next() {
		var u string
		var x policy.Usage
		if err := rows.Scan(&u, &x.In, &x.Out, &x.Seconds); err != nil {
			return nil, wrap("postgres ledger: usage since", err)
		}
		out[u] = x
	}
	return out, wrap("postgres ledger: usage since", rows.Err())
}

// UsageDays is usage per user per day (ledger.PolicyStore).
func (s *Store) UsageDays(ctx context.Context, from time.Time, users []string) (map[string][]ledger.DayUsage, error) {
	var w where
	w.add(`day >= ?::date`, ledger.Day(from))
	userFilter(&w, "username", users)
	rows, err := s.pool.Query(ctx, `SELECT username, day, sum(bytes_in)::bigint, sum(bytes_out)::bigint, sum(seconds)::bigint FROM usage_daily`+
		w.String()+` GROUP BY day, username ORDER BY day, username`, w.args...)
	if err != nil {
		return nil, wrap("postgres ledger: usage days", err)
	}
	defer rows.Close()
	out := map[string][]ledger.DayUsage{}
	for rows.Next() {
		var u string
		var d ledger.DayUsage
		if err := rows.Scan(&u, &d.Day, &d.Usage.In, &d.Usage.Out, &d.Usage.Seconds); err != nil {
			return nil, wrap("postgres ledger: usage days", err)
		}
		d.Day = d.Day.UTC()
		out[u] = append(out[u], d)
	}
	return out, wrap("postgres ledger: usage days", rows.Err())
}

// OpenSessions lists open sessions per user (ledger.PolicyStore).
func (s *Store) OpenSessions(ctx context.Context, users []string) (map[string][]policy.OpenSession, error) {
	q, args := openSessionsQuery(users)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, wrap("postgres ledger: open sessions", err)
	}
	defer rows.Close()
	out := map[string][]policy.OpenSession{}
	for rows.Next() {
		var u string
		var o policy.OpenSession
		if err := rows.Scan(&u, &o.ServerID, &o.SessionUID, &o.LogicalUID, &o.WorkerID, &o.ConnectedAt); err != nil {
			return nil, wrap("postgres ledger: open sessions", err)
		}
		o.ConnectedAt = o.ConnectedAt.UTC()
		out[u] = append(out[u], o)
	}
	return out, wrap("postgres ledger: open sessions", rows.Err())
}

// openSessionsQuery reads the users' open sessions (all users' when
// users is nil) from the partial index sessions_open_user (schema 00008):
// open sessions only, in this order, whatever each user's history.
func openSessionsQuery(users []string) (string, []any) {
	var w where
	w.add(`state = 'open' AND username <> ''`)
	userFilter(&w, "username", users)
	return `SELECT username, server_id, session_uid::text, logical_uid::text, worker_id, connected_at FROM sessions` +
		w.String() + ` ORDER BY username, connected_at, session_uid`, w.args
}

// RefusedSince lists session-limit refusals (ledger.PolicyStore).
func (s *Store) RefusedSince(ctx context.Context, t time.Time, users []string) (map[string][]ledger.RefusedLogin, error) {
	var w where
	w.add(`state = 'refused' AND connected_at >= ? AND end_reason LIKE ?`, t, policy.RefusalSessionLimit+"%")
	userFilter(&w, "username", users)
	rows, err := s.pool.Query(ctx, `SELECT username, session_uid::text, server_id, connected_at, end_reason FROM sessions`+w.String()+` ORDER BY connected_at`, w.args...)
	if err != nil {
		return nil, wrap("postgres ledger: refused logins", err)
	}
	defer rows.Close()
	out := map[string][]ledger.RefusedLogin{}
	for rows.Next() {
		var u string
		var r ledger.RefusedLogin
		if err := rows.Scan(&u, &r.SessionUID, &r.ServerID, &r.At, &r.Reason); err != nil {
			return nil, wrap("postgres ledger: refused logins", err)
		}
		r.At = r.At.UTC()
		out[u] = append(out[u], r)
	}
	return out, wrap("postgres ledger: refused logins", rows.Err())
}

// ResetUsage records a reset with its baseline (ledger.PolicyStore).
func (s *Store) ResetUsage(ctx context.Context, r ledger.UsageReset) (ledger.UsageReset, error) {
	if r.Kind != policy.KindQuota && r.Kind != policy.KindTime {
		return r, ledger.Errorf(ledger.ECodeInvalid, "kind: %q is not quota or time", r.Kind)
	}
	r.At = r.At.UTC().Truncate(time.Microsecond)
	err := s.inTx(ctx, "postgres ledger: reset usage", func(tx pgx.Tx) error {
		var w where
		w.add(`username = ?`, r.Username)
		if !r.WindowStart.IsZero() {
			w.add(`day >= ?::date`, ledger.Day(r.WindowStart))
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce(sum(bytes_in), 0)::bigint, coalesce(sum(bytes_out), 0)::bigint,
			coalesce(sum(seconds), 0)::bigint FROM usage_daily`+w.String(), w.args...).Scan(&r.Base.In, &r.Base.Out, &r.Base.Seconds); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO policy_resets (username, kind, window_start, at, reset_by, base_in, base_out, base_seconds)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (username, kind) DO UPDATE SET window_start = excluded.window_start,
			at = excluded.at, reset_by = excluded.reset_by, base_in = excluded.base_in, base_out = excluded.base_out, base_seconds = excluded.base_seconds`,
			r.Username, r.Kind, tp(r.WindowStart), r.At, r.By, r.Base.In, r.Base.Out, r.Base.Seconds); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, bumpRevision)
		return err
	})
	return r, err
}

// Resets returns the latest resets (ledger.PolicyStore).
func (s *Store) Resets(ctx context.Context, users []string) (map[string][]ledger.UsageReset, error) {
	var w where
	userFilter(&w, "username", users)
	rows, err := s.pool.Query(ctx, `SELECT username, kind, window_start, at, reset_by, base_in, base_out, base_seconds FROM policy_resets`+
		w.String()+` ORDER BY username, kind`, w.args...)
	if err != nil {
		return nil, wrap("postgres ledger: resets", err)
	}
	defer rows.Close()
	out := map[string][]ledger.UsageReset{}
	for rows.Next() {
		var r ledger.UsageReset
		var ws *time.Time
		if err := rows.Scan(&r.Username, &r.Kind, &ws, &r.At, &r.By, &r.Base.In, &r.Base.Out, &r.Base.Seconds); err != nil {
			return nil, wrap("postgres ledger: resets", err)
		}
		r.WindowStart, r.At = ft(ws), r.At.UTC()
		out[r.Username] = append(out[r.Username], r)
	}
	return out, wrap("postgres ledger: resets", rows.Err())
}

// SaveVerdicts stores verdicts (ledger.PolicyStore), set-based.
func (s *Store) SaveVerdicts(ctx context.Context, save []policy.Verdict, del []string) error {
	if len(save) == 0 && len(del) == 0 {
		return nil
	}
	users, reasons, bodies := make([]string, len(save)), make([]string, len(save)), make([]string, len(save))
	allowed, untils, decided := make([]bool, len(save)), make([]*time.Time, len(save)), make([]time.Time, len(save))
	for i, v := range save {
		b, _ := json.Marshal(v)
		users[i], reasons[i], bodies[i], allowed[i], untils[i], decided[i] = v.User, v.Reason, string(b), v.Allowed, v.Until, v.Decided
	}
	return s.inTx(ctx, "postgres ledger: save verdicts", func(tx pgx.Tx) error {
		if len(save) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO policy_verdicts (username, allowed, reason, until, decided, body)
				SELECT * FROM unnest($1::text[], $2::bool[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::jsonb[])
				ON CONFLICT (username) DO UPDATE SET allowed = excluded.allowed, reason = excluded.reason, until = excluded.until,
				decided = excluded.decided, body = excluded.body`, users, allowed, reasons, untils, decided, bodies); err != nil {
				return err
			}
		}
		if len(del) > 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM policy_verdicts WHERE username = ANY($1::text[])`, del); err != nil {
				return err
			}
		}
		return nil
	})
}

// Verdicts returns every stored verdict (ledger.PolicyStore).
func (s *Store) Verdicts(ctx context.Context) (map[string]policy.Verdict, error) {
	rows, err := s.pool.Query(ctx, `SELECT body FROM policy_verdicts`)
	if err != nil {
		return nil, wrap("postgres ledger: verdicts", err)
	}
	defer rows.Close()
	out := map[string]policy.Verdict{}
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, wrap("postgres ledger: verdicts", err)
		}
		var v policy.Verdict
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("postgres ledger: stored verdict does not parse: %w", err)
		}
		out[v.User] = v
	}
	return out, wrap("postgres ledger: verdicts", rows.Err())
}

// AddPolicyNotices records new notices (ledger.PolicyStore).
func (s *Store) AddPolicyNotices(ctx context.Context, ns []policy.Notice, webhook bool) ([]policy.Notice, error) {
	if len(ns) == 0 {
		return nil, nil
	}
	state := ledger.WebhookNone
	if webhook {
		state = ledger.WebhookPending
	}
	var fresh []policy.Notice
	err := s.inTx(ctx, "postgres ledger: add notices", func(tx pgx.Tx) error {
		for _, n := range ns {
			b, _ := json.Marshal(n)
			var next *time.Time
			if webhook {
				next = &n.Time
			}
			tag, err := tx.Exec(ctx, `INSERT INTO policy_notices (notice_id, username, kind, time, body, webhook, attempts, last_error, next_attempt)
				VALUES ($1::uuid, $2, $3, $4, $5, $6, 0, '', $7) ON CONFLICT DO NOTHING`, n.ID, n.User, n.Kind, n.Time, string(b), state, next)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 1 {
				fresh = append(fresh, n)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return fresh, nil
}

// PendingPolicyNotices returns due webhook deliveries (ledger.PolicyStore).
func (s *Store) PendingPolicyNotices(ctx context.Context, now time.Time, limit int) ([]policy.Notice, error) {
	rows, err := s.pool.Query(ctx, `SELECT body FROM policy_notices WHERE webhook = 'pending' AND next_attempt <= $1
		ORDER BY next_attempt, notice_id LIMIT $2`, now, limit)
	if err != nil {
		return nil, wrap("postgres ledger: pending notices", err)
	}
	defer rows.Close()
	var out []policy.Notice
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, wrap("postgres ledger: pending notices", err)
		}
		var n policy.Notice
		if err := json.Unmarshal(b, &n); err != nil {
			return nil, fmt.Errorf("postgres ledger: stored notice does not parse: %w", err)
		}
		out = append(out, n)
	}
	return out, wrap("postgres ledger: pending notices", rows.Err())
}

// MarkPolicyNotice records a delivery attempt (ledger.PolicyStore).
func (s *Store) MarkPolicyNotice(ctx context.Context, id string, delivered bool, errMsg string, next time.Time) error {
	state, at := ledger.WebhookPending, tp(next)
	var deliveredAt *time.Time
	switch {
	case delivered:
		now := time.Now().UTC()
		state, at, deliveredAt = ledger.WebhookDelivered, nil, &now
	case next.IsZero():
		state = ledger.WebhookFailed
	}
	_, err := s.pool.Exec(ctx, `UPDATE policy_notices SET webhook = $1, attempts = attempts + 1, last_error = $2, next_attempt = $3,
		delivered_at = $4 WHERE notice_id = $5::uuid`, state, errMsg, at, deliveredAt, id)
	return wrap("postgres ledger: mark notice", err)
}

// PolicyNotices lists recorded notices (ledger.PolicyStore).
func (s *Store) PolicyNotices(ctx context.Context, q ledger.PolicyNoticeQuery) (ledger.Page[ledger.PolicyNoticeRow], error) {
	var page ledger.Page[ledger.PolicyNoticeRow]
	if err := q.Check(); err != nil {
		return page, err
	}
	var w where
	if q.User != "" {
		w.add(`username = ?`, q.User)
	}
	if q.Kind != "" {
		w.add(`kind = ?`, q.Kind)
	}
	if q.Cursor != "" {
		c, _ := ledger.DecodeCursor(q.Cursor)
		w.add(`(time, notice_id) < (?, ?::uuid)`, c.Time, c.ID)
	}
	rows, err := s.pool.Query(ctx, `SELECT notice_id::text, time, body, webhook, attempts, last_error, delivered_at FROM policy_notices`+w.String()+
		` ORDER BY time DESC, notice_id DESC LIMIT `+w.arg(q.Limit+1), w.args...)
	if err != nil {
		return page, wrap("postgres ledger: notices", err)
	}
	defer rows.Close()
	var ids []string
	var times []time.Time
	for rows.Next() {
		var r ledger.PolicyNoticeRow
		var id string
		var t time.Time
		var b []byte
		var d *time.Time
		if err := rows.Scan(&id, &t, &b, &r.Webhook, &r.Attempts, &r.LastError, &d); err != nil {
			return page, wrap("postgres ledger: notices", err)
		}
		if err := json.Unmarshal(b, &r.Notice); err != nil {
			return page, fmt.Errorf("postgres ledger: stored notice does not parse: %w", err)
		}
		r.DeliveredAt = ft(d)
		page.Items = append(page.Items, r)
		ids, times = append(ids, id), append(times, t.UTC())
	}
	if err := rows.Err(); err != nil {
		return page, wrap("postgres ledger: notices", err)
	}
	if len(page.Items) > q.Limit {
		page.Items = page.Items[:q.Limit]
		page.NextCursor = ledger.Cursor{Time: times[q.Limit-1], ID: ids[q.Limit-1]}.Encode()
	}
	return page, nil
}

// PutPolicyKick records a kick (ledger.PolicyStore).
func (s *Store) PutPolicyKick(ctx context.Context, k ledger.PolicyKick) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO policy_kicks (username, server_id, at, reason) VALUES ($1, $2, $3, $4)
		ON CONFLICT (username, server_id) DO UPDATE SET at = excluded.at, reason = excluded.reason`, k.Username, k.ServerID, k.At, k.Reason)
	return wrap("postgres ledger: put policy kick", err)
}

// DeletePolicyKick forgets a kick (ledger.PolicyStore).
func (s *Store) DeletePolicyKick(ctx context.Context, user, server string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM policy_kicks WHERE username = $1 AND server_id = $2`, user, server)
	return wrap("postgres ledger: delete policy kick", err)
}

// PolicyKicks lists kicks ("" user: all) (ledger.PolicyStore).
func (s *Store) PolicyKicks(ctx context.Context, user string) ([]ledger.PolicyKick, error) {
	var w where
	if user != "" {
		w.add(`username = ?`, user)
	}
	rows, err := s.pool.Query(ctx, `SELECT username, server_id, at, reason FROM policy_kicks`+w.String()+` ORDER BY username COLLATE "C", server_id COLLATE "C"`, w.args...)
	if err != nil {
		return nil, wrap("postgres ledger: policy kicks", err)
	}
	defer rows.Close()
	var out []ledger.PolicyKick
	for rows.Next() {
		var k ledger.PolicyKick
		if err := rows.Scan(&k.Username, &k.ServerID, &k.At, &k.Reason); err != nil {
			return nil, wrap("postgres ledger: policy kicks", err)
		}
		k.At = k.At.UTC()
		out = append(out, k)
	}
	return out, wrap("postgres ledger: policy kicks", rows.Err())
}
