package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/pgtest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/postgres"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
)

// The generated fleet of the query benchmark: N sessions over 400 days on
// 20 servers (a session every 400d/N), 100,000 users, each server's VPN
// pool 5,000 addresses (so an address is reused about N/100,000 times),
// 10 accounting samples per session, usage_daily from the sessions.
const (
	qServers = 20
	qUsers   = 100000
	qPool    = 5000
	qSamples = 10
	qDays    = 400
)

var qStart = time.Date(2025, 10, 1, 0, 0, 0, 0, time.UTC)

// step is the time between two sessions' connects.
func qStep(n int) time.Duration {
	return time.Duration(int64(qDays) * 24 * int64(time.Hour) / int64(n))
}

// the expressions of session g (an integer from 0) in SQL, the same on
// both engines but for the functions each names differently.
func qUser(g string) string   { return "'user' || ((" + g + " * 7919) % " + fmt.Sprint(qUsers) + ")" }
func qServer(g string) string { return "'vpn' || (" + g + " % " + fmt.Sprint(qServers) + ")" }
func qVPN(g string) string {
	// 10.<server>.<hi>.<lo>: 5000 addresses per server.
	return fmt.Sprintf("'10.' || (%[1]s %% %[2]d) || '.' || ((%[1]s / %[2]d) %% %[3]d / 250) || '.' || (2 + (%[1]s / %[2]d) %% %[3]d %% 250)", g, qServers, qPool)
}
func qReal(g string) string {
	return fmt.Sprintf("'203.0.' || ((%[1]s * 31) %% 256) || '.' || (1 + (%[1]s * 17) %% 254)", g)
}

// qDuration is session g's length in seconds: 5 to 65 minutes.
func qDuration(g string) string { return "(300 + ((" + g + " * 37) % 3600))" }

// vpnOf and durOf compute the same in Go, for the questions.
func vpnOf(g int) string {
	s, i := g%qServers, (g/qServers)%qPool
	return fmt.Sprintf("10.%d.%d.%d", s, i/250, 2+i%250)
}
func durOf(g int) time.Duration { return time.Duration(300+(g*37)%3600) * time.Second }
func userOf(g int) string       { return fmt.Sprintf("user%d", (g*7919)%qUsers) }

// TestBenchQueries: who --ip --at, a user's history first page and usage
// of all users over a month, on generated data (LEDGER_BENCH_SESSIONS,
// default 10 million sessions and 10 samples each), on both engines. The
// data is generated once with each database's own bulk path and kept in
// LEDGER_BENCH_CACHE between runs.
func TestBenchQueries(t *testing.T) {
	benchEnv(t, "LEDGER_BENCH_QUERIES")
	n := envInt("LEDGER_BENCH_SESSIONS", 10000000)
	cache := os.Getenv("LEDGER_BENCH_CACHE")
	if cache == "" {
		cache = "/var/tmp/ocserv-telemetry-ledger-bench"
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	out(t, "| engine | sessions | samples | generated in | size per million sessions | who --ip --at p50 / p99 | history --user first page p50 / p99 | usage, all users, one month (median of 5) |")
	out(t, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, engine := range benchEngines() {
		var st ledger.Store
		var gen time.Duration
		var size int64
		switch engine {
		case "sqlite":
			path := filepath.Join(cache, fmt.Sprintf("sqlite-%d.db", n))
			gen = genSQLite(t, path, n)
			// Data cached by an older build: its migrations bring it
			// up to date (and fill what they add).
			if _, err := sqlite.Migrate(ctx, path); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(path); err == nil {
				size = fi.Size()
			}
			warm(t, "sqlite", path)
			s, err := sqlite.Open(ctx, path, sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			st = s
		case "postgres":
			c, err := pgtest.StartAt(filepath.Join(cache, "pg"), pgtest.Options{Durable: true, Settings: []string{"shared_buffers=1GB", "max_wal_size=8GB"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.StopKeep()
			dsn := c.DSN(fmt.Sprintf("bench%d", n))
			gen = genPG(t, c, dsn, n)
			if _, err := postgres.Migrate(ctx, dsn); err != nil {
				t.Fatal(err)
			}
			if conn, err := pgx.Connect(ctx, dsn); err == nil {
				conn.QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&size)
				conn.Close(ctx)
			}
			warm(t, "postgres", dsn)
			s, err := postgres.Open(ctx, dsn, postgres.Options{})
			if err != nil {
				t.Fatal(err)
			}
			st = s
		}
		who, hist, usage := runQueries(t, st, n)
		st.Close()
		out(t, "| %s | %d | %d | %s | %.0f MiB | %s / %s | %s / %s | %s |", engine, n, n*qSamples, fmtGen(gen), float64(size)/(1<<20)/(float64(n)/1e6),
			ms(percentile(who, 0.5)), ms(percentile(who, 0.99)), ms(percentile(hist, 0.5)), ms(percentile(hist, 0.99)), ms(percentile(usage, 0.5)))
	}
}

// warm reads the sessions, their counters, the usage rows and the indexes
// the questions use once, so the figures are those of a running ledger
// whose working set is in the page cache, not of the first reads after
// generating a hundred million samples.
func warm(t *testing.T, engine, dsn string) {
	ctx := context.Background()
	begin := time.Now()
	qs := []string{
		`SELECT sum(length(user_agent)) FROM sessions`,
		`SELECT count(*) FROM session_counters`,
		`SELECT sum(bytes_in) FROM usage_daily`,
		`SELECT sum(bytes_in) FROM usage_monthly`,
	}
	if engine == "sqlite" {
		qs = append(qs, `SELECT count(*) FROM sessions INDEXED BY sessions_vpn4 WHERE vpn_ipv4 IS NOT NULL`,
			`SELECT count(*) FROM sessions INDEXED BY sessions_user WHERE username >= ''`,
			`SELECT count(*) FROM sessions INDEXED BY sessions_real WHERE ip_real IS NOT NULL`)
		db, err := sql.Open("sqlite", "file:"+dsn+"?_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, q := range qs {
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	} else {
		qs = append(qs, `SET enable_seqscan = off`, `SELECT count(*) FROM sessions WHERE vpn_ipv4 IS NOT NULL`,
			`SELECT count(*) FROM sessions WHERE username >= ''`, `SELECT count(*) FROM sessions WHERE ip_real IS NOT NULL`)
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		for _, q := range qs {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	t.Logf("%s: warmed in %s", engine, time.Since(begin).Round(time.Millisecond))
}

func fmtGen(d time.Duration) string {
	if d < 0 {
		return "cached"
	}
	return d.Round(time.Second).String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func runQueries(t *testing.T, st ledger.Store, n int) (who, hist, usage []time.Duration) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(9, 9))
	step := qStep(n)
	// Warm up: the figures are for a running service, not a cold start.
	for i := 0; i < 200; i++ {
		g := r.IntN(n)
		st.Who(ctx, ledger.WhoQuery{IP: vpnOf(g), At: qStart.Add(time.Duration(g) * step)})
		st.History(ctx, ledger.HistoryQuery{User: userOf(g)})
	}
	for i := 0; i < 1000; i++ {
		g := r.IntN(n)
		at := qStart.Add(time.Duration(g)*step + durOf(g)/2)
		begin := time.Now()
		l, err := st.Who(ctx, ledger.WhoQuery{IP: vpnOf(g), At: at})
		who = append(who, time.Since(begin))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, x := range l {
			found = found || x.Username == userOf(g)
		}
		if !found {
			t.Fatalf("who %s at %s: %d sessions, not %s's", vpnOf(g), at, len(l), userOf(g))
		}
	}
	for i := 0; i < 1000; i++ {
		u := userOf(r.IntN(n))
		begin := time.Now()
		p, err := st.History(ctx, ledger.HistoryQuery{User: u})
		hist = append(hist, time.Since(begin))
		if err != nil || len(p.Items) == 0 {
			t.Fatalf("history %s: %d %v", u, len(p.Items), err)
		}
	}
	month := qStart.AddDate(0, 6, 0)
	for i := 0; i < 5; i++ {
		begin := time.Now()
		rows, err := st.Usage(ctx, ledger.UsageQuery{From: month, To: month.AddDate(0, 1, 0)})
		usage = append(usage, time.Since(begin))
		if err != nil || len(rows) == 0 {
			t.Fatalf("usage: %d rows %v", len(rows), err)
		}
	}
	return who, hist, usage
}

// loadIndexes are dropped for the bulk load and made again after it
// (index builds are far faster than row-by-row maintenance).
var loadIndexes = []string{"sessions_user", "sessions_server", "sessions_connected", "sessions_logical", "sessions_ended",
	"sessions_vpn4", "sessions_vpn6", "sessions_real", "sessions_open", "sessions_open_user", "samples_observed", "usage_daily_user"}

// indexDDL reads the definitions of loadIndexes from the migrated
// database (def gives one index's CREATE INDEX), before they are dropped:
// the indexes made again after the load are those of the latest schema.
func indexDDL(t *testing.T, def func(name string) (string, error)) []string {
	var out []string
	for _, ix := range loadIndexes {
		d, err := def(ix)
		if err != nil || d == "" {
			t.Fatalf("definition of index %s: %q %v", ix, d, err)
		}
		out = append(out, d)
	}
	return out
}

func genSQLite(t *testing.T, path string, n int) time.Duration {
	ctx := context.Background()
	if _, err := os.Stat(path + ".done"); err == nil {
		return -1
	}
	os.Remove(path)
	os.Remove(path + "-wal")
	if _, err := sqlite.Migrate(ctx, path); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)&_pragma=cache_size(-1048576)&_pragma=temp_store(FILE)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ddl := indexDDL(t, func(name string) (d string, err error) {
		err = db.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?`, name).Scan(&d)
		return d, err
	})
	begin := time.Now()
	start, step := qStart.UnixMicro(), qStep(n).Microseconds()
	stmts := []string{}
	for _, ix := range loadIndexes {
		stmts = append(stmts, "DROP INDEX "+ix)
	}
	g := "g"
	stmts = append(stmts,
		// Session uids increase with g, as the hook's UUIDv7s increase
		// with time: every table is then written in key order.
		fmt.Sprintf(`INSERT INTO sessions SELECT unhex(printf('01%%030x', g)), unhex(printf('01%%030x', g)), %s, 'spool', %s, 'staff', 'default', 1000 + g %% 60000, 'vpns' || (g %% 200),
			%s, '198.51.100.1', %s, '10.255.0.1', NULL, NULL, 'laptop', 'Open AnyConnect VPN Agent v9.12', '', '', '',
			%d + g * %d, 0, CASE WHEN g >= %d THEN NULL ELSE %d + g * %d + %s * 1000000 END, 0,
			CASE WHEN g >= %d THEN 'open' ELSE 'disconnect' END, '', 'connect'
			FROM (WITH RECURSIVE c(g) AS (SELECT 0 UNION ALL SELECT g + 1 FROM c WHERE g + 1 < %d) SELECT g FROM c)`,
			qServer(g), qUser(g), qReal(g), qVPN(g), start, step, n-1000, start, step, qDuration(g), n-1000, n),
		`INSERT INTO session_counters SELECT session_uid, (rowid * 7919) % 50000000, (rowid * 104729) % 200000000,
			coalesce((ended_at - connected_at) / 1000000, 0), 10, connected_at + 3000000000, 1, 0, 0 FROM sessions`,
		`INSERT INTO samples SELECT s.session_uid, k.k, s.server_id, s.connected_at + k.k * 300000000, k.k * 1000, k.k * 4000, 1000, 4000, k.k * 300
			FROM sessions s CROSS JOIN (WITH RECURSIVE c(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM c WHERE k < 10) SELECT k FROM c) k`,
		`INSERT INTO usage_daily SELECT date(s.connected_at / 1000000, 'unixepoch'), s.username, s.server_id,
			sum(c.bytes_in), sum(c.bytes_out), sum(c.seconds), count(*) FROM sessions s JOIN session_counters c USING (session_uid) GROUP BY 1, 2, 3`,
		`INSERT INTO usage_monthly SELECT substr(day, 1, 7), username, sum(bytes_in), sum(bytes_out), sum(seconds), sum(sessions)
			FROM usage_daily GROUP BY 1, 2`,
	)
	stmts = append(stmts, ddl...)
	stmts = append(stmts, "ANALYZE")
	for _, q := range stmts {
		qb := time.Now()
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		t.Logf("sqlite: %s… %s", label(q), time.Since(qb).Round(time.Millisecond))
	}
	if _, err := db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(begin)
	os.WriteFile(path+".done", []byte(took.String()), 0o644)
	return took
}

func genPG(t *testing.T, c *pgtest.Cluster, dsn string, n int) time.Duration {
	ctx := context.Background()
	name := fmt.Sprintf("bench%d", n)
	if b, err := os.ReadFile(filepath.Join(c.Dir, name+".done")); err == nil && len(b) > 0 {
		return -1
	}
	c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	if err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	ddl := indexDDL(t, func(name string) (d string, err error) {
		err = conn.QueryRow(ctx, `SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND indexname = $1`, name).Scan(&d)
		return d, err
	})
	begin := time.Now()
	stmts := []string{"SET maintenance_work_mem = '1GB'", "SET synchronous_commit = off"}
	for _, ix := range loadIndexes {
		stmts = append(stmts, "DROP INDEX "+ix)
	}
	g := "g"
	stepUS := qStep(n).Microseconds()
	stmts = append(stmts,
		fmt.Sprintf(`INSERT INTO sessions SELECT lpad(to_hex(g), 32, '0')::uuid, lpad(to_hex(g), 32, '0')::uuid, %s, 'spool', %s, 'staff', 'default', 1000 + g %% 60000, 'vpns' || (g %% 200),
			%s, '198.51.100.1', %s, '10.255.0.1', NULL, NULL, 'laptop', 'Open AnyConnect VPN Agent v9.12', '', '', '',
			timestamptz '%s' + g * interval '%d microseconds', false,
			CASE WHEN g >= %d THEN NULL ELSE timestamptz '%s' + g * interval '%d microseconds' + %s * interval '1 second' END, false,
			CASE WHEN g >= %d THEN 'open' ELSE 'disconnect' END, '', 'connect'
			FROM generate_series(0::bigint, %d) g`,
			qServer(g), qUser(g), qReal(g), qVPN(g), qStart.Format(time.RFC3339), stepUS, n-1000, qStart.Format(time.RFC3339), stepUS, qDuration(g), n-1000, n-1),
		`INSERT INTO session_counters SELECT session_uid, (hashtext(session_uid::text) & 65535) * 700, (hashtext(session_uid::text) & 65535) * 3000,
			coalesce(extract(epoch FROM ended_at - connected_at)::bigint, 0), 10, connected_at + interval '50 minutes', true, 0, 0 FROM sessions`,
		`INSERT INTO samples SELECT s.session_uid, k, s.server_id, s.connected_at + k * interval '5 minutes', k * 1000, k * 4000, 1000, 4000, k * 300
			FROM sessions s CROSS JOIN generate_series(1, 10) k`,
		`INSERT INTO usage_daily SELECT (s.connected_at AT TIME ZONE 'UTC')::date, s.username, s.server_id,
			sum(c.bytes_in), sum(c.bytes_out), sum(c.seconds), count(*) FROM sessions s JOIN session_counters c USING (session_uid) GROUP BY 1, 2, 3`,
		`INSERT INTO usage_monthly SELECT date_trunc('month', day)::date, username, sum(bytes_in), sum(bytes_out), sum(seconds), sum(sessions)
			FROM usage_daily GROUP BY 1, 2`,
	)
	stmts = append(stmts, ddl...)
	stmts = append(stmts, "VACUUM ANALYZE")
	for _, q := range stmts {
		qb := time.Now()
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		t.Logf("postgres: %s… %s", label(q), time.Since(qb).Round(time.Millisecond))
	}
	took := time.Since(begin)
	os.WriteFile(filepath.Join(c.Dir, name+".done"), []byte(took.String()), 0o644)
	return took
}

func label(q string) string {
	f := strings.Fields(q)
	return strings.Join(f[:min(3, len(f))], " ")
}
