package console

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/engine"
)

// The page benchmark's fleet: 10 million sessions of 20 000 users on 50
// servers over 400 days (the default retention), 200 users online per
// server, 100 000 audit entries.
var benchSessions = func() int {
	if n, err := strconv.Atoi(os.Getenv("CONSOLE_BENCH_SESSIONS")); err == nil && n > 0 {
		return n
	}
	return 10_000_000
}()

const (
	benchUsers   = 20_000
	benchServers = 50
	benchDays    = 400
	benchOnline  = 200
	benchAudit   = 100_000
)

// benchDB makes (once; it is kept and reused) a SQLite ledger with the
// benchmark's fleet, written with SQL directly: applying 20 million events
// through the ledger would take far longer and measure the ingest, which
// the ledger's own benchmark does. The schema is the ledger's (its
// migrations), so the indexes the queries use are the real ones.
func benchDB(b *testing.B, path string, end time.Time) {
	ctx := context.Background()
	if _, err := os.Stat(path); err == nil {
		return
	}
	tmp := path + ".building"
	os.Remove(tmp)
	if _, err := sqlite.Migrate(ctx, tmp); err != nil {
		b.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+tmp+"?_pragma=journal_mode(wal)&_pragma=synchronous(off)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	exec := func(q string, args ...any) {
		start := time.Now()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			b.Fatalf("%v\n%s", err, q)
		}
		b.Logf("%s: %s", time.Since(start).Round(time.Millisecond), q[:min(len(q), 60)])
	}
	// Indexes after the rows: building them once is much faster.
	var idx []string
	rows, _ := db.QueryContext(ctx, `SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('sessions', 'usage_daily', 'audit') AND sql IS NOT NULL`)
	for rows.Next() {
		var s string
		rows.Scan(&s)
		idx = append(idx, s)
	}
	rows.Close()
	for _, s := range idx {
		var name string
		fmt.Sscanf(s[len("CREATE INDEX "):], "%s", &name)
		exec("DROP INDEX " + name)
	}
	startUS := end.Add(-benchDays * 24 * time.Hour).UnixMicro()
	spanUS := end.Add(-time.Hour).UnixMicro() - startUS
	// Session n: user n*7919 % users, server n % servers, connected
	// evenly over the span, lasting 1 minute to 3 hours; the newest ones
	// still open. VPN addresses are reused across users (a /16 per
	// server), real addresses come from a pool.
	exec(`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
INSERT INTO sessions SELECT
  randomblob(16), randomblob(16), 'vpn' || (i % ?2), 'spool', 'user' || ((i * 7919) % ?3), 'staff', 'default', 1000 + i % 30000, 'vpns' || (i % 200),
  '198.51.' || ((i / 256) % 256) || '.' || (i % 256), '203.0.113.1',
  '10.' || (i % ?2) || '.' || ((i / 250) % 256) || '.' || (2 + i % 250), '10.' || (i % ?2) || '.0.1', NULL, NULL,
  'host', 'Open AnyConnect VPN Agent v9.01-3', '', '', '',
  ?4 + i * (?5 / ?1), 0,
  CASE WHEN i >= ?1 - ?6 THEN NULL ELSE ?4 + i * (?5 / ?1) + (60 + (i * 104729) % 10800) * 1000000 END, 0,
  CASE WHEN i >= ?1 - ?6 THEN 'open' ELSE 'disconnect' END, '', 'connect'
FROM n`, benchSessions-1, benchServers, benchUsers, startUS, spanUS, benchServers*benchOnline)
	// The counters live in their own narrow table (as the ledger keeps
	// them); session n is row n+1 of sessions, written in order.
	exec(`INSERT INTO session_counters SELECT session_uid,
  ((rowid - 1) * 31) % 50000000, ((rowid - 1) * 97) % 500000000, 60 + ((rowid - 1) * 104729) % 10800, 0, NULL,
  CASE WHEN state = 'open' THEN 0 ELSE 1 END, 0, 0
FROM sessions`)
	exec(`INSERT INTO usage_daily SELECT date(s.connected_at / 1000000, 'unixepoch'), s.username, s.server_id,
  sum(c.bytes_in), sum(c.bytes_out), sum(c.seconds), count(*) FROM sessions s JOIN session_counters c USING (session_uid) GROUP BY 1, 2, 3`)
	exec(`INSERT INTO usage_monthly SELECT substr(day, 1, 7), username, sum(bytes_in), sum(bytes_out), sum(seconds), sum(sessions)
  FROM usage_daily GROUP BY 1, 2`)
	exec(`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
INSERT INTO audit SELECT randomblob(16), 'vpn' || (i % ?2), ?3 + i * (?4 / ?1), 'done', CASE i % 3 WHEN 0 THEN 'kick' WHEN 1 THEN 'disconnect' ELSE 'unkick' END,
  'ocserv.cmd.vpn' || (i % ?2) || '.kick', 'UCONSOLE', 'console', 'read-write', 1, '', '', json_object('user', 'user' || ((i * 13) % ?5)), 3, 0,
  CASE WHEN i % 2 = 0 THEN 'olga' ELSE '' END, 'user' || ((i * 13) % ?5)
FROM n`, benchAudit-1, benchServers, startUS, spanUS, benchUsers)
	for _, s := range idx {
		exec(s)
	}
	exec("ANALYZE")
	db.Close()
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	os.Remove(tmp + "-wal")
	os.Remove(tmp + "-shm")
}

// benchPolicies gives every user of the fleet a policy of their own (a
// monthly quota and an expiry) and the group they are all in a session
// limit, once per database, and fills the users' policy rows from their
// sessions as the engine keeps them: the user page with policies on then
// reads a fleet where every user is limited.
func benchPolicies(b *testing.B, store *sqlite.Store, end time.Time) {
	ctx := context.Background()
	page, err := store.Policies(ctx, ledger.PolicyQuery{Limit: 1})
	if err != nil {
		b.Fatal(err)
	}
	if len(page.Items) > 0 {
		return
	}
	start := time.Now()
	monthly := policy.Period{Kind: policy.Monthly, Day: 1}
	for u := 0; u < benchUsers; u++ {
		p := policy.Policy{Scope: policy.ScopeUser, Name: "user" + strconv.Itoa(u), UpdatedBy: "bench",
			Quota:  &policy.Quota{Bytes: 50 << 30, Direction: policy.DirTotal, Period: monthly},
			Expiry: &policy.Expiry{At: end.AddDate(0, 0, 30+u%60)}}
		if err := store.PutPolicy(ctx, p, end); err != nil {
			b.Fatal(err)
		}
	}
	if err := store.PutPolicy(ctx, policy.Policy{Scope: policy.ScopeGroup, Name: "staff", UpdatedBy: "bench",
		Sessions: &policy.SessionLimit{Max: 2, OnExcess: policy.ExcessRefuse}}, end); err != nil {
		b.Fatal(err)
	}
	if err := store.RefreshPolicyUsers(ctx, nil); err != nil {
		b.Fatal(err)
	}
	b.Logf("%s: %d user policies, a group's, the users' policy rows", time.Since(start).Round(time.Millisecond), benchUsers)
}

// BenchmarkConsolePages measures the server-side time of the overview, a
// user page (without and with policies) and a who search at 10 million
// sessions (handler in process,
// from the request to the last byte of the rendered page), and, as the
// baseline of the same run, the ledger queries each page makes. It writes
// the figures as JSON to $CONSOLE_BENCH_OUT when set (scripts/bench-console.sh).
func BenchmarkConsolePages(b *testing.B) {
	dir := os.Getenv("CONSOLE_BENCH_DIR")
	if dir == "" {
		dir = filepath.Join("..", "bench", "results")
	}
	os.MkdirAll(dir, 0o755)
	// The fleet ends at a fixed day so the data can be reused.
	end := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	// The schema version and the migrations' tag are in the name: a
	// database from another schema is not reused.
	path := filepath.Join(dir, fmt.Sprintf("console-%d-schema%d-%s.db", benchSessions, sqlite.SchemaVersion(), migrationsTag(b)))
	benchDB(b, path, end)
	ctx := context.Background()
	store, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	benchPolicies(b, store, end)

	// The console, with its clock at the fleet's end, the live state of
	// every server and one logged-in viewer.
	now := func() time.Time { return end }
	log := slog.New(slog.DiscardHandler)
	live := NewLive(log, now)
	for s := 0; s < benchServers; s++ {
		id := "vpn" + strconv.Itoa(s)
		var items []OnlineSession
		for u := 0; u < benchOnline; u++ {
			items = append(items, OnlineSession{ServerID: id, Username: "user" + strconv.Itoa((s*benchOnline+u)*7%benchUsers),
				SessionUID: fmt.Sprintf("%s-%d", id, u), WorkerID: u, Device: "vpns" + strconv.Itoa(u), VPNIPv4: "10.0.0.1",
				ConnectedAt: end.Add(-time.Duration(u) * time.Minute), HasCounters: true, BytesIn: 1 << 20, BytesOut: 1 << 24, Source: "snapshot"})
		}
		live.mu.Lock()
		live.server(id).setUsers(items, end)
		live.changedLocked()
		live.mu.Unlock()
	}
	users := filepath.Join(b.TempDir(), "users")
	h, _ := HashPassword("bench-password-1", cheapArgon)
	EditAccounts(users, func(m map[string]Account) error {
		m["bench"] = Account{Name: "bench", Role: Viewer, Hash: h}
		return nil
	})
	accts, _ := LoadAccounts(users)
	sessions, _ := OpenSessions("", time.Hour, time.Hour, now)
	cookie, _, _ := sessions.Create("bench", "127.0.0.1", "bench")
	auditor, err := OpenSpoolAuditor(filepath.Join(b.TempDir(), "spool"), "console")
	if err != nil {
		b.Fatal(err)
	}
	defer auditor.Close()
	cfg := DefaultConfig()
	srv, err := New(Options{Config: cfg, Accounts: accts, Sessions: sessions, Ledger: store, Live: live, Audit: auditor, Log: log, Now: now})
	if err != nil {
		b.Fatal(err)
	}
	// The same console with policies on: the user page adds where the
	// user stands.
	srvP, err := New(Options{Config: cfg, Accounts: accts, Sessions: sessions, Ledger: store, Live: live, Audit: auditor, Log: log, Now: now,
		Policies: store})
	if err != nil {
		b.Fatal(err)
	}
	h2 := srv.Handler()
	rng := rand.New(rand.NewPCG(1, 2))
	get := func(path string) time.Duration {
		handler := h2
		if p, ok := strings.CutPrefix(path, "policies:"); ok {
			path, handler = p, srvP.Handler()
		}
		req := httptest.NewRequest("GET", path, nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
		rec := httptest.NewRecorder()
		start := time.Now()
		handler.ServeHTTP(rec, req)
		d := time.Since(start)
		if rec.Code != 200 {
			b.Fatalf("%s: %d\n%s", path, rec.Code, rec.Body.String())
		}
		return d
	}
	type figure struct {
		Page     string  `json:"page"`
		Cache    string  `json:"cache"` // "warm" or "cold"
		N        int     `json:"n"`
		P50ms    float64 `json:"p50_ms"`
		P99ms    float64 `json:"p99_ms"`
		Query50  float64 `json:"query_p50_ms"`
		Query99  float64 `json:"query_p99_ms"`
		Ratio50  float64 `json:"page_over_query_p50"`
		GoalP99  float64 `json:"goal_p99_ms"`
		Sessions int     `json:"sessions"`
		DBMB     int64   `json:"db_mb"` // the database file's size
		// DiskKB is what the process read from the disk per request
		// (pages and baselines), from /proc/self/io: about nothing when
		// the cache held the database, as a warm row claims.
		DiskKB float64 `json:"disk_kb_per_request"`
	}
	pct := func(l []time.Duration, p float64) float64 {
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		return float64(l[min(len(l)-1, int(float64(len(l))*p))].Microseconds()) / 1000
	}
	var figs []figure
	// Each page is measured twice. Cold (as root only): every request,
	// and every baseline, follows an emptied page cache (dropCaches), so
	// each reads what it needs from the disk; that is the first look at a
	// user on a machine that holds none of the database in memory. Then
	// warm: after the database file has been read once (warmUp), as the
	// page cache of a running ledger holds it when the machine has the
	// memory for it. The goal is the warm figure: a running service.
	cache := "cold"
	measure := func(page string, pagePath func() string, query func() error) {
		n := 300
		if cache == "cold" {
			n = benchCold
		}
		var pt, qt []time.Duration
		read0 := diskRead(b)
		for i := 0; i < n; i++ {
			// Every overview pays the ledger's server list (the cache is
			// emptied), so the figure is the uncached page.
			srv.cacheMu.Lock()
			srv.servers = nil
			srv.cacheMu.Unlock()
			timeQuery := func() {
				start := time.Now()
				if err := query(); err != nil {
					b.Fatal(err)
				}
				qt = append(qt, time.Since(start))
			}
			if cache == "cold" {
				// A page, then the baseline for another user (the
				// page's own reads would warm the ledger's connection
				// caches for it), each after an emptied page cache.
				path := pagePath()
				dropCaches(b)
				pt = append(pt, get(path))
				pagePath()
				dropCaches(b)
				timeQuery()
				continue
			}
			// Page and queries alternate which goes first, so neither
			// always pays the first reads of a new user's rows for the
			// other.
			path := pagePath()
			if i%2 == 1 {
				timeQuery()
			}
			pt = append(pt, get(path))
			if i%2 == 0 {
				timeQuery()
			}
		}
		f := figure{Page: page, Cache: cache, N: n, P50ms: pct(pt, .5), P99ms: pct(pt, .99), Query50: pct(qt, .5), Query99: pct(qt, .99),
			GoalP99: 100, Sessions: benchSessions}
		f.Ratio50 = f.P50ms / f.Query50
		f.DiskKB = float64((diskRead(b)-read0)*10/1024/int64(2*n)) / 10
		figs = append(figs, f)
		b.ReportMetric(f.P99ms, page+"_"+cache+"_p99_ms")
	}
	user := func() string { return "user" + strconv.Itoa(rng.IntN(benchUsers)) }
	// The page with policies on must show the standing it is timed for.
	req := httptest.NewRequest("GET", "/users/user1", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
	rec := httptest.NewRecorder()
	srvP.Handler().ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), `id="policy-verdict"`) {
		b.Fatalf("the user page with policies on has no policy section:\n%s", rec.Body.String())
	}
	var cur string
	userQueries := func() error {
		if _, err := store.History(ctx, ledger.HistoryQuery{User: cur, Limit: 25}); err != nil {
			return err
		}
		today := time.Date(end.Year(), end.Month(), end.Day(), 0, 0, 0, 0, time.UTC)
		if _, err := store.Usage(ctx, ledger.UsageQuery{From: today.AddDate(0, 0, -29), To: today.AddDate(0, 0, 1), By: ledger.ByDay, User: cur}); err != nil {
			return err
		}
		_, err := store.Audit(ctx, ledger.AuditQuery{User: cur, Limit: 20})
		return err
	}
	var ip, at string
	pages := func() {
		measure("overview", func() string { return "/" }, func() error { _, err := store.Servers(ctx); return err })
		measure("user", func() string { cur = user(); return "/users/" + cur }, userQueries)
		measure("user+policy", func() string { cur = user(); return "policies:/users/" + cur }, func() error {
			if err := userQueries(); err != nil {
				return err
			}
			_, ok, err := engine.ExplainUser(ctx, store, cur, end)
			if err == nil && !ok {
				err = fmt.Errorf("%s has no policy in the benchmark's fleet", cur)
			}
			return err
		})
		measure("search", func() string {
			i := rng.IntN(benchSessions)
			ip = fmt.Sprintf("10.%d.%d.%d", i%benchServers, (i/250)%256, 2+i%250)
			at = time.UnixMicro(end.Add(-benchDays*24*time.Hour).UnixMicro() + int64(i)*((end.Add(-time.Hour).UnixMicro()-end.Add(-benchDays*24*time.Hour).UnixMicro())/int64(benchSessions)) + 30e6).UTC().Format(time.RFC3339)
			return "/search?who=1&ip=" + ip + "&at=" + at
		}, func() error {
			t, _ := time.Parse(time.RFC3339, at)
			_, err := store.Who(ctx, ledger.WhoQuery{IP: ip, At: t})
			return err
		})
	}
	if canDropCaches() && benchCold > 0 {
		pages()
	} else {
		b.Logf("cold page times not measured: emptying the page cache needs root (and CONSOLE_BENCH_COLD > 0)")
	}
	cache = "warm"
	dbMB := warmUp(b, path) >> 20
	pages()
	for i := range figs {
		figs[i].DBMB = dbMB
	}
	for _, f := range figs {
		b.Logf("%-11s %s (%d) page p50 %.2f ms p99 %.2f ms; ledger queries p50 %.2f ms p99 %.2f ms; page/query %.2fx", f.Page, f.Cache, f.N, f.P50ms, f.P99ms, f.Query50, f.Query99, f.Ratio50)
	}
	if out := os.Getenv("CONSOLE_BENCH_OUT"); out != "" {
		data, _ := json.MarshalIndent(figs, "", "  ")
		if err := os.WriteFile(out, data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// benchCold is how many requests per page the cold measurement makes
// (each after an emptied page cache: a few seconds apiece at most).
var benchCold = func() int {
	if n, err := strconv.Atoi(os.Getenv("CONSOLE_BENCH_COLD")); err == nil && n >= 0 {
		return n
	}
	return 20
}()

// canDropCaches: emptying the kernel's page cache needs root.
func canDropCaches() bool {
	f, err := os.OpenFile("/proc/sys/vm/drop_caches", os.O_WRONLY, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// dropCaches writes dirty pages out and empties the kernel's page cache
// (every process's: run under the shared lock, scripts/bench-console.sh).
// The ledger's connections keep their own small page caches, as a
// running process would.
func dropCaches(b *testing.B) {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		b.Fatalf("empty the page cache: %v", err)
	}
}

// warmUp reads the database file once, so the warm figures are those of
// a running service whose database the page cache holds, whatever ran on
// the machine before the benchmark.
func warmUp(b *testing.B, path string) int64 {
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	n, err := io.Copy(io.Discard, f)
	if err != nil {
		b.Fatalf("warm up: read %s: %v", path, err)
	}
	b.Logf("%s: read the database (%d MB) into the page cache", time.Since(start).Round(time.Millisecond), n>>20)
	return n
}

// diskRead is what this process has read from the disk so far (bytes
// that did not come from the page cache), from /proc/self/io.
func diskRead(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Fatalf("disk reads: %v", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "read_bytes: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatalf("disk reads: %q: %v", l, err)
			}
			return n
		}
	}
	b.Fatalf("disk reads: no read_bytes in /proc/self/io")
	return 0
}

// migrationsTag names the set of the SQLite ledger's migrations (a hash
// of their file names): branches number their migrations apart and merge
// them later, so a database made before a lower-numbered migration landed
// has the same latest version but not the same schema, and must not be
// reused.
func migrationsTag(b *testing.B) string {
	files, err := os.ReadDir(filepath.Join("..", "ledger", "sqlite", "migrations"))
	if err != nil {
		b.Fatalf("the ledger's migrations: %v", err)
	}
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintln(h, f.Name())
	}
	return hex.EncodeToString(h.Sum(nil))[:8]
}
