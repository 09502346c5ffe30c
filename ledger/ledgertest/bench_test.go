package ledgertest_test

import (
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
)

// BenchmarkDecodeProject: the event logic's own cost per event (decoding
// and projection, no database), on the workload of the ingest benchmark.
func BenchmarkDecodeProject(b *testing.B) {
	var msgs []ledger.Message
	ledgertest.Workload{Seed: 1, Servers: 20, Users: 20000}.Emit(20000, func(m ledger.Message) bool { msgs = append(msgs, m); return true })
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var evs []*ledger.Event
		for _, m := range msgs {
			ev, err := ledger.Decode(m)
			if err == nil {
				evs = append(evs, ev)
			}
		}
		ledger.Project(nil, nil, evs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/event")
}
