// Package metrics owns the shipper's optional Prometheus endpoint
// (METRICS_LISTEN): the shipper's own health from its status (backlog,
// deliveries, failures, drops, NATS state), the live state's (occtl state,
// claim, snapshots, derived events) and server-level ocserv gauges from the
// last occtl reading. Per-user series exist only with METRICS_PER_USER, so
// a server with thousands of users does not make thousands of series
// unasked.
//
// Values are read at scrape time from the sources; nothing here runs on
// its own besides the HTTP server, and a failure to listen is logged and
// retried, never fatal.
package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ocserv-telemetry/ocserv-telemetry/livestate"
	"github.com/ocserv-telemetry/ocserv-telemetry/natsjs"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/bucket"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/mirror"
	"github.com/ocserv-telemetry/ocserv-telemetry/shipper"
)

// Sources are read at each scrape; any may be nil.
type Sources struct {
	Shipper func() (shipper.Status, bool) // the last status the shipper wrote
	Live    *livestate.Service
	PerUser bool
	// Policy reads the verdicts mirror's state (POLICY=on); nil: none.
	Policy func() bucket.Report
}

// StatusCache keeps the last shipper status (shipper.Options.OnStatus).
type StatusCache struct {
	mu sync.Mutex
	st shipper.Status
	ok bool
}

// Set stores st.
func (c *StatusCache) Set(st shipper.Status) { c.mu.Lock(); c.st, c.ok = st, true; c.mu.Unlock() }

// Get returns the last status.
func (c *StatusCache) Get() (shipper.Status, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st, c.ok
}

const ns = "ocserv_telemetry"

func d(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	backlogEvents = d(ns+"_backlog_events", "Events in the spool not yet acknowledged by JetStream.")
	backlogBytes  = d(ns+"_backlog_bytes", "Bytes in the spool not yet acknowledged.")
	backlogFiles  = d(ns+"_backlog_files", "Spool files with unacknowledged events.")
	oldestAge     = d(ns+"_oldest_pending_age_seconds", "Age of the oldest unacknowledged event.")
	published     = d(ns+"_published_total", "Events published since the shipper started.")
	acknowledged  = d(ns+"_acknowledged_total", "Events acknowledged by JetStream since the shipper started.")
	retries       = d(ns+"_retries_total", "Delivery retries since the shipper started.")
	dropped       = d(ns+"_dropped_events_total", "Events dropped by the spool's size cap (each also an overflow event).")
	droppedChunks = d(ns+"_dropped_chunks_total", "Spool chunks dropped by the size cap.")
	quarantined   = d(ns+"_quarantined_lines_total", "Unreadable spool lines set aside.")
	fallbacks     = d(ns+"_fallback_ingested_total", "Events taken in from the hook's lock-free fallback path.")
	retrying      = d(ns+"_delivery_retrying", "1 while deliveries fail and are being retried.")
	lastSuccess   = d(ns+"_last_delivery_timestamp_seconds", "Time of the last acknowledged delivery.")
	natsState     = d(ns+"_nats_state", "NATS connection state: 1 for the current state.", "state")

	occtlState    = d(ns+"_occtl_state", "occtl reading state: 1 for the current state.", "state")
	occtlFailures = d(ns+"_occtl_consecutive_failures", "Consecutive failed occtl readings.")
	occtlRepairs  = d(ns+"_occtl_repairs_total", "Repairs the tolerant parser made to occtl's output.")
	claimState    = d(ns+"_server_id_claim", "server_id claim state: 1 for the current state (conflict: another live host uses this server_id).", "state")
	snapshots     = d(ns+"_snapshots_published_total", "Snapshots published (all kinds).")
	snapshotFails = d(ns+"_snapshot_failures_total", "Snapshots that could not be published.")
	accounting    = d(ns+"_accounting_events_total", "Interim accounting events written.")
	reconcile     = d(ns+"_reconcile_events_total", "Reconcile events written, by action.", "action")

	ocservUp       = d("ocserv_up", "1 when occtl reads ocserv and it reports online.")
	ocservSessions = d("ocserv_sessions", "Connected sessions (occtl show users, state connected).")
	ocservActive   = d("ocserv_active_sessions", "Active sessions as ocserv counts them (show status).")
	ocservTotal    = d("ocserv_sessions_handled_total", "Sessions handled since the last stats reset.")
	ocservAuthFail = d("ocserv_auth_failures_total", "Authentication failures since ocserv started.")
	ocservBanned   = d("ocserv_banned_ips", "Addresses in the ban list.")
	ocservRX       = d("ocserv_received_bytes_total", "Bytes received from clients since the last stats reset.")
	ocservTX       = d("ocserv_sent_bytes_total", "Bytes sent to clients since the last stats reset.")
	ocservUptime   = d("ocserv_uptime_seconds", "Seconds since ocserv started.")
	ocservInfo     = d("ocserv_info", "ocserv version.", "version")

	policyAge      = d(ns+"_policy_mirror_age_seconds", "Age of the verdicts mirror: time since the newest ledger heartbeat it holds (POLICY=on).")
	policyState    = d(ns+"_policy_mirror_state", "Verdicts mirror state: 1 for the current state (stale: older than POLICY_MAX_AGE, POLICY_STALE applies).", "state")
	policyVerdicts = d(ns+"_policy_mirror_verdicts", "Verdicts in the mirror (users denied or under a session limit).")
	policyRejected = d(ns+"_policy_mirror_rejected_total", "Bucket values refused as not a valid verdict for their key.")

	userSessions = d("ocserv_user_sessions", "Connected sessions of a user (METRICS_PER_USER).", "user")
	userRX       = d("ocserv_user_received_bytes", "Bytes received from a user's current sessions (METRICS_PER_USER).", "user")
	userTX       = d("ocserv_user_sent_bytes", "Bytes sent to a user's current sessions (METRICS_PER_USER).", "user")
)

// Collector reads the sources at each scrape.
type Collector struct{ src Sources }

// NewCollector makes a collector over src.
func NewCollector(src Sources) *Collector { return &Collector{src: src} }

// Describe sends nothing: the collector is unchecked, since which series
// exist depends on what the sources know.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	g := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	ctr := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, v, labels...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	if c.src.Shipper != nil {
		if st, ok := c.src.Shipper(); ok {
			g(backlogEvents, float64(st.BacklogEvents))
			g(backlogBytes, float64(st.BacklogBytes))
			g(backlogFiles, float64(st.BacklogFiles))
			g(oldestAge, st.OldestPendingAgeS)
			ctr(published, float64(st.Published))
			ctr(acknowledged, float64(st.Acknowledged))
			ctr(retries, float64(st.Retries))
			ctr(dropped, float64(st.DroppedEvents))
			ctr(droppedChunks, float64(st.DroppedChunks))
			ctr(quarantined, float64(st.Quarantined))
			ctr(fallbacks, float64(st.FallbackIngested))
			g(retrying, b2f(st.Retrying))
			if t, err := time.Parse(time.RFC3339Nano, st.LastSuccess); err == nil {
				g(lastSuccess, float64(t.UnixNano())/1e9)
			}
			for _, s := range []string{natsjs.StateConnecting, natsjs.StateConnected, natsjs.StateReconnecting, natsjs.StateClosed} {
				g(natsState, b2f(st.NATS == s), s)
			}
		}
	}
	if c.src.Policy != nil {
		r := c.src.Policy()
		for _, s := range []string{mirror.StateFresh, mirror.StateStale, mirror.StateMissing} {
			g(policyState, b2f(r.State == s), s)
		}
		if r.State != mirror.StateMissing {
			g(policyAge, r.AgeSeconds)
		}
		if f := r.Follower; f != nil {
			g(policyVerdicts, float64(f.Entries))
			ctr(policyRejected, float64(f.Rejected))
		}
	}
	if c.src.Live == nil {
		return
	}
	ls := c.src.Live.Status()
	for _, s := range livestate.OcctlStates {
		g(occtlState, b2f(ls.Occtl == s), s)
	}
	g(occtlFailures, float64(ls.OcctlFailures))
	ctr(occtlRepairs, float64(ls.OcctlRepairs))
	for _, s := range []string{livestate.ClaimUnknown, livestate.ClaimOwned, livestate.ClaimConflict} {
		g(claimState, b2f(ls.Claim == s), s)
	}
	ctr(snapshots, float64(ls.Snapshots))
	ctr(snapshotFails, float64(ls.SnapshotFailures))
	ctr(accounting, float64(ls.Accounting))
	for _, a := range []string{livestate.ActionSeen, livestate.ActionLost, livestate.ActionJoined} {
		ctr(reconcile, float64(ls.Reconcile[a]), a)
	}
	st, users, _, ok := c.src.Live.Server()
	g(ocservUp, b2f(ok && st.Online))
	if !ok {
		return
	}
	if ls.OcservVersion != "" {
		g(ocservInfo, 1, ls.OcservVersion)
	}
	g(ocservSessions, float64(ls.Sessions))
	if st.Status != "" {
		g(ocservActive, float64(st.ActiveSessions))
		ctr(ocservTotal, float64(st.SessionsHandled))
		ctr(ocservAuthFail, float64(st.TotalAuthFailures))
		g(ocservBanned, float64(st.IPsInBanList))
		ctr(ocservRX, float64(st.RX))
		ctr(ocservTX, float64(st.TX))
		g(ocservUptime, st.Uptime.Seconds())
	}
	if !c.src.PerUser {
		return
	}
	type agg struct {
		n      int
		rx, tx uint64
	}
	per := map[string]*agg{}
	for _, u := range users {
		if u.State != "connected" || u.Username == "" {
			continue
		}
		a := per[u.Username]
		if a == nil {
			a = &agg{}
			per[u.Username] = a
		}
		a.n++
		a.rx += u.RX
		a.tx += u.TX
	}
	names := make([]string, 0, len(per))
	for n := range per {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a := per[n]
		g(userSessions, float64(a.n), n)
		g(userRX, float64(a.rx), n)
		g(userTX, float64(a.tx), n)
	}
}

// Handler returns the /metrics handler over a fresh registry with the
// collector and the Go runtime's and process's own metrics.
func Handler(src Sources) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(src), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Serve listens on addr until ctx ends. A failure to listen is logged once
// per distinct error and retried every 10s: metrics are never worth
// stopping the shipper for. ready, when not nil, receives the bound
// address once listening (tests use port 0).
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger, ready func(net.Addr)) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	last := ""
	for {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			if err.Error() != last {
				log.Error("metrics endpoint cannot listen; retrying", "listen", addr, "err", err.Error())
				last = err.Error()
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Second):
				continue
			}
		}
		log.Info("metrics endpoint listening", "listen", ln.Addr().String())
		if ready != nil {
			ready(ln.Addr())
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
		}()
		err = srv.Serve(ln)
		if ctx.Err() != nil || errors.Is(err, http.ErrServerClosed) {
			return
		}
		log.Error("metrics endpoint stopped; restarting", "err", err.Error())
	}
}
