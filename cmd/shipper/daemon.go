package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/hook"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/crashpoint"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/sdnotify"
	"github.com/ocserv-telemetry/ocserv-telemetry/natsjs"
	"github.com/ocserv-telemetry/ocserv-telemetry/shipper"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// Daemon is one run of the shipper service.
type Daemon struct {
	Args   []string
	Getenv func(string) string
	Stderr io.Writer
}

// Run parses flags, loads the configuration, opens the spool, tells systemd
// it is ready (without waiting for NATS: the spool is what must work) and
// ships until SIGTERM or SIGINT. The first signal drains in-flight
// acknowledgements within a bound; a second one aborts the drain.
func (d *Daemon) Run(ctx context.Context) error {
	fs := flag.NewFlagSet("shipper", flag.ContinueOnError)
	fs.SetOutput(d.Stderr)
	cfgPath := fs.String("config", "", "configuration file (default $"+config.PathEnv+" or "+config.DefaultPath+")")
	version := fs.Bool("version", false, "print the version and exit")
	drain := fs.Duration("drain-timeout", 5*time.Second, "longest wait for in-flight acknowledgements at shutdown")
	if err := fs.Parse(d.Args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if *version {
		fmt.Fprintln(d.Stderr, "ocserv-telemetry shipper", hook.Version)
		return nil
	}
	crashpoint.Arm(d.Getenv(crashpoint.Env)) // tests only; unset in production
	log := slog.New(slog.NewTextHandler(d.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	path := config.Path(*cfgPath, d.Getenv)
	cfg, probs, err := config.Load(path)
	if err != nil {
		return err
	}
	for _, p := range probs {
		log.Warn("configuration problem; keeping the default for it", "file", path, "problem", p.Error())
	}

	sp, err := spool.Open(cfg.SpoolDir, spool.Options{Fsync: cfg.Fsync, LockWait: 2 * time.Second, Create: true})
	if err != nil {
		return err
	}
	defer sp.Close()
	wake, stopWatch, err := shipper.Watch(cfg.SpoolDir, log)
	if err != nil {
		// Polling still delivers, only later; the service stays up.
		log.Warn("cannot watch the spool; falling back to polling", "err", err.Error())
	} else {
		defer stopWatch()
	}

	conn, err := natsjs.Connect(cfg.NATS, natsjs.Options{
		Name:        "ocserv-telemetry-shipper " + cfg.ServerID,
		MaxInFlight: cfg.MaxInFlight,
	}, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	pub := natsjs.NewPublisher(conn, cfg.MaxInFlight)
	defer pub.Close()

	// Never blocks (package sdnotify): READY=1 and STOPPING=1 are retried
	// until the socket takes them, STATUS= and WATCHDOG=1 dropped when it
	// is full. Closed last (deferred first): a queued STOPPING=1 gets at
	// most notifyCloseWait after the drain.
	sd := newNotifier(log)
	defer sd.n.Close(notifyCloseWait)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	abort := make(chan struct{})
	go d.signals(ctx, cancel, abort, sd.n, log)

	spec := natsjs.StreamSpec{
		Name:      cfg.NATS.StreamName,
		Subjects:  natsjs.EventsSubjects(cfg.SubjectPrefix),
		DupWindow: cfg.NATS.DupWindow,
		Create:    cfg.NATS.CreateStreams,
	}
	checked := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); natsjs.EnsureLoop(ctx, conn.JS, spec, log, checked) }()
	defer wg.Wait()

	// Live state and metrics (live.go): side services, never in the way
	// of delivery.
	lp := startLive(ctx, cfg, sp, conn, log)
	defer lp.close()

	sh, err := shipper.New(shipper.Options{
		Spool: sp, Publisher: pub, Log: log,
		ServerID: cfg.ServerID, Prefix: cfg.SubjectPrefix,
		MaxInFlight: cfg.MaxInFlight, RotateBytes: cfg.RotateBytes, MaxBytes: cfg.SpoolMaxBytes,
		Durable:        cfg.Fsync,
		StatusInterval: cfg.StatusInterval, DrainTimeout: *drain,
		Wake: wake, Reconnected: conn.Connected(), Abort: abort, Ready: checked,
		Alive: sd.alive, OnStatus: func(st shipper.Status) { sd.status(st); lp.onStatus(st) },
		LiveState: lp.report(),
	})
	if err != nil {
		return err
	}
	log.Info("shipper started", "spool", cfg.SpoolDir, "nats", cfg.NATS.RedactedURLs(),
		"stream", cfg.NATS.StreamName, "server_id", cfg.ServerID, "version", hook.Version)
	sd.n.Ready()
	err = sh.Run(ctx)
	log.Info("shipper stopped")
	return err
}

// signals turns the first SIGTERM/SIGINT into a draining stop and the
// second into an abort.
func (d *Daemon) signals(ctx context.Context, stop context.CancelFunc, abort chan struct{}, sd *sdnotify.Notifier, log *slog.Logger) {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(ch)
	select {
	case sig := <-ch:
		log.Info("stopping: draining in-flight publishes", "signal", sig.String())
		sd.Stopping()
		stop()
	case <-ctx.Done():
		return
	}
	sig := <-ch
	log.Warn("second signal: aborting the drain", "signal", sig.String())
	close(abort)
}

// notifyCloseWait bounds the wait for a STOPPING=1 (or READY=1) that the
// notify socket has not taken by the end of the run: short beside the
// unit's TimeoutStopSec (15s) minus the drain (5s by default).
const notifyCloseWait = time.Second

// notifier feeds systemd's watchdog and STATUS= from the delivery loop,
// through a Notifier that never blocks it. Without NOTIFY_SOCKET every
// call is a no-op.
type notifier struct {
	n        *sdnotify.Notifier
	watchdog time.Duration
	lastPing time.Time
}

func newNotifier(log *slog.Logger) *notifier {
	n := &notifier{n: sdnotify.New(log)}
	if wd, err := daemon.SdWatchdogEnabled(false); err == nil {
		n.watchdog = wd
	}
	return n
}

// alive runs on the shipper's loop, so a ping proves that the loop turns;
// NATS being away does not stop it (the loop keeps polling the spool). It
// pings four times per WatchdogSec, so a ping dropped on a full socket is
// followed by another well before the watchdog fires.
func (n *notifier) alive() {
	if n.watchdog <= 0 || time.Since(n.lastPing) < n.watchdog/4 {
		return
	}
	n.lastPing = time.Now()
	n.n.Send("WATCHDOG=1")
}

// status is dropped when the socket is full: the next one, a few seconds
// later, says everything it did.
func (n *notifier) status(st shipper.Status) {
	last := "never"
	if st.LastSuccess != "" {
		last = st.LastSuccess
	}
	n.n.Send(fmt.Sprintf("STATUS=backlog %d events (%d bytes); NATS %s; last delivery %s",
		st.BacklogEvents, st.BacklogBytes, st.NATS, last))
	n.alive()
}
