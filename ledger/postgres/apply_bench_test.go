package postgres_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/pgtest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/postgres"
)

// BenchmarkApply: the store's own cost per event (Apply of batches of
// 2,500 predecoded workload events, as the consumer hands them over), on a durable cluster of its own with
// pg_stat_statements, whose statements by total time it logs: for finding
// where the write path's time goes. LEDGER_APPLY_EVENTS sets the number
// of events (default 100,000).
func BenchmarkApply(b *testing.B) {
	msgs := ledgertest.BenchMessages(100000)
	ctx := context.Background()
	pg, err := pgtest.Start(pgtest.Options{Durable: true, Settings: []string{"shared_preload_libraries=pg_stat_statements", "pg_stat_statements.track=all"}})
	if err != nil {
		b.Fatal(err)
	}
	defer pg.Stop()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		_, dsn, err := pg.NewDatabase(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := postgres.Migrate(ctx, dsn); err != nil {
			b.Fatal(err)
		}
		s, err := postgres.Open(ctx, dsn, postgres.Options{})
		if err != nil {
			b.Fatal(err)
		}
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`)
		conn.Exec(ctx, `SELECT pg_stat_statements_reset()`)
		b.StartTimer()
		if err := ledgertest.ApplyBatches(ctx, s, msgs); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		rows, err := conn.Query(ctx, `SELECT round(total_exec_time)::bigint, calls, left(regexp_replace(query, '\s+', ' ', 'g'), 90) FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15`)
		if err != nil {
			b.Fatal(err)
		}
		for rows.Next() {
			var ms, calls int64
			var q string
			rows.Scan(&ms, &calls, &q)
			b.Log(fmt.Sprintf("%6d ms %6d calls  %s", ms, calls, q))
		}
		rows.Close()
		conn.Close(ctx)
		s.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/event")
}
