package postgres_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/pgtest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/postgres"
)

// TestSchemaChecked: a fresh database is refused until migrated; several
// instances migrating at once apply each version once (goose's advisory
// session lock).
func TestSchemaChecked(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Database(t)
	if _, err := postgres.Open(ctx, dsn, postgres.Options{}); ledger.ErrorCode(err) != ledger.ECodeSchema {
		t.Fatalf("open before migrate: %v, want schema_stale", err)
	}
	var wg sync.WaitGroup
	applied := make([][]int64, 4)
	errs := make([]error, 4)
	for i := range applied {
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied[i], errs[i] = postgres.Migrate(ctx, dsn)
		}()
	}
	wg.Wait()
	var all []int64
	for i := range applied {
		if errs[i] != nil {
			t.Fatalf("migrate %d: %v", i, errs[i])
		}
		all = append(all, applied[i]...)
	}
	slices.Sort(all)
	if len(all) == 0 || all[len(all)-1] != postgres.SchemaVersion() || len(slices.Compact(slices.Clone(all))) != len(all) {
		t.Fatalf("four concurrent migrations applied %v, want every version up to %d once", all, postgres.SchemaVersion())
	}
	s, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}
