package main

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/hook"
	"github.com/ocserv-telemetry/ocserv-telemetry/livestate"
	"github.com/ocserv-telemetry/ocserv-telemetry/metrics"
	"github.com/ocserv-telemetry/ocserv-telemetry/natsjs"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/bucket"
	"github.com/ocserv-telemetry/ocserv-telemetry/shipper"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// liveParts are the shipper's side services next to delivery: the live
// state (occtl readings, snapshots, accounting, reconciliation, the
// server_id claim) and the metrics endpoint. Neither can stop delivery:
// their failures are logged and reported, and they run on their own
// goroutines until stop.
type liveParts struct {
	live   *livestate.Service // nil when LIVESTATE=off
	status metrics.StatusCache
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

func startLive(ctx context.Context, cfg config.Config, sp *spool.Spool, conn *natsjs.Conn, log *slog.Logger) *liveParts {
	ctx, cancel := context.WithCancel(ctx)
	p := &liveParts{stop: cancel}
	if cfg.Live.Enabled {
		host, _ := os.Hostname()
		p.live = livestate.New(livestate.Options{
			Occtl:      &ocserv.Occtl{Path: cfg.Cmd.Occtl, Socket: cfg.Cmd.OcctlSocket},
			OcservPath: cfg.Cmd.Ocserv,
			Spool:      sp, ServerID: cfg.ServerID, Prefix: cfg.SubjectPrefix,
			Log:      log.With("part", "livestate"),
			Interval: cfg.SnapshotInterval, AccountingInterval: cfg.Live.AccountingInterval,
			JS: conn.JS, MaxPayload: conn.NC.MaxPayload,
			StreamName: cfg.Live.SnapshotsStream, History: cfg.Live.SnapshotHistory,
			Bucket: cfg.Live.StateBucket, Create: cfg.NATS.CreateStreams,
			Hostname: host, Version: hook.Version,
		})
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := p.live.Run(ctx); err != nil {
				log.Error("live state stopped; events keep flowing", "err", err.Error())
			}
		}()
	}
	if cfg.Live.MetricsListen != "" {
		src := metrics.Sources{Shipper: p.status.Get, Live: p.live, PerUser: cfg.Live.MetricsPerUser}
		if cfg.Policy.Enabled {
			src.Policy = func() bucket.Report {
				return bucket.ReadReport(cfg.SpoolDir, cfg.Policy.MaxAge, cfg.Policy.Stale, time.Now())
			}
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			metrics.Serve(ctx, cfg.Live.MetricsListen, metrics.Handler(src), log.With("part", "metrics"), nil)
		}()
	}
	return p
}

// onStatus keeps the last status for the metrics endpoint.
func (p *liveParts) onStatus(st shipper.Status) { p.status.Set(st) }

// report is shipper.Options.LiveState.
func (p *liveParts) report() func() any {
	if p.live == nil {
		return nil
	}
	return func() any { return p.live.Status() }
}

// close stops both and waits (the claim is released on the way, so it
// must run before the NATS connection closes).
func (p *liveParts) close() {
	p.stop()
	p.wg.Wait()
}
