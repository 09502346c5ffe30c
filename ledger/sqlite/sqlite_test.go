package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
)

// OpenTest makes a migrated ledger file in the test's temp dir.
func openTest(t *testing.T, o ledger.ApplyOptions) ledger.Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	if _, err := sqlite.Migrate(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	s, err := sqlite.Open(context.Background(), path, sqlite.Options{Apply: o})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T)       { ledgertest.Run(t, openTest) }
func TestPolicyConformance(t *testing.T) { ledgertest.RunPolicy(t, openTest) }
