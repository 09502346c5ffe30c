package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
)

var _ ledger.PolicyStore = (*Store)(nil)

// PutPolicy stores p (ledger.PolicyStore).
func (s *Store) PutPolicy(ctx context.Context, p policy.Policy, now time.Time) error {
	if err := p.Validate(); err != nil {
		return ledger.Errorf(ledger.ECodeInvalid, "%v", err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return wrap("sqlite ledger: put policy", err)
	}
	defer tx.Rollback()
	if p.Empty() {
		_, err = tx.ExecContext(ctx, `DELETE FROM policies WHERE scope = ? AND name = ?`, string(p.Scope), p.Name)
	} else {
		p.UpdatedAt = now.UTC().Truncate(time.Microsecond)
		spec, merr := json.Marshal(p)
		if merr != nil {
			return fmt.Errorf("sqlite ledger: put policy: %w", merr)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO policies (scope, name, spec, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (scope, name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
			string(p.Scope), p.Name, string(spec), p.UpdatedAt.UnixMicro(), p.UpdatedBy)
	}
	if err == nil {
		err = bumpRevision(ctx, tx)
	}
	if err != nil {
		return wrap("sqlite ledger: put policy", err)
	}
	return wrap("sqlite ledger: put policy", tx.Commit())
}

func bumpRevision(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `UPDATE policy_state SET revision = revision + 1 WHERE id = 1`)
	return err
}

// DeletePolicy removes a policy (ledger.PolicyStore).
func (s *Store) DeletePolicy(ctx context.Context, scope policy.Scope, name string) (bool, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, wrap("sqlite ledger: delete policy", err)
	}
	defer tx.Rollback()
	r, err := tx.ExecContext(ctx, `DELETE FROM policies WHERE scope = ? AND name = ?`, string(scope), name)
	if err != nil {
		return false, wrap("sqlite ledger: delete policy", err)
	}
	n, _ := r.RowsAffected()
	if n == 0 {
		return false, nil
	}
	if err := bumpRevision(ctx, tx); err != nil {
		return false, wrap("sqlite ledger: delete policy", err)
	}
	return true, wrap("sqlite ledger: delete policy", tx.Commit())
}

func scanPolicy(r scanner) (policy.Policy, error) {
	var p policy.Policy
	var spec string
	if err := r.Scan(&spec); err != nil {
		return p, err
	}
	if err := json.Unmarshal([]byte(spec), &p); err != nil {
		return p, fmt.Errorf("stored policy does not parse: %w", err)
	}
	p.UpdatedAt = p.UpdatedAt.UTC()
	return p, nil
}

// Policy returns one policy (ledger.PolicyStore).
func (s *Store) Policy(ctx context.Context, scope policy.Scope, name string) (policy.Policy, error) {
	p, err := scanPolicy(s.r.QueryRowContext(ctx, `SELECT spec FROM policies WHERE scope = ? AND name = ?`, string(scope), name))
	if errors.Is(err, sql.ErrNoRows) {
		return p, ledger.Errorf(ledger.ECodeNotFound, "no policy for %s %s", scope, name)
	}
	return p, wrap("sqlite ledger: policy", err)
}

// Policies lists policies (ledger.PolicyStore).
func (s *Store) Policies(ctx context.Context, q ledger.PolicyQuery) (ledger.Page[policy.Policy], error) {
	var page ledger.Page[policy.Policy]
	if err := q.Check(); err != nil {
		return page, err
	}
	limit := q.Limit
	var w where
	if q.Scope != "" {
		w.add(`scope = ?`, string(q.Scope))
	}
	if q.Name != "" {
		w.add(`name = ?`, q.Name)
	}
	if q.Cursor != "" {
		sc, name, _ := ledger.DecodeNameCursor(q.Cursor)
		w.add(`(scope, name) > (?, ?)`, sc, name)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT spec FROM policies`+w.String()+` ORDER BY scope, name LIMIT ?`, append(w.args, limit+1)...)
	if err != nil {
		return page, wrap("sqlite ledger: policies", err)
	}
	defer rows.Close()
	for rows.Next() {
		p, err := scanPolicy(rows)
		if err != nil {
			return page, wrap("sqlite ledger: policies", err)
		}
		page.Items = append(page.Items, p)
	}
	if err := rows.Err(); err != nil {
		return page, wrap("sqlite ledger: policies", err)
	}
	if len(page.Items) > limit {
		page.Items = page.Items[:limit]
		last := page.Items[limit-1]
		page.NextCursor = ledger.EncodeNameCursor(string(last.Scope), last.Name)
	}
	return page, nil
}

// PolicyRevision is the policy change counter (ledger.PolicyStore).
func (s *Store) PolicyRevision(ctx context.Context) (int64, error) {
	var n int64
	err := s.r.QueryRowContext(ctx, `SELECT revision FROM policy_state WHERE id = 1`).Scan(&n)
	return n, wrap("sqlite ledger: policy revision", err)
}

// names runs f over names in groups small enough for SQLite's limit on
// bound parameters; a nil slice runs f once with no filter.
func names(list []string, f func(cond string, args []any) error) error {
	if list == nil {
		return f("", nil)
	}
	const n = 500
	for i := 0; i < len(list); i += n {
		chunk := list[i:min(i+n, len(list))]
		args := make([]any, len(chunk))
		for j, v := range chunk {
			args[j] = v
		}
		if err := f(`username IN (`+strings.TrimSuffix(strings.Repeat("?,", len(chunk)), ",")+`)`, args); err != nil {
			return err
		}
	}
	return nil
}

// and joins a condition to a WHERE clause that may be empty.
func and(base, cond string) string {
	switch {
	case cond == "":
		return base
	case base == "":
		return " WHERE " + cond
	}
	return base + " AND " + cond
}

// RefreshPolicyUsers updates the users' rows from their sessions
// (ledger.PolicyStore).
func (s *Store) RefreshPolicyUsers(ctx context.Context, users []string) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return wrap("sqlite ledger: refresh policy users", err)
	}
	defer tx.Rollback()
	err = names(users, func(cond string, args []any) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO policy_users (username, groupname, first_use, last_connect)
			SELECT s.username,
				(SELECT g.groupname FROM sessions g WHERE g.username = s.username AND g.state != 'refused'
					ORDER BY g.connected_at DESC, g.session_uid DESC LIMIT 1),
				min(s.connected_at), max(s.connected_at)
			FROM sessions s`+and(" WHERE s.state != 'refused' AND s.username != ''", strings.ReplaceAll(cond, "username", "s.username"))+`
			GROUP BY s.username
			ON CONFLICT (username) DO UPDATE SET
				groupname = CASE WHEN excluded.last_connect >= last_connect THEN excluded.groupname ELSE groupname END,
				first_use = min(first_use, excluded.first_use),
				last_connect = max(last_connect, excluded.last_connect)`, args...)
		return err
	})
	if err != nil {
		return wrap("sqlite ledger: refresh policy users", err)
	}
	return wrap("sqlite ledger: refresh policy users", tx.Commit())
}

// PolicyUsers returns users' rows (ledger.PolicyStore).
func (s *Store) PolicyUsers(ctx context.Context, users []string) ([]ledger.PolicyUser, error) {
	var out []ledger.PolicyUser
	err := names(users, func(cond string, args []any) error {
		rows, err := s.r.QueryContext(ctx, `SELECT username, groupname, first_use, last_connect FROM policy_users`+and("", cond)+` ORDER BY username`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var u ledger.PolicyUser
			var first, last int64
			if err := rows.Scan(&u.Username, &u.Groupname, &first, &last); err != nil {
				return err
			}
			u.FirstUse, u.LastConnect = time.UnixMicro(first).UTC(), time.UnixMicro(last).UTC()
			out = append(out, u)
		}
		return rows.Err()
	})
	return out, wrap("sqlite ledger: policy users", err)
}

// GroupMembers lists the users in groups (ledger.PolicyStore).
func (s *Store) GroupMembers(ctx context.Context, groups []string) ([]string, error) {
	var out []string
	err := names(groups, func(cond string, args []any) error {
		rows, err := s.r.QueryContext(ctx, `SELECT username FROM policy_users`+and("", strings.Replace(cond, "username", "groupname", 1))+` ORDER BY username`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var u string
			if err := rows.Scan(&u); err != nil {
				return err
			}
			out = append(out, u)
		}
		return rows.Err()
	})
	return out, wrap("sqlite ledger: group members", err)
}

// UsageSince sums usage per user from a day on (ledger.PolicyStore).
func (s *Store) UsageSince(ctx context.Context, from time.Time, users []string) (map[string]policy.Usage, error) {
	out := map[string]policy.Usage{}
	err := names(users, func(cond string, args []any) error {
		base := ""
		if !from.IsZero() {
			base = " WHERE day >= ?"
			args = append([]any{ledger.Day(from)}, args...)
		}
		rows, err := s.r.QueryContext(ctx, `SELECT username, sum(bytes_in), sum(bytes_out), sum(seconds) FROM usage_daily`+and(base, cond)+` GROUP BY username`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var u string
			var x policy.Usage
			if err := rows.Scan(&u, &x.In, &x.Out, &x.Seconds); err != nil {
				return err
			}
			out[u] = x
		}
		return rows.Err()
	})
	return out, wrap("sqlite ledger: usage since", err)
}

// UsageDays is usage per user per day (ledger.PolicyStore).
func (s *Store) UsageDays(ctx context.Context, from time.Time, users []string) (map[string][]ledger.DayUsage, error) {
	out := map[string][]ledger.DayUsage{}
	err := names(users, func(cond string, args []any) error {
		args = append([]any{ledger.Day(from)}, args...)
		// Grouped in the primary key's order (day, username, server_id):
		// one pass over the range, no sort.
		rows, err := s.r.QueryContext(ctx, `SELECT username, day, sum(bytes_in), sum(bytes_out), sum(seconds) FROM usage_daily`+
			and(" WHERE day >= ?", cond)+` GROUP BY day, username ORDER BY day, username`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var u, day string
			var d ledger.DayUsage
			if err := rows.Scan(&u, &day, &d.Usage.In, &d.Usage.Out, &d.Usage.Seconds); err != nil {
				return err
			}
			if d.Day, err = time.Parse(time.DateOnly, day); err != nil {
				return err
			}
			out[u] = append(out[u], d)
		}
		return rows.Err()
	})
	return out, wrap("sqlite ledger: usage days", err)
}

// OpenSessions lists open sessions per user (ledger.PolicyStore).
func (s *Store) OpenSessions(ctx context.Context, users []string) (map[string][]policy.OpenSession, error) {
	out := map[string][]policy.OpenSession{}
	err := names(users, func(cond string, args []any) error {
		rows, err := s.r.QueryContext(ctx, openSessionsSQL(cond), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var u string
			var o policy.OpenSession
			var uid, logical []byte
			var conn int64
			if err := rows.Scan(&u, &o.ServerID, &uid, &logical, &o.WorkerID, &conn); err != nil {
				return err
			}
			o.SessionUID, o.LogicalUID, o.ConnectedAt = us2(uid), us2(logical), time.UnixMicro(conn).UTC()
			out[u] = append(out[u], o)
		}
		return rows.Err()
	})
	return out, wrap("sqlite ledger: open sessions", err)
}

// openSessionsSQL reads open sessions (of the users cond names, or all)
// from the partial index sessions_open_user (schema 00008): open sessions
// only, in this order, whatever each user's history.
func openSessionsSQL(cond string) string {
	return `SELECT username, server_id, session_uid, logical_uid, worker_id, connected_at FROM sessions` +
		and(" WHERE state = 'open' AND username != ''", cond) + ` ORDER BY username, connected_at, session_uid`
}

// RefusedSince lists session-limit refusals (ledger.PolicyStore).
func (s *Store) RefusedSince(ctx context.Context, t time.Time, users []string) (map[string][]ledger.RefusedLogin, error) {
	out := map[string][]ledger.RefusedLogin{}
	err := names(users, func(cond string, args []any) error {
		args = append([]any{t.UnixMicro(), policy.RefusalSessionLimit + "%"}, args...)
		rows, err := s.r.QueryContext(ctx, `SELECT username, session_uid, server_id, connected_at, end_reason FROM sessions`+
			and(" WHERE state = 'refused' AND connected_at >= ? AND end_reason LIKE ?", cond)+` ORDER BY connected_at`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var u string
			var r ledger.RefusedLogin
			var uid []byte
			var at int64
			if err := rows.Scan(&u, &uid, &r.ServerID, &at, &r.Reason); err != nil {
				return err
			}
			r.SessionUID, r.At = us2(uid), time.UnixMicro(at).UTC()
			out[u] = append(out[u], r)
		}
		return rows.Err()
	})
	return out, wrap("sqlite ledger: refused logins", err)
}

// ResetUsage records a reset with its baseline (ledger.PolicyStore).
func (s *Store) ResetUsage(ctx context.Context, r ledger.UsageReset) (ledger.UsageReset, error) {
	if r.Kind != policy.KindQuota && r.Kind != policy.KindTime {
		return r, ledger.Errorf(ledger.ECodeInvalid, "kind: %q is not quota or time", r.Kind)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return r, wrap("sqlite ledger: reset usage", err)
	}
	defer tx.Rollback()
	q, args := `SELECT coalesce(sum(bytes_in), 0), coalesce(sum(bytes_out), 0), coalesce(sum(seconds), 0) FROM usage_daily WHERE username = ?`, []any{r.Username}
	if !r.WindowStart.IsZero() {
		q += ` AND day >= ?`
		args = append(args, ledger.Day(r.WindowStart))
	}
	if err := tx.QueryRowContext(ctx, q, args...).Scan(&r.Base.In, &r.Base.Out, &r.Base.Seconds); err != nil {
		return r, wrap("sqlite ledger: reset usage", err)
	}
	r.At = r.At.UTC().Truncate(time.Microsecond)
	if _, err := tx.ExecContext(ctx, `INSERT INTO policy_resets (username, kind, window_start, at, reset_by, base_in, base_out, base_seconds)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (username, kind) DO UPDATE SET window_start = excluded.window_start,
		at = excluded.at, reset_by = excluded.reset_by, base_in = excluded.base_in, base_out = excluded.base_out, base_seconds = excluded.base_seconds`,
		r.Username, r.Kind, us(r.WindowStart), r.At.UnixMicro(), r.By, r.Base.In, r.Base.Out, r.Base.Seconds); err != nil {
		return r, wrap("sqlite ledger: reset usage", err)
	}
	if err := bumpRevision(ctx, tx); err != nil {
		return r, wrap("sqlite ledger: reset usage", err)
	}
	return r, wrap("sqlite ledger: reset usage", tx.Commit())
}

// Resets returns the latest resets (ledger.PolicyStore).
func (s *Store) Resets(ctx context.Context, users []string) (map[string][]ledger.UsageReset, error) {
	out := map[string][]ledger.UsageReset{}
	err := names(users, func(cond string, args []any) error {
		rows, err := s.r.QueryContext(ctx, `SELECT username, kind, window_start, at, reset_by, base_in, base_out, base_seconds FROM policy_resets`+
			and("", cond)+` ORDER BY username, kind`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r ledger.UsageReset
			var ws sql.NullInt64
			var at int64
			if err := rows.Scan(&r.Username, &r.Kind, &ws, &at, &r.By, &r.Base.In, &r.Base.Out, &r.Base.Seconds); err != nil {
				return err
			}
			r.WindowStart, r.At = fromUS(ws), time.UnixMicro(at).UTC()
			out[r.Username] = append(out[r.Username], r)
		}
		return rows.Err()
	})
	return out, wrap("sqlite ledger: resets", err)
}

// SaveVerdicts stores verdicts (ledger.PolicyStore).
func (s *Store) SaveVerdicts(ctx context.Context, save []policy.Verdict, del []string) error {
	if len(save) == 0 && len(del) == 0 {
		return nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return wrap("sqlite ledger: save verdicts", err)
	}
	defer tx.Rollback()
	t := &ingestTx{tx: tx}
	if err := t.exec(ctx, `INSERT INTO policy_verdicts (username, allowed, reason, until, decided, body) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (username) DO UPDATE SET allowed = excluded.allowed, reason = excluded.reason, until = excluded.until,
		decided = excluded.decided, body = excluded.body`, len(save), func(i int) []any {
		v := save[i]
		b, _ := json.Marshal(v)
		var until any
		if v.Until != nil {
			until = v.Until.UnixMicro()
		}
		return []any{v.User, b2i(v.Allowed), v.Reason, until, v.Decided.UnixMicro(), string(b)}
	}); err != nil {
		return wrap("sqlite ledger: save verdicts", err)
	}
	if err := t.exec(ctx, `DELETE FROM policy_verdicts WHERE username = ?`, len(del), func(i int) []any { return []any{del[i]} }); err != nil {
		return wrap("sqlite ledger: save verdicts", err)
	}
	return wrap("sqlite ledger: save verdicts", tx.Commit())
}

// Verdicts returns every stored verdict (ledger.PolicyStore).
func (s *Store) Verdicts(ctx context.Context) (map[string]policy.Verdict, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT body FROM policy_verdicts`)
	if err != nil {
		return nil, wrap("sqlite ledger: verdicts", err)
	}
	defer rows.Close()
	out := map[string]policy.Verdict{}
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			return nil, wrap("sqlite ledger: verdicts", err)
		}
		var v policy.Verdict
		if err := json.Unmarshal([]byte(b), &v); err != nil {
			return nil, fmt.Errorf("sqlite ledger: stored verdict does not parse: %w", err)
		}
		out[v.User] = v
	}
	return out, wrap("sqlite ledger: verdicts", rows.Err())
}

// AddPolicyNotices records new notices (ledger.PolicyStore).
func (s *Store) AddPolicyNotices(ctx context.Context, ns []policy.Notice, webhook bool) ([]policy.Notice, error) {
	if len(ns) == 0 {
		return nil, nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, wrap("sqlite ledger: add notices", err)
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, `INSERT INTO policy_notices (notice_id, username, kind, time, body, webhook, attempts, last_error, next_attempt)
		VALUES (?, ?, ?, ?, ?, ?, 0, '', ?) ON CONFLICT DO NOTHING`)
	if err != nil {
		return nil, wrap("sqlite ledger: add notices", err)
	}
	defer st.Close()
	state := ledger.WebhookNone
	if webhook {
		state = ledger.WebhookPending
	}
	var fresh []policy.Notice
	for _, n := range ns {
		id, err := uuid.Parse(n.ID)
		if err != nil {
			return nil, ledger.Errorf(ledger.ECodeInvalid, "notice id %q is not a uuid", n.ID)
		}
		b, _ := json.Marshal(n)
		var next any
		if webhook {
			next = n.Time.UnixMicro()
		}
		r, err := st.ExecContext(ctx, id[:], n.User, n.Kind, n.Time.UnixMicro(), string(b), state, next)
		if err != nil {
			return nil, wrap("sqlite ledger: add notices", err)
		}
		if k, _ := r.RowsAffected(); k == 1 {
			fresh = append(fresh, n)
		}
	}
	return fresh, wrap("sqlite ledger: add notices", tx.Commit())
}

// PendingPolicyNotices returns due webhook deliveries (ledger.PolicyStore).
func (s *Store) PendingPolicyNotices(ctx context.Context, now time.Time, limit int) ([]policy.Notice, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT body FROM policy_notices WHERE webhook = 'pending' AND next_attempt <= ?
		ORDER BY next_attempt, notice_id LIMIT ?`, now.UnixMicro(), limit)
	if err != nil {
		return nil, wrap("sqlite ledger: pending notices", err)
	}
	defer rows.Close()
	var out []policy.Notice
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			return nil, wrap("sqlite ledger: pending notices", err)
		}
		var n policy.Notice
		if err := json.Unmarshal([]byte(b), &n); err != nil {
			return nil, fmt.Errorf("sqlite ledger: stored notice does not parse: %w", err)
		}
		out = append(out, n)
	}
	return out, wrap("sqlite ledger: pending notices", rows.Err())
}

// MarkPolicyNotice records a delivery attempt (ledger.PolicyStore).
func (s *Store) MarkPolicyNotice(ctx context.Context, id string, delivered bool, errMsg string, next time.Time) error {
	u, err := uuid.Parse(id)
	if err != nil {
		return ledger.Errorf(ledger.ECodeInvalid, "notice id %q is not a uuid", id)
	}
	state, at := ledger.WebhookPending, us(next)
	var deliveredAt any
	switch {
	case delivered:
		state, at, deliveredAt = ledger.WebhookDelivered, nil, time.Now().UnixMicro()
	case next.IsZero():
		state = ledger.WebhookFailed
	}
	_, err = s.w.ExecContext(ctx, `UPDATE policy_notices SET webhook = ?, attempts = attempts + 1, last_error = ?, next_attempt = ?,
		delivered_at = ? WHERE notice_id = ?`, state, errMsg, at, deliveredAt, u[:])
	return wrap("sqlite ledger: mark notice", err)
}

// PolicyNotices lists recorded notices (ledger.PolicyStore).
func (s *Store) PolicyNotices(ctx context.Context, q ledger.PolicyNoticeQuery) (ledger.Page[ledger.PolicyNoticeRow], error) {
	var page ledger.Page[ledger.PolicyNoticeRow]
	if err := q.Check(); err != nil {
		return page, err
	}
	limit := q.Limit
	var w where
	if q.User != "" {
		w.add(`username = ?`, q.User)
	}
	if q.Kind != "" {
		w.add(`kind = ?`, q.Kind)
	}
	if q.Cursor != "" {
		c, _ := ledger.DecodeCursor(q.Cursor)
		w.add(`(time, notice_id) < (?, ?)`, c.Time.UnixMicro(), ub(c.ID))
	}
	rows, err := s.r.QueryContext(ctx, `SELECT notice_id, time, body, webhook, attempts, last_error, delivered_at FROM policy_notices`+w.String()+
		` ORDER BY time DESC, notice_id DESC LIMIT ?`, append(w.args, limit+1)...)
	if err != nil {
		return page, wrap("sqlite ledger: notices", err)
	}
	defer rows.Close()
	var ids []string
	var times []time.Time
	for rows.Next() {
		var r ledger.PolicyNoticeRow
		var id []byte
		var t int64
		var b string
		var d sql.NullInt64
		if err := rows.Scan(&id, &t, &b, &r.Webhook, &r.Attempts, &r.LastError, &d); err != nil {
			return page, wrap("sqlite ledger: notices", err)
		}
		if err := json.Unmarshal([]byte(b), &r.Notice); err != nil {
			return page, fmt.Errorf("sqlite ledger: stored notice does not parse: %w", err)
		}
		r.DeliveredAt = fromUS(d)
		page.Items = append(page.Items, r)
		ids, times = append(ids, us2(id)), append(times, time.UnixMicro(t).UTC())
	}
	if err := rows.Err(); err != nil {
		return page, wrap("sqlite ledger: notices", err)
	}
	if len(page.Items) > limit {
		page.Items = page.Items[:limit]
		page.NextCursor = ledger.Cursor{Time: times[limit-1], ID: ids[limit-1]}.Encode()
	}
	return page, nil
}

// PutPolicyKick records a kick (ledger.PolicyStore).
func (s *Store) PutPolicyKick(ctx context.Context, k ledger.PolicyKick) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO policy_kicks (username, server_id, at, reason) VALUES (?, ?, ?, ?)
		ON CONFLICT (username, server_id) DO UPDATE SET at = excluded.at, reason = excluded.reason`,
		k.Username, k.ServerID, k.At.UnixMicro(), k.Reason)
	return wrap("sqlite ledger: put policy kick", err)
}

// DeletePolicyKick forgets a kick (ledger.PolicyStore).
func (s *Store) DeletePolicyKick(ctx context.Context, user, server string) error {
	_, err := s.w.ExecContext(ctx, `DELETE FROM policy_kicks WHERE username = ? AND server_id = ?`, user, server)
	return wrap("sqlite ledger: delete policy kick", err)
}

// PolicyKicks lists kicks ("" user: all) (ledger.PolicyStore).
func (s *Store) PolicyKicks(ctx context.Context, user string) ([]ledger.PolicyKick, error) {
	q, args := `SELECT username, server_id, at, reason FROM policy_kicks`, []any{}
	if user != "" {
		q, args = q+` WHERE username = ?`, append(args, user)
	}
	rows, err := s.r.QueryContext(ctx, q+` ORDER BY username, server_id`, args...)
	if err != nil {
		return nil, wrap("sqlite ledger: policy kicks", err)
	}
	defer rows.Close()
	var out []ledger.PolicyKick
	for rows.Next() {
		var k ledger.PolicyKick
		var at int64
		if err := rows.Scan(&k.Username, &k.ServerID, &at, &k.Reason); err != nil {
			return nil, wrap("sqlite ledger: policy kicks", err)
		}
		k.At = time.UnixMicro(at).UTC()
		out = append(out, k)
	}
	return out, wrap("sqlite ledger: policy kicks", rows.Err())
}
