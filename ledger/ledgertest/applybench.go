package ledgertest

import (
	"context"
	"os"
	"strconv"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// BenchMessages are the events of the engines' BenchmarkApply: n workload
// events (LEDGER_APPLY_EVENTS overrides n) with their stream sequences,
// as the consumer hands them over.
func BenchMessages(n int) []ledger.Message {
	if v, err := strconv.Atoi(os.Getenv("LEDGER_APPLY_EVENTS")); err == nil && v > 0 {
		n = v
	}
	return Workload{Seed: 1, Servers: 20, Users: 20000}.Messages(n)
}

// TxEvents and FetchEvents are the consumer's defaults (ingest.DefaultBatch
// and ingest.MaxFetch; ingest's own tests import this package, so it
// cannot import ingest): the most events in one transaction while a
// backlog lasts, and the messages of one fetch.
const (
	TxEvents    = 25000
	FetchEvents = 2500
)

// ApplyBatches applies a copy of msgs as the consumer drains a backlog:
// transactions of TxEvents (ApplyChunks), fed fetch by fetch, each fetch
// predecoded first as the consumer's fetch does, with a context that can
// be cancelled, as the service's is.
func ApplyBatches(ctx context.Context, st interface {
	ApplyChunks(context.Context, ledger.Chunks) (ledger.BatchResult, error)
}, msgs []ledger.Message) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batch := make([]ledger.Message, len(msgs))
	copy(batch, msgs)
	for j := 0; j < len(batch); j += TxEvents {
		tx := batch[j:min(j+TxEvents, len(batch))]
		k := 0
		if _, err := st.ApplyChunks(ctx, func() []ledger.Message {
			if k >= len(tx) {
				return nil
			}
			part := tx[k:min(k+FetchEvents, len(tx))]
			k += len(part)
			for i := range part {
				part[i].Predecode()
			}
			return part
		}); err != nil {
			return err
		}
	}
	return nil
}
