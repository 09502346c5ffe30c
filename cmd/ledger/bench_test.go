package main

// Benchmarks of the ledger (scripts/bench-ledger.sh runs them under the
// shared lock; they are not part of make test). Each figure is a ratio
// against a baseline measured in the same run on the same database, or a
// bound from the design (docs/design.md, performance goals).

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	_ "modernc.org/sqlite"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/pgtest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ingest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
)

func benchEnv(t *testing.T, name string) {
	if os.Getenv(name) != "1" {
		t.Skipf("a benchmark: %s=1 runs it (scripts/bench-ledger.sh)", name)
	}
}

// benchEngines are the engines a benchmark runs on: LEDGER_BENCH_ENGINES
// (comma-separated) or both.
func benchEngines() []string {
	v := os.Getenv("LEDGER_BENCH_ENGINES")
	if v == "" {
		return engines
	}
	return strings.Split(v, ",")
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// out appends a line to the benchmark's Markdown output.
func out(t *testing.T, format string, a ...any) {
	line := fmt.Sprintf(format, a...)
	t.Log(line)
	if p := os.Getenv("LEDGER_BENCH_OUT"); p != "" {
		f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fmt.Fprintln(f, line)
	}
}

// vmHWM is a process's peak resident set (kB) from /proc.
func vmHWM(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return -1
}

// cpuSeconds is the CPU time (user and system) a live process has used,
// from /proc; -1 when it cannot be read.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The fields after the command name, which may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return -1
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return (ut + st) / clockTicks
}

// cpuSteal is the machine's CPU time stolen by the hypervisor and all of
// its CPU time, in ticks since boot (/proc/stat's cpu line); zeros when
// it cannot be read.
func cpuSteal() (steal, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, 0
		}
		if i < 8 { // guest time (after steal) is already in user time
			total += n
		}
		if i == 7 {
			steal = n
		}
	}
	return steal, total
}

// clockTicks is the kernel's USER_HZ: the unit of /proc's CPU times, 100
// on every Linux architecture Go supports.
const clockTicks = 100

// publishBacklog puts n workload events on stream name under prefix.
func publishBacklog(t *testing.T, js jetstream.JetStream, name, prefix string, n int) {
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{prefix + ".events.>"},
		Storage: jetstream.FileStorage, Duplicates: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	pending := 0
	ledgertest.Workload{Seed: 1, Servers: 20, Users: 20000}.Emit(n, func(m ledger.Message) bool {
		nm := nats.NewMsg(prefix + strings.TrimPrefix(m.Subject, "ocserv"))
		nm.Data = m.Data
		if _, err := js.PublishMsgAsync(nm); err != nil {
			t.Fatal(err)
		}
		if pending++; pending == 5000 {
			<-js.PublishAsyncComplete()
			pending = 0
		}
		return true
	})
	<-js.PublishAsyncComplete()
}

// TestBenchIngest: events per second from a backlog on the stream into
// each engine by the real service, against the same rows written by a
// plain batched insert loop (SQLite) or COPY (PostgreSQL) into the same
// database in the same run; and the service's own peak RSS for a backlog
// of a tenth and of all of them.
func TestBenchIngest(t *testing.T) {
	benchEnv(t, "LEDGER_BENCH")
	n := envInt("LEDGER_BENCH_EVENTS", 1000000)
	srv, err := natstest.Start(natstest.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(5000))
	backlogs := []int{n / 10, n}
	start := time.Now()
	for _, b := range backlogs {
		publishBacklog(t, js, fmt.Sprintf("B%d", b), fmt.Sprintf("b%d", b), b)
	}
	t.Logf("published %v events in %s", backlogs, time.Since(start).Round(time.Second))
	pg, err := pgtest.Start(pgtest.Options{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	// Each row is the median of several runs, the ledger and its raw
	// baseline one after the other in each: the raw loops' rate varies
	// by half from run to run on this shared machine (the page cache, the
	// disk's other writers), and a ratio of one pair would be a draw.
	runs := envInt("LEDGER_BENCH_RUNS", 3)
	out(t, "| engine | backlog | ledger events/s | raw events/s (same rows, a commit per batch) | ratio (runs' min–max) | raw events/s, one COPY per table | ratio (runs' min–max) | ledger peak RSS (the runs' highest) | ledger CPU per event | CPU steal (runs' min–max) |")
	out(t, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, engine := range benchEngines() {
		for _, b := range backlogs {
			var rate, raw, whole, ratio, wholeRatio, cpu, steal []float64
			hwm := 0
			for range runs {
				r := ingestRun(t, srv.ClientURL(), pg, engine, b)
				rate, raw, ratio = append(rate, r.rate), append(raw, r.raw), append(ratio, r.rate/r.raw)
				if r.rawWhole > 0 {
					whole, wholeRatio = append(whole, r.rawWhole), append(wholeRatio, r.rate/r.rawWhole)
				}
				hwm = max(hwm, r.hwmKB)
				cpu = append(cpu, r.cpu/float64(b))
				steal = append(steal, r.steal)
			}
			wholeCol, wholeRatioCol := "—", "—"
			if len(whole) > 0 {
				wholeCol, wholeRatioCol = fmt.Sprintf("%.0f", median(whole)), spread(wholeRatio)
			}
			out(t, "| %s | %d | %.0f | %.0f | %s | %s | %s | %.1f MiB | %.1f µs | %.0f%% (%.0f–%.0f) |", engine, b, median(rate), median(raw), spread(ratio),
				wholeCol, wholeRatioCol, float64(hwm)/1024, median(cpu)*1e6, median(steal), slices.Min(steal), slices.Max(steal))
		}
	}
	out(t, "")
	out(t, "Each row: the median of %d runs (ratio: the median of the runs' own ratios, their lowest and highest in brackets; "+
		"ledger CPU per event: the service process's CPU time, user and system, from its start to the backlog applied, over the backlog's events; "+
		"CPU steal: the share of the machine's CPU time the hypervisor gave to others while the ledger drained the backlog, from /proc/stat, "+
		"which slows the ledger and its raw baseline alike only when it is steady).", runs)
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spread is a ratio's median with its range: "0.52x (0.47–0.58)".
func spread(v []float64) string {
	lo, hi := slices.Min(v), slices.Max(v)
	return fmt.Sprintf("%.2fx (%.2f–%.2f)", median(v), lo, hi)
}

type ingestResult struct {
	rate, raw float64
	// rawWhole (PostgreSQL): the same rows by one COPY per table, each
	// in one transaction, with no commit per batch.
	rawWhole float64
	hwmKB    int
	cpu      float64 // the service's CPU seconds (user and system) for the backlog
	steal    float64 // the machine's CPU time stolen by the hypervisor while the ledger ran, in percent
}

func ingestRun(t *testing.T, url string, pg *pgtest.Cluster, engine string, backlog int) ingestResult {
	ctx := context.Background()
	dir := t.TempDir()
	var dsn, rawDSN string
	switch engine {
	case "sqlite":
		dsn, rawDSN = filepath.Join(dir, "ledger.db"), filepath.Join(dir, "raw.db")
	default:
		var err error
		if _, dsn, err = pg.NewDatabase(ctx); err != nil {
			t.Fatal(err)
		}
		if _, rawDSN, err = pg.NewDatabase(ctx); err != nil {
			t.Fatal(err)
		}
	}
	b := &bed{t: t, dir: dir, url: url, db: dsn, extra: map[string]string{
		"SUBJECT_PREFIX": fmt.Sprintf("b%d", backlog), "NATS_EVENTS_STREAM": fmt.Sprintf("B%d", backlog),
		"LEDGER_CONSUMER": "bench_" + engine, "LEDGER_BATCH": strconv.Itoa(envInt("LEDGER_BENCH_BATCH", ingest.DefaultBatch)),
	}}
	os.WriteFile(filepath.Join(dir, "operators.keys"), []byte("# none\n"), 0o600)
	b.writeConfig()
	if out, err := b.run("migrate"); err != nil {
		t.Fatalf("migrate: %v %s", err, out)
	}
	if _, _, err := migrate(ctx, rawDSN); err != nil {
		t.Fatal(err)
	}
	s := b.open()
	steal0, total0 := cpuSteal()
	begin := time.Now()
	p := b.serve("")
	for {
		pos, err := s.Position(ctx)
		if err == nil && pos.Applied+pos.Rejected >= int64(backlog) {
			break
		}
		select {
		case <-p.done:
			t.Fatalf("the ledger exited:\n%s", p.out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(begin) > 30*time.Minute {
			t.Fatalf("not done in 30 minutes: %+v", pos)
		}
	}
	took := time.Since(begin)
	steal1, total1 := cpuSteal()
	hwm := vmHWM(p.cmd.Process.Pid)
	cpu := cpuSeconds(p.cmd.Process.Pid)
	p.stop()
	per := envInt("LEDGER_BENCH_BATCH", ingest.DefaultBatch)
	raw := rawCopy(t, engine, dsn, rawDSN, per)
	r := ingestResult{rate: float64(backlog) / took.Seconds(), raw: float64(backlog) / raw.Seconds(), hwmKB: hwm, cpu: cpu}
	if total1 > total0 {
		r.steal = 100 * (steal1 - steal0) / (total1 - total0)
	}
	if engine == "postgres" {
		_, wholeDSN, err := pg.NewDatabase(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := migrate(ctx, wholeDSN); err != nil {
			t.Fatal(err)
		}
		r.rawWhole = float64(backlog) / rawCopy(t, engine, dsn, wholeDSN, 0).Seconds()
	}
	return r
}

// rawCopy reads every table the ledger wrote (the rows of its final
// state) and writes the same rows into a fresh database of the same
// engine, the plain way: batched inserts on SQLite, COPY on PostgreSQL,
// per rows to a transaction (each table in chunks of as many rows as
// the ledger applies events per commit, as a durable writer that
// acknowledges its input must commit); per 0 (PostgreSQL only) copies
// each table whole in one transaction. The time of the writing is
// returned.
func rawCopy(t *testing.T, engine, from, to string, per int) time.Duration {
	ctx := context.Background()
	tables := ledger.Tables
	// The rows in the order the events made them, as the ledger wrote
	// them (a key order would turn random inserts into appends).
	order := map[string]string{"applied_events": " ORDER BY stream_seq", "samples": " ORDER BY observed_at",
		"sessions": " ORDER BY connected_at", "audit": " ORDER BY time", "rejected_events": " ORDER BY stream_seq"}
	if engine == "sqlite" {
		src, err := sql.Open("sqlite", "file:"+from+"?_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		dst, err := sql.Open("sqlite", dsn(to, true))
		if err != nil {
			t.Fatal(err)
		}
		defer dst.Close()
		dst.SetMaxOpenConns(1)
		type table struct {
			name string
			cols []string
			rows [][]any
		}
		var all []table
		for _, tn := range tables {
			rows, err := src.Query(`SELECT * FROM ` + tn + order[tn])
			if err != nil {
				t.Fatal(err)
			}
			cols, _ := rows.Columns()
			tb := table{name: tn, cols: cols}
			for rows.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				tb.rows = append(tb.rows, vals)
			}
			rows.Close()
			all = append(all, tb)
		}
		begin := time.Now()
		for _, tb := range all {
			q := `INSERT INTO ` + tb.name + ` (` + strings.Join(tb.cols, ",") + `) VALUES (` + strings.TrimSuffix(strings.Repeat("?,", len(tb.cols)), ",") + `)`
			for i := 0; i < len(tb.rows); i += per {
				tx, err := dst.Begin()
				if err != nil {
					t.Fatal(err)
				}
				st, err := tx.Prepare(q)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range tb.rows[i:min(i+per, len(tb.rows))] {
					if _, err := st.Exec(r...); err != nil {
						t.Fatalf("%s: %v", tb.name, err)
					}
				}
				st.Close()
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
			}
		}
		return time.Since(begin)
	}
	src, err := pgx.Connect(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close(ctx)
	dst, err := pgx.Connect(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close(ctx)
	// ingest_state is a single row both have; the rest is copied.
	type table struct {
		name string
		cols []string
		rows [][]any
	}
	var all []table
	for _, tn := range tables {
		rows, err := src.Query(ctx, `SELECT * FROM `+tn+order[tn])
		if err != nil {
			t.Fatal(err)
		}
		var cols []string
		for _, f := range rows.FieldDescriptions() {
			cols = append(cols, f.Name)
		}
		tb := table{name: tn, cols: cols}
		for rows.Next() {
			v, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			tb.rows = append(tb.rows, v)
		}
		rows.Close()
		all = append(all, tb)
	}
	begin := time.Now()
	for _, tb := range all {
		step := per
		if step <= 0 {
			step = max(1, len(tb.rows))
		}
		// Each COPY outside a transaction block commits on its own.
		for i := 0; i < len(tb.rows); i += step {
			if _, err := dst.CopyFrom(ctx, pgx.Identifier{tb.name}, tb.cols, pgx.CopyFromRows(tb.rows[i:min(i+step, len(tb.rows))])); err != nil {
				t.Fatalf("copy %s: %v", tb.name, err)
			}
		}
	}
	return time.Since(begin)
}

// dsn is the writer's DSN of package sqlite: the raw baseline writes with
// the ledger's own settings (sync, page cache), so neither side gains from
// a setting the other lacks.
func dsn(path string, _ bool) string {
	return "file:" + path + "?" + sqlite.WriterPragmas()
}

func percentile(d []time.Duration, p float64) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(math.Ceil(p*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}
