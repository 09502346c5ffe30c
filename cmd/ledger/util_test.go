package main

import (
	"context"
	"strings"
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/pgtest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/postgres"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
)

var ctxb = context.Background()

func freshPG(t *testing.T) string { return pgtest.Database(t) }

// openDSN opens an already migrated database.
func openDSN(t *testing.T, dsn string) ledger.Store {
	t.Helper()
	var s ledger.Store
	var err error
	if strings.HasPrefix(dsn, "postgres") {
		s, err = postgres.Open(ctxb, dsn, postgres.Options{})
	} else {
		s, err = sqlite.Open(ctxb, dsn, sqlite.Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
