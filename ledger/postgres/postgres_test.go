package postgres_test

import (
	"context"
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/pgtest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// openTest makes a migrated ledger in a database of its own.
func openTest(t *testing.T, o ledger.ApplyOptions) ledger.Store {
	t.Helper()
	s, _ := migrated(t, o)
	return s
}

// migrated is openTest's store as itself, closed when the test ends, and
// its database's dsn for a connection of the test's own.
func migrated(t *testing.T, o ledger.ApplyOptions) (*postgres.Store, string) {
	t.Helper()
	dsn := pgtest.Database(t)
	if _, err := postgres.Migrate(context.Background(), dsn); err != nil {
		t.Fatal(err)
	}
	s, err := postgres.Open(context.Background(), dsn, postgres.Options{Apply: o})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dsn
}

func TestConformance(t *testing.T)       { ledgertest.Run(t, openTest) }
func TestPolicyConformance(t *testing.T) { ledgertest.RunPolicy(t, openTest) }
