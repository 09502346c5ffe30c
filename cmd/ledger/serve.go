package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/hook"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/sdnotify"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/api"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ingest"
	"github.com/ocserv-telemetry/ocserv-telemetry/natsjs"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
)

type serveCmd struct{ env }

// The garbage collector's soft limits by engine (GOMEMLIMIT overrides
// them): below the 128 MiB the design allows the service, with room for
// what lives outside Go's heap. On SQLite that is the writer's 12 MiB page
// cache and the driver's own C heap (the ingest benchmark's peak RSS is
// about 40 MiB over the limit); on PostgreSQL little lives there (about
// 16 MiB over), and the larger limit leaves the collector more room: in
// the ingest benchmark it collected a third less often, for a third less
// CPU, than at 80 MiB.
const (
	sqliteMemoryLimit   = 80 << 20
	postgresMemoryLimit = 100 << 20
)

// defaultGCPercent is the collector's pacing (GOGC overrides it): with
// the soft limit bounding the heap, collecting when it has grown by twice
// what is live, rather than once, leaves a draining backlog's CPU to the
// work (the ingest benchmark's CPU per event).
const defaultGCPercent = 200

// gcDefaults sets the garbage collector's soft limit for the engine and
// its pacing, each unless the environment sets it (GOMEMLIMIT, GOGC): a
// backlog drains in large batches, and the collector's default pacing
// would let the heap grow to twice what is live, or collect often where
// the limit leaves room.
func gcDefaults(getenv func(string) string, postgres bool) {
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit(postgres))
	}
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}

// memoryLimit is the soft limit for the engine.
func memoryLimit(postgres bool) int64 {
	if postgres {
		return postgresMemoryLimit
	}
	return sqliteMemoryLimit
}

// drainTimeout bounds the first SIGTERM's drain (the batch in flight);
// a second signal aborts at once.
const drainTimeout = 20 * time.Second

// Run is the service.
func (c *serveCmd) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	cfgPath := fs.String("config", "", "configuration file (default $"+configEnv+" or "+defaultConfigPath+")")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	path := configPath(*cfgPath, c.getenv)
	st, probs, err := loadSettings(path)
	if err != nil {
		return err
	}
	gcDefaults(c.getenv, isPostgres(st.Database))
	for _, p := range probs {
		log.Warn("configuration problem; keeping the default for it", "problem", p)
	}
	trusted, err := opauth.LoadTrusted(st.TrustedKeys)
	if err != nil {
		return fmt.Errorf("LEDGER_TRUSTED_KEYS: %w", err)
	}
	nonces, err := opauth.OpenNonceCache(st.NonceFile, opauth.NonceLimits{}, time.Now())
	if err != nil {
		return fmt.Errorf("LEDGER_NONCE_FILE: %w", err)
	}
	defer nonces.Close()

	// The database: a stale schema is refused (run `ledger migrate`);
	// an unreachable one is waited for, since the stream keeps
	// everything meanwhile.
	var db *store
	for {
		db, err = openStore(ctx, st.Database, ledger.ApplyOptions{Retention: st.Retention}, st.StandbyPoll)
		if err == nil {
			break
		}
		if ledger.ErrorCode(err) != ledger.ECodeUnavailable {
			return err
		}
		log.Warn("database unavailable at start; retrying", "err", err.Error())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
	defer db.Close()

	conn, err := natsjs.Connect(st.Agent.NATS, natsjs.Options{Name: "ocserv-telemetry-ledger"}, log)
	if err != nil {
		return err
	}
	defer conn.Close()

	m := newMetrics()
	var cons *ingest.Consumer
	active := func() bool { return cons.Status().Active }
	var pol *policyParts
	if st.Policy.Enabled {
		if pol, err = startPolicy(st, db, conn, active, log); err != nil {
			return err
		}
		pol.register(m.reg)
	}
	cons = ingest.New(ingest.Options{
		JS: conn.JS, Stream: st.Agent.NATS.StreamName, Prefix: st.Agent.SubjectPrefix, Durable: st.Consumer,
		Store: db.ingestStore(), Leader: db.leader, StandbyPoll: st.StandbyPoll, Batch: st.Batch, Log: log,
		OnBatch: func(r ledger.BatchResult) {
			m.batch(r)
			if pol != nil {
				pol.touch(r)
			}
		},
	})
	m.status = cons.Status
	ao := api.Options{
		NC: conn.NC, Prefix: st.Agent.SubjectPrefix, Store: db, InboxPrefixes: st.InboxPrefixes,
		Verifier: &opauth.Verifier{Trusted: trusted, Nonces: nonces, MaxSkew: st.MaxSkew, MaxValidity: st.MaxValidity},
		Status:   func() any { return cons.Status() }, Log: log, Build: hook.Version, OnRequest: m.request,
	}
	if pol != nil {
		ao.Policy = pol.hooks()
	}
	svc, err := api.Start(ao)
	if err != nil {
		return err
	}
	defer svc.Stop()
	if st.MetricsListen != "" {
		go serveMetrics(ctx, st.MetricsListen, m, log)
	}
	if st.Console.Enabled {
		stopConsole, err := startConsole(ctx, st, db, conn, log)
		if err != nil {
			return fmt.Errorf("web console: %w", err)
		}
		defer stopConsole()
	}

	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Add(2)
	go func() { defer wg.Done(); errc <- cons.Run(runCtx) }()
	go func() { defer wg.Done(); prune(runCtx, db, st, cons, log) }()
	if pol != nil {
		wg.Add(1)
		go func() { defer wg.Done(); pol.run(runCtx, active) }()
	}

	log.Info("ledger started", "engine", db.Engine(), "stream", st.Agent.NATS.StreamName,
		"subjects", st.Agent.SubjectPrefix+".events.>", "consumer", st.Consumer,
		"queries", api.Subject(st.Agent.SubjectPrefix, "*"), "version", hook.Version)
	// sd_notify never blocks (package sdnotify): READY=1 and STOPPING=1 are
	// retried until the socket takes them, the latter at most a second
	// past the stop.
	sd := sdnotify.New(log)
	defer sd.Close(time.Second)
	sd.Ready()
	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil {
			return err
		}
	}
	sd.Stopping()
	log.Info("ledger stopping: finishing the batch in flight")
	stopRun()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-c.signals:
		log.Warn("second signal: stopping now (an uncommitted batch is redelivered at the next start)")
		os.Exit(1)
	case <-time.After(drainTimeout):
		log.Warn("drain timed out; stopping (an uncommitted batch is redelivered at the next start)")
	}
	log.Info("ledger stopped")
	return nil
}

// prune runs retention in the background on the active instance.
func prune(ctx context.Context, db *store, st settings, cons *ingest.Consumer, log *slog.Logger) {
	t := time.NewTicker(st.PruneEvery)
	defer t.Stop()
	first := time.After(time.Minute)
	for {
		select {
		case <-ctx.Done():
			return
		case <-first:
		case <-t.C:
		}
		if !cons.Status().Active {
			continue
		}
		start := time.Now()
		p, err := db.Prune(ctx, st.Retention, time.Now())
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("retention failed; retrying at the next interval", "err", err.Error())
			}
			continue
		}
		if p != (ledger.Pruned{}) {
			log.Info("retention", "sessions", p.Sessions, "samples", p.Samples, "usage_days", p.UsageDays, "audit", p.Audit,
				"notices", p.Notices, "applied_ids", p.Applied, "rejected", p.Rejected, "took", time.Since(start).Round(time.Millisecond).String())
		}
	}
}

// serveMetrics serves /metrics; a port that cannot be bound is logged and
// retried, the service runs on.
func serveMetrics(ctx context.Context, addr string, m *metrics, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.handler())
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	logged := false
	for ctx.Err() == nil {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			if !logged {
				log.Warn("metrics endpoint cannot listen; retrying every 10s", "addr", addr, "err", err.Error())
				logged = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Second):
			}
			continue
		}
		log.Info("metrics endpoint listening", "addr", ln.Addr().String())
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics endpoint stopped", "err", err.Error())
		}
		return
	}
}
