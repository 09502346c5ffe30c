package sqlite_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
)

func TestSchemaChecked(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	if _, err := sqlite.Open(ctx, path, sqlite.Options{}); ledger.ErrorCode(err) != ledger.ECodeSchema {
		t.Fatalf("open before migrate: %v, want schema_stale", err)
	}
	v, err := sqlite.Migrate(ctx, path)
	if err != nil || len(v) == 0 || v[len(v)-1] != sqlite.SchemaVersion() || !slices.IsSorted(v) || len(slices.Compact(slices.Clone(v))) != len(v) {
		t.Fatalf("migrate: %v %v, want every version up to %d once, in order", v, err, sqlite.SchemaVersion())
	}
	if v, err := sqlite.Migrate(ctx, path); err != nil || len(v) != 0 {
		t.Fatalf("migrate again: %v %v, want nothing to do", v, err)
	}
	s, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := sqlite.Open(ctx, ":memory:", sqlite.Options{}); err == nil {
		t.Fatal("an in-memory ledger was accepted")
	}
}
