package postgres

import (
	"context"
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/pgtest"
)

// testStore makes a migrated ledger in a database of its own (the
// package's internal tests), closed when the test ends; dsn is for a
// connection of the test's own.
func testStore(t *testing.T) (s *Store, dsn string) {
	t.Helper()
	dsn = pgtest.Database(t)
	if _, err := Migrate(context.Background(), dsn); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dsn
}
