package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// TestConsumerGetsThePipelineOfPostgreSQL: the consumer is given
// PostgreSQL's pipelined transactions (each written while the one before
// commits) through the service's store wrapper, which would otherwise
// hide them; SQLite, one writer at a time, has none.
func TestConsumerGetsThePipelineOfPostgreSQL(t *testing.T) {
	for _, dsn := range []string{freshPG(t), filepath.Join(t.TempDir(), "l.db")} {
		if _, _, err := migrate(ctxb, dsn); err != nil {
			t.Fatal(err)
		}
		s, err := openStore(ctxb, dsn, ledger.ApplyOptions{}, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, ok := s.ingestStore().(ledger.PipelinedIngest)
		if want := s.Engine() == "postgres"; ok != want {
			t.Errorf("%s: the consumer's store pipelines: %v, want %v", s.Engine(), ok, want)
		}
		s.Close()
	}
}
