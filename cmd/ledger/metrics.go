package main

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ingest"
)

// metrics are the ledger's Prometheus series (docs/ledger.md).
type metrics struct {
	reg    *prometheus.Registry
	status func() ingest.Status

	mu     sync.Mutex
	events *prometheus.CounterVec
	reqs   *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ocserv_ledger_events_total",
		Help: "Events processed by this instance, by result (applied, duplicate, rejected, expired)."}, []string{"result"})
	m.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ocserv_ledger_queries_total",
		Help: "Query requests by action and outcome code (ok, or the refusal or error code)."}, []string{"action", "code"})
	m.reg.MustRegister(m.events, m.reqs)
	g := func(name, help string, f func(s ingest.Status) float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			if m.status == nil {
				return 0
			}
			return f(m.status())
		}))
	}
	g("ocserv_ledger_lag_events", "Messages on the consumer not yet applied and acknowledged.", func(s ingest.Status) float64 { return float64(s.LagEvents) })
	g("ocserv_ledger_lag_seconds", "Age of the oldest message not yet applied (0 when caught up).", func(s ingest.Status) float64 { return s.LagSeconds })
	g("ocserv_ledger_last_processed_seq", "Stream sequence of the last committed message.", func(s ingest.Status) float64 { return float64(s.Position.StreamSeq) })
	g("ocserv_ledger_last_processed_timestamp_seconds", "Wall time of the last committed batch.", func(s ingest.Status) float64 {
		if s.LastProcessed.IsZero() {
			return 0
		}
		return float64(s.LastProcessed.UnixNano()) / 1e9
	})
	g("ocserv_ledger_database_up", "1 unless the database is failing.", func(s ingest.Status) float64 { return b2f(s.State != ingest.StateDatabaseDown) })
	g("ocserv_ledger_active", "1 on the instance that holds the leader lock and consumes.", func(s ingest.Status) float64 { return b2f(s.Active) })
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ocserv_ledger_errors_total",
		Help: "Errors of this instance (database, nats, rejected_by_database, consumer_deleted, consumer_replaced), summed."}, func() float64 {
		if m.status == nil {
			return 0
		}
		n := 0
		for _, v := range m.status().Errors {
			n += v
		}
		return float64(n)
	}))
	for _, r := range []string{"applied", "duplicate", "rejected", "expired"} {
		m.events.WithLabelValues(r)
	}
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (m *metrics) batch(r ledger.BatchResult) {
	m.events.WithLabelValues("applied").Add(float64(r.Applied))
	m.events.WithLabelValues("duplicate").Add(float64(r.Duplicates))
	m.events.WithLabelValues("rejected").Add(float64(r.Rejected))
	m.events.WithLabelValues("expired").Add(float64(r.Expired))
}

func (m *metrics) request(action, code string, _ time.Duration) {
	if code == "" {
		code = "ok"
	}
	m.reqs.WithLabelValues(action, code).Inc()
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
