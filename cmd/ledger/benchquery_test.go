package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pressly/goose/v3"

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
	var pgWarm int64
	cold := os.Getenv("LEDGER_BENCH_COLD_ROWS") == "1"
	if cold && os.Geteuid() != 0 {
		t.Log("LEDGER_BENCH_COLD_ROWS=1 needs root (it empties the machine's page cache): no cold rows")
		cold = false
	}
	out(t, "| engine | cache | sessions | samples | generated in | size per million sessions | who --ip --at p50 / p99 | history --user first page p50 / p99 | usage, all users, one month |")
	out(t, "|---|---|---:|---:|---:|---:|---:|---:|---:|")
	type coldRun struct {
		engine string
		open   func() ledger.Store
	}
	var colds []coldRun
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
			catchUpSQLite(t, path)
			if _, err := sqlite.Migrate(ctx, path); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(path); err == nil {
				size = fi.Size()
			}
			open := func() ledger.Store {
				s, err := sqlite.Open(ctx, path, sqlite.Options{})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			if cold {
				colds = append(colds, coldRun{engine, open})
			}
			warm(t, "sqlite", path)
			st = open()
		case "postgres":
			pgOpts := pgtest.Options{Durable: true, Settings: []string{"shared_buffers=" + pgSharedBuffers, "max_wal_size=8GB"}}
			c, err := pgtest.StartAt(filepath.Join(cache, "pg"), pgOpts)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { c.StopKeep() }()
			dsn := c.DSN(fmt.Sprintf("bench%d", n))
			gen = genPG(t, c, dsn, n)
			if _, err := postgres.Migrate(ctx, dsn); err != nil {
				t.Fatal(err)
			}
			if conn, err := pgx.Connect(ctx, dsn); err == nil {
				conn.QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&size)
				conn.Close(ctx)
			}
			open := func() ledger.Store {
				s, err := postgres.Open(ctx, dsn, postgres.Options{})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			if cold {
				// A cold start of the database server too: its
				// shared_buffers are emptied by a restart.
				colds = append(colds, coldRun{engine, func() ledger.Store {
					if err := c.StopKeep(); err != nil {
						t.Fatal(err)
					}
					dropCaches(t)
					if c, err = pgtest.StartAt(filepath.Join(cache, "pg"), pgOpts); err != nil {
						t.Fatal(err)
					}
					return open()
				}})
			}
			pgWarm = warm(t, "postgres", dsn)
			st = open()
		}
		who, hist, usage := runQueries(t, st, n, true, 1000)
		st.Close()
		out(t, "| %s | warm | %d | %d | %s | %.0f MiB | %s / %s | %s / %s | %s (median of 5) |", engine, n, n*qSamples, fmtGen(gen), float64(size)/(1<<20)/(float64(n)/1e6),
			ms(percentile(who, 0.5)), ms(percentile(who, 0.99)), ms(percentile(hist, 0.5)), ms(percentile(hist, 0.99)), ms(percentile(usage, 0.5)))
	}
	// Cold rows: the machine's page cache emptied (and PostgreSQL
	// restarted), no warm-up, then fewer questions than the warm rows, of
	// which the first ones find nothing in memory: a ledger just started.
	for _, cr := range colds {
		if cr.engine == "sqlite" {
			dropCaches(t)
		}
		st := cr.open()
		who, hist, usage := runQueries(t, st, n, false, coldQuestions)
		st.Close()
		out(t, "| %s | cold | %d | %d | | | %s / %s | %s / %s | %s (the first, cold) |", cr.engine, n, n*qSamples,
			ms(percentile(who, 0.5)), ms(percentile(who, 0.99)), ms(percentile(hist, 0.5)), ms(percentile(hist, 0.99)), ms(usage[0]))
	}
	if pgWarm > 0 {
		out(t, "")
		out(t, "PostgreSQL runs with `shared_buffers=%s`; the relations its questions read (%s) are %.0f MiB per million sessions, read into shared_buffers before the questions.",
			pgSharedBuffers, strings.Join(pgWorkingSet, ", "), float64(pgWarm)/(1<<20)/(float64(n)/1e6))
	}
}

// pgSharedBuffers is the benchmark cluster's shared_buffers: room for the
// questions' working set (pgWorkingSet; the table's note gives its size)
// as docs/ledger.md recommends for a fleet ledger's PostgreSQL. With
// 1GB, the rest in the page cache, the p99s were reads from disk: the
// page cache is the whole machine's (the SQLite data set, other
// processes' files) and does not reliably keep gigabytes of which one
// question touches a hundred random pages.
const pgSharedBuffers = "8GB"

// pgWorkingSet is what the questions read on PostgreSQL: who's address
// indexes (vpn4 and real: the benchmark asks about either), the sessions
// and counters fetched by their primary keys, history's user index and
// the same rows, and usage_monthly (a whole month of every user). The
// order is pg_prewarm's: the rows first, then the indexes.
var pgWorkingSet = []string{"sessions", "session_counters", "usage_monthly", "sessions_pkey", "session_counters_pkey",
	"sessions_user", "sessions_vpn4", "sessions_real", "usage_monthly_pkey"}

// warm reads the sessions, their counters, the usage rows and the indexes
// the questions use once, so the figures are those of a running ledger
// whose working set is in memory, not of the first reads after
// generating a hundred million samples (samples, which no question
// reads, are left out). On SQLite it reads them through the page cache;
// on PostgreSQL it loads every relation of pgWorkingSet into
// shared_buffers with pg_prewarm, as a running ledger's questions and
// ingest keep them there, and returns their size. (The earlier
// sequential scans went through a small ring of buffers into the page
// cache only, and left out the primary keys by which who and history
// fetch every row.)
//
// LEDGER_BENCH_COLD=1 leaves it out, for a figure of a ledger just
// started on a cold page cache (drop the machine's caches first; only the
// questions' own warm-up then reads ahead of the timed ones).
func warm(t *testing.T, engine, dsn string) int64 {
	ctx := context.Background()
	begin := time.Now()
	if os.Getenv("LEDGER_BENCH_COLD") == "1" {
		t.Logf("%s: not warmed (LEDGER_BENCH_COLD=1)", engine)
		return 0
	}
	if engine == "sqlite" {
		qs := []string{
			`SELECT sum(length(user_agent)) FROM sessions`,
			`SELECT count(*) FROM session_counters`,
			`SELECT sum(bytes_in) FROM usage_daily`,
			`SELECT sum(bytes_in) FROM usage_monthly`,
			`SELECT count(*) FROM sessions INDEXED BY sessions_vpn4 WHERE vpn_ipv4 IS NOT NULL`,
			`SELECT count(*) FROM sessions INDEXED BY sessions_user WHERE username >= ''`,
			`SELECT count(*) FROM sessions INDEXED BY sessions_real WHERE ip_real IS NOT NULL`,
		}
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
		t.Logf("%s: warmed in %s", engine, time.Since(begin).Round(time.Millisecond))
		return 0
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_prewarm`); err != nil {
		t.Fatalf("pg_prewarm (contrib, in Debian's postgresql package): %v", err)
	}
	var total, buffers int64
	if err := conn.QueryRow(ctx, `SELECT pg_size_bytes(current_setting('shared_buffers'))`).Scan(&buffers); err != nil {
		t.Fatal(err)
	}
	for _, rel := range pgWorkingSet {
		var blocks, size int64
		if err := conn.QueryRow(ctx, `SELECT pg_prewarm($1::regclass, 'buffer'), pg_relation_size($1::regclass)`, rel).Scan(&blocks, &size); err != nil {
			t.Fatalf("warm %s: %v", rel, err)
		}
		total += size
	}
	if total > buffers {
		// pg_prewarm evicted the first relations for the last ones.
		t.Logf("postgres: the working set (%d MiB) is larger than shared_buffers (%d MiB)", total>>20, buffers>>20)
	}
	t.Logf("%s: warmed %.0f MiB (%s) in %s", engine, float64(total)/(1<<20), strings.Join(pgWorkingSet, ", "), time.Since(begin).Round(time.Millisecond))
	return total
}

// catchUpSQLite applies to cached SQLite data the migrations numbered
// below its version that it lacks: one merged from another branch after
// the data was made (00004, the policy tables, landed after data made at
// version 5). goose applies those only when asked to, out of order, and
// the ledger never asks (it refuses such a database); the benchmark's
// cache is not worth 15 minutes of generation for tables of its own that
// no question reads. A migration that changed existing tables could not
// be applied out of order like this: delete the cache to regenerate it.
func catchUpSQLite(t *testing.T, path string) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectSQLite3, db, os.DirFS(filepath.Join("..", "..", "ledger", "sqlite", "migrations")),
		goose.WithDisableGlobalRegistry(true), goose.WithAllowOutofOrder(true))
	if err != nil {
		t.Fatal(err)
	}
	cur, err := p.GetDBVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	status, err := p.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range status {
		if m.State == goose.StatePending && m.Source.Version < cur {
			if _, err := p.ApplyVersion(ctx, m.Source.Version, true); err != nil {
				t.Fatalf("cached SQLite data: migration %d out of order: %v", m.Source.Version, err)
			}
			t.Logf("sqlite: cached data at version %d lacked migration %d: applied", cur, m.Source.Version)
		}
	}
}

func fmtGen(d time.Duration) string {
	if d < 0 {
		return "cached"
	}
	return d.Round(time.Second).String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// coldQuestions is how many questions of each kind a cold row asks.
const coldQuestions = 200

// dropCaches empties the machine's page cache (root only; every process's
// cached files, which is why the script runs under the shared lock).
func dropCaches(t *testing.T) {
	exec.Command("sync").Run()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		t.Fatalf("drop the page cache: %v", err)
	}
}

// runQueries asks questions of each kind (who, history, 5 usage) and
// times them; warmup first asks 200 untimed ones (a running service).
// The random sequence of a cold run differs from the warm run's, so the
// warm run's questions do not make the cold run's pages warm.
func runQueries(t *testing.T, st ledger.Store, n int, warmup bool, questions int) (who, hist, usage []time.Duration) {
	ctx := context.Background()
	seed := uint64(9)
	if !warmup {
		seed = 11
	}
	r := rand.New(rand.NewPCG(seed, seed))
	step := qStep(n)
	// Warm up: the figures are for a running service, not a cold start.
	for i := 0; warmup && i < 200; i++ {
		g := r.IntN(n)
		st.Who(ctx, ledger.WhoQuery{IP: vpnOf(g), At: qStart.Add(time.Duration(g) * step)})
		st.History(ctx, ledger.HistoryQuery{User: userOf(g)})
	}
	for i := 0; i < questions; i++ {
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
	for i := 0; i < questions; i++ {
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
	// A ledger that has run for a year has had its old rows vacuumed and
	// frozen by autovacuum long ago (hint bits set, visibility map all
	// visible, nothing left for autovacuum to do) and its dirty pages
	// checkpointed: the generated one is brought to the same state, so
	// the questions are not measured against a first VACUUM's work.
	stmts = append(stmts, "VACUUM (FREEZE, ANALYZE)", "CHECKPOINT")
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
