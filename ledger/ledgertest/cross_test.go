package ledgertest_test

import (
	"context"
	"maps"
	"path/filepath"
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/pgtest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/postgres"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestEnginesAgree: the same events give the same tables, digest for
// digest, on SQLite and on PostgreSQL.
func TestEnginesAgree(t *testing.T) {
	ctx := context.Background()
	var msgs []ledger.Message
	ledgertest.Workload{Seed: 11, Servers: 3, Users: 40}.Emit(3000, func(m ledger.Message) bool { msgs = append(msgs, m); return true })
	// A few events the schema refuses, and an audit with odd text.
	g := ledgertest.NewGen("vpn9", &ledgertest.Seq{})
	msgs = append(msgs, g.Raw("connect", []byte(`{"v":1}`)))

	path := filepath.Join(t.TempDir(), "l.db")
	if _, err := sqlite.Migrate(ctx, path); err != nil {
		t.Fatal(err)
	}
	a, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	dsn := pgtest.Database(t)
	if _, err := postgres.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	b, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := 0; i < len(msgs); i += 250 {
		for _, s := range []ledger.Store{a, b} {
			if _, err := s.Apply(ctx, msgs[i:min(i+250, len(msgs))]); err != nil {
				t.Fatalf("%s: %v", s.Engine(), err)
			}
		}
	}
	ca, cb := ledgertest.Checksum(t, a), ledgertest.Checksum(t, b)
	if !maps.Equal(ca, cb) {
		for k := range ca {
			if ca[k] != cb[k] {
				t.Errorf("%s: sqlite %s, postgres %s", k, ca[k], cb[k])
			}
		}
	}
}
