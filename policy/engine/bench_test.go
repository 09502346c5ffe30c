package engine

// The policy evaluation benchmark (scripts/bench-policy.sh, docs/policy.md):
// run with POLICY_BENCH=1; it writes its Markdown to POLICY_BENCH_OUT.
// Nothing here asserts a threshold: the figures are for people.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/pgtest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/postgres"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/bucket"
)

func benchEnv(t *testing.T) {
	if os.Getenv("POLICY_BENCH") == "" {
		t.Skip("set POLICY_BENCH=1 (scripts/bench-policy.sh) to run the policy evaluation benchmark")
	}
}

func benchN(name string, def int) int {
	var n int
	if _, err := fmt.Sscan(os.Getenv(name), &n); err == nil && n > 0 {
		return n
	}
	return def
}

// rowWriter inserts the bulk rows of the benchmark: users' groups and
// first use, and usage per day, each engine its fastest way.
type rowWriter interface {
	// policy stores a policy (nil: through the store's own PutPolicy).
	policy(p policy.Policy, now time.Time) error
	user(name, group string, first, last time.Time) error
	usage(day time.Time, user, server string, in, out, secs int64) error
	done() error
}

// seed fills a migrated ledger with users users, a policy each (half
// their own, half through one of 20 groups), 30 days of usage on 4
// servers, and an open session for every tenth user (real connect events
// through Apply); about 5% of the users are over their quota.
func seed(t *testing.T, st ledger.Store, w rowWriter, users int, now time.Time) {
	t.Helper()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	putPolicy := func(p policy.Policy) error {
		if err := w.policy(p, now); err != errThroughStore {
			return err
		}
		return st.PutPolicy(ctx, p, now)
	}
	name := func(i int) string { return fmt.Sprintf("user%06d", i) }
	for g := range 20 {
		p := policy.Policy{Scope: policy.ScopeGroup, Name: fmt.Sprintf("group%02d", g),
			Quota:    &policy.Quota{Bytes: int64(20+g) << 30, Direction: policy.DirTotal, Period: policy.Period{Kind: policy.Monthly, Day: 1}},
			Expiry:   &policy.Expiry{At: now.AddDate(1, 0, 0)},
			Sessions: &policy.SessionLimit{Max: 2, OnExcess: policy.ExcessRefuse}}
		if g%4 == 0 {
			p.Sessions = nil
		}
		if err := putPolicy(p); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < users; i += 2 {
		p := policy.Policy{Scope: policy.ScopeUser, Name: name(i),
			Quota: &policy.Quota{Bytes: int64(10+i%40) << 30, Direction: policy.DirTotal, Period: policy.Period{Kind: policy.Monthly, Day: 1 + i%28}}}
		if i%10 == 0 {
			p.Sessions = &policy.SessionLimit{Max: 1, OnExcess: policy.ExcessNewest}
		}
		if i%6 == 0 {
			p.Time = &policy.TimeLimit{Seconds: 200 * 3600, Period: policy.Period{Kind: policy.Monthly, Day: 1}}
		}
		if err := putPolicy(p); err != nil {
			t.Fatal(err)
		}
	}
	for i := range users {
		first := now.AddDate(0, -3, 0).Add(time.Duration(i) * time.Second)
		if err := w.user(name(i), fmt.Sprintf("group%02d", i%20), first, now); err != nil {
			t.Fatal(err)
		}
		// A month's total of about 0..40 GiB, 5% well over any quota.
		total := r.Int64N(40 << 30)
		if r.IntN(20) == 0 {
			total = 200 << 30
		}
		for d := range 30 {
			per := total / 30
			if err := w.usage(now.AddDate(0, 0, -d), name(i), fmt.Sprintf("vpn%d", d%4), per/4, per-per/4, 3600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.done(); err != nil {
		t.Fatal(err)
	}
	// Open sessions, as the ledger makes them from connect events.
	seq := &ledgertest.Seq{}
	gens := []*ledgertest.Gen{ledgertest.NewGen("vpn0", seq), ledgertest.NewGen("vpn1", seq)}
	var batch []ledger.Message
	for i := 0; i < users; i += 10 {
		g := gens[i%2]
		batch = append(batch, g.Connect(ledgertest.UID(), ledgertest.Conn{User: name(i), Group: fmt.Sprintf("group%02d", i%20), Worker: 1000 + i%60000}, now.Add(-time.Hour)))
		if len(batch) == 500 {
			if _, err := st.Apply(ctx, batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if _, err := st.Apply(ctx, batch); err != nil {
		t.Fatal(err)
	}
}

// errThroughStore: the writer leaves policies to the store's PutPolicy.
var errThroughStore = errors.New("through the store")

// sqliteRows writes through prepared statements in one transaction.
type sqliteRows struct {
	db     *sql.DB
	tx     *sql.Tx
	pu, ud *sql.Stmt
}

func newSQLiteRows(path string) (*sqliteRows, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	return &sqliteRows{db: db}, nil
}

// begin opens the one write transaction at the first row (the policies
// go through the store before, with its own writer).
func (w *sqliteRows) begin() error {
	if w.tx != nil {
		return nil
	}
	var err error
	if w.tx, err = w.db.Begin(); err != nil {
		return err
	}
	w.pu, _ = w.tx.Prepare(`INSERT INTO policy_users (username, groupname, first_use, last_connect) VALUES (?, ?, ?, ?)`)
	w.ud, _ = w.tx.Prepare(`INSERT INTO usage_daily (day, username, server_id, bytes_in, bytes_out, seconds, sessions) VALUES (?, ?, ?, ?, ?, ?, 1)`)
	return nil
}

// policy: the store's own writes (the SQLite seed is made ahead, outside
// the shared lock, so their cost does not matter).
func (w *sqliteRows) policy(policy.Policy, time.Time) error { return errThroughStore }

func (w *sqliteRows) user(name, group string, first, last time.Time) error {
	if err := w.begin(); err != nil {
		return err
	}
	_, err := w.pu.Exec(name, group, first.UnixMicro(), last.UnixMicro())
	return err
}

func (w *sqliteRows) usage(day time.Time, user, server string, in, out, secs int64) error {
	_, err := w.ud.Exec(ledger.Day(day), user, server, in, out, secs)
	return err
}

func (w *sqliteRows) done() error {
	err := w.tx.Commit()
	w.db.Close()
	return err
}

// pgRows gathers the rows and writes them with COPY: the policies too,
// as PutPolicy stores them (one durable transaction each would hold the
// shared lock for minutes).
type pgRows struct {
	dsn      string
	policies [][]any
	users    [][]any
	days     [][]any
}

func (w *pgRows) policy(p policy.Policy, now time.Time) error {
	if err := p.Validate(); err != nil {
		return err
	}
	p.UpdatedAt = now.UTC().Truncate(time.Microsecond)
	spec, err := json.Marshal(p)
	if err != nil {
		return err
	}
	w.policies = append(w.policies, []any{string(p.Scope), p.Name, string(spec), p.UpdatedAt, p.UpdatedBy})
	return nil
}

func (w *pgRows) user(name, group string, first, last time.Time) error {
	w.users = append(w.users, []any{name, group, first, last})
	return nil
}

func (w *pgRows) usage(day time.Time, user, server string, in, out, secs int64) error {
	d := time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.UTC)
	w.days = append(w.days, []any{d, user, server, in, out, secs, int64(1)})
	return nil
}

func (w *pgRows) done() error {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, w.dsn)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	if _, err := c.CopyFrom(ctx, pgx.Identifier{"policies"}, []string{"scope", "name", "spec", "updated_at", "updated_by"}, pgx.CopyFromRows(w.policies)); err != nil {
		return err
	}
	if _, err := c.CopyFrom(ctx, pgx.Identifier{"policy_users"}, []string{"username", "groupname", "first_use", "last_connect"}, pgx.CopyFromRows(w.users)); err != nil {
		return err
	}
	if _, err := c.CopyFrom(ctx, pgx.Identifier{"usage_daily"}, []string{"day", "username", "server_id", "bytes_in", "bytes_out", "seconds", "sessions"}, pgx.CopyFromRows(w.days)); err != nil {
		return err
	}
	_, err = c.Exec(ctx, "ANALYZE")
	return err
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestBenchEvaluation: on SQLite and on PostgreSQL, a full sweep of
// POLICY_BENCH_USERS (default 100,000) users against their usage, the
// verdicts it publishes, a sweep with nothing to publish, a round of 1,000
// touched users, each against the baseline of the store's own set-based
// reads a sweep needs.
func TestBenchEvaluation(t *testing.T) {
	benchEnv(t)
	users := benchN("POLICY_BENCH_USERS", 100_000)
	runs := benchN("POLICY_BENCH_RUNS", 5)
	base := os.Getenv("POLICY_BENCH_DIR")
	if base == "" {
		base = t.TempDir()
	}
	var out strings.Builder
	fmt.Fprintf(&out, "Policy evaluation of %d users (half with a policy of their own, half through 20 groups; quotas, expiries, session limits, connected time), 30 days of usage on 4 servers (%d rows), an open session for every tenth user. Medians of %d runs.\n\n",
		users, users*30, runs)
	engines := []string{"sqlite", "postgres"}
	if os.Getenv("POLICY_BENCH_SEED_ONLY") != "" {
		engines = engines[:1] // only the SQLite file can be made ahead
	}
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			dir, err := os.MkdirTemp(base, "policy-bench-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			ctx := context.Background()
			now := time.Now().UTC()
			var st ledger.Store
			var w rowWriter
			switch engine {
			case "sqlite":
				path := filepath.Join(dir, "ledger.db")
				if cached := sqliteCache(users, now); cached != "" {
					if err := copyFile(cached, path); err != nil {
						t.Fatalf("the cached seed: %v", err)
					}
					s, err := sqlite.Open(ctx, path, sqlite.Options{})
					if err != nil {
						t.Fatal(err)
					}
					defer s.Close()
					fmt.Fprintf(&out, "**%s** (seeded ahead, outside the timings):\n\n", engine)
					benchEngine(t, &out, s, dir, users, runs, now)
					return
				}
				if _, err := sqlite.Migrate(ctx, path); err != nil {
					t.Fatal(err)
				}
				s, err := sqlite.Open(ctx, path, sqlite.Options{})
				if err != nil {
					t.Fatal(err)
				}
				if w, err = newSQLiteRows(path); err != nil {
					t.Fatal(err)
				}
				st = s
			case "postgres":
				c, err := pgtest.Start(pgtest.Options{Durable: true})
				if err != nil {
					t.Fatalf("start PostgreSQL: %v", err)
				}
				defer c.Stop()
				_, dsn, err := c.NewDatabase(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := postgres.Migrate(ctx, dsn); err != nil {
					t.Fatal(err)
				}
				s, err := postgres.Open(ctx, dsn, postgres.Options{})
				if err != nil {
					t.Fatal(err)
				}
				st, w = s, &pgRows{dsn: dsn}
			}
			defer st.Close()
			t0 := time.Now()
			seed(t, st, w, users, now)
			if engine == "sqlite" && os.Getenv("POLICY_BENCH_CACHE") != "" {
				saveSQLiteCache(t, filepath.Join(dir, "ledger.db"), users, now)
			}
			if os.Getenv("POLICY_BENCH_SEED_ONLY") != "" {
				return
			}
			fmt.Fprintf(&out, "**%s** (seeded in %s):\n\n", engine, time.Since(t0).Round(time.Second))
			benchEngine(t, &out, st, dir, users, runs, now)
		})
	}
	if os.Getenv("POLICY_BENCH_SEED_ONLY") != "" {
		return
	}
	t.Log("\n" + out.String())
	if p := os.Getenv("POLICY_BENCH_OUT"); p != "" {
		if err := os.WriteFile(p, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func benchEngine(t *testing.T, b *strings.Builder, st ledger.Store, dir string, users, runs int, now time.Time) {
	ctx := context.Background()
	// Baseline: the set-based reads a sweep makes, straight from the store.
	var base []time.Duration
	baseline := func() {
		s := time.Now()
		if _, err := st.PolicyUsers(ctx, nil); err != nil {
			t.Fatal(err)
		}
		earliest, _ := policy.Period{Kind: policy.Monthly, Day: 3}.Window(now)
		if _, err := st.UsageDays(ctx, earliest, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := st.OpenSessions(ctx, nil); err != nil {
			t.Fatal(err)
		}
		base = append(base, time.Since(s))
	}

	srv, err := natstest.Start(natstest.Options{StoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, _, err := bucket.Ensure(ctx, js, bucket.DefaultName, true)
	if err != nil {
		t.Fatal(err)
	}
	e := New(Options{Store: st, Publisher: &bucket.Publisher{KV: kv}, Sweep: time.Hour, Heartbeat: time.Hour,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { e.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitStats := func(ok func(Stats) bool) Stats {
		for {
			s := e.Stats()
			if ok(s) {
				return s
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	first := waitStats(func(s Stats) bool { return s.Sweeps >= 1 })
	// Sweeps and baselines alternate, each run in the other order, so load
	// from elsewhere falls on both alike.
	var sweeps []time.Duration
	for i := range runs {
		if i%2 == 0 {
			baseline()
		}
		e.SweepSoon()
		s := waitStats(func(s Stats) bool { return s.Sweeps >= int64(2+i) })
		sweeps = append(sweeps, time.Duration(s.SweepSeconds*float64(time.Second)))
		if i%2 == 1 {
			baseline()
		}
	}
	var touched []time.Duration
	for r := range runs {
		var some []string
		for k := range 1000 {
			some = append(some, fmt.Sprintf("user%06d", (k*97+r)%users))
		}
		s := time.Now()
		e.Touch(some...)
		c, cc := context.WithTimeout(ctx, time.Minute)
		e.Settle(c)
		cc()
		touched = append(touched, time.Since(s))
	}
	firstDur := time.Duration(first.SweepSeconds * float64(time.Second))
	fmt.Fprintln(b, "| what | time | users/s | baseline: the store's reads a sweep makes | ratio |")
	fmt.Fprintln(b, "|---|---|---|---|---|")
	row := func(what string, d time.Duration, n int) {
		fmt.Fprintf(b, "| %s | %s | %.0f | %s | %.2fx |\n", what, d.Round(time.Millisecond), float64(n)/d.Seconds(),
			median(base).Round(time.Millisecond), float64(d)/float64(median(base)))
	}
	row("first sweep (publishes every verdict)", firstDur, users)
	row("sweep, nothing changed", median(sweeps), users)
	fmt.Fprintf(b, "| round of 1,000 touched users (groups and first use refreshed from their sessions too) | %s | %.0f | | |\n\n", median(touched).Round(time.Millisecond), 1000/median(touched).Seconds())
	fmt.Fprintf(b, "Published to the bucket by the first sweep: %d verdicts (%d denied, %d at a session limit that refuses), %d puts, %.1f KiB; by the %d later sweeps and %d rounds: %d puts.\n\n",
		first.Published, first.Denied, first.Published-first.Denied, first.Puts, float64(first.PublishBytes)/1024, runs, runs, e.Stats().Puts-first.Puts)
}

// seedVersion names what seed writes: change it with seed, so a cached
// database of the old data is not used.
const seedVersion = 1

// sqliteCache is the seeded SQLite database made ahead for these users
// today (POLICY_BENCH_CACHE, a directory; scripts/bench-policy.sh makes it
// outside the shared lock), or "" when there is none.
func sqliteCache(users int, now time.Time) string {
	dir := os.Getenv("POLICY_BENCH_CACHE")
	if dir == "" {
		return ""
	}
	p := filepath.Join(dir, sqliteCacheName(users, now))
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// The day is in the name: the seed's usage and sessions are relative to
// its time, so a database from another day would be another workload.
func sqliteCacheName(users int, now time.Time) string {
	return fmt.Sprintf("policy-sqlite-%d-users-schema%d-seed%d-%s.db", users, sqlite.SchemaVersion(), seedVersion, now.Format("2006-01-02"))
}

// saveSQLiteCache writes a consistent copy of the seeded database
// (VACUUM INTO, whatever is still in the WAL) into the cache.
func saveSQLiteCache(t *testing.T, path string, users int, now time.Time) {
	dir := os.Getenv("POLICY_BENCH_CACHE")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, sqliteCacheName(users, now))
	tmp := dst + ".tmp"
	os.Remove(tmp)
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`VACUUM INTO ?`, tmp); err != nil {
		t.Fatalf("cache the seeded database: %v", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
