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
	var msgs []ledger.Message
	seq := uint64(0)
	Workload{Seed: 1, Servers: 20, Users: 20000}.Emit(n, func(m ledger.Message) bool {
		seq++
		m.StreamSeq = seq
		msgs = append(msgs, m)
		return true
	})
	return msgs
}

// ApplyBatches applies a copy of msgs in batches of 5,000 (the service's
// default), each predecoded first as the consumer does while the previous
// batch is written.
func ApplyBatches(ctx context.Context, st interface {
	Apply(context.Context, []ledger.Message) (ledger.BatchResult, error)
}, msgs []ledger.Message) error {
	batch := make([]ledger.Message, len(msgs))
	copy(batch, msgs)
	for j := 0; j < len(batch); j += 5000 {
		part := batch[j:min(j+5000, len(batch))]
		for k := range part {
			part[k].Predecode()
		}
		if _, err := st.Apply(ctx, part); err != nil {
			return err
		}
	}
	return nil
}
