package main

import (
	"strings"
	"testing"
)

// `ledger status` prints the database it reports on; its output goes
// into tickets and chat. A PostgreSQL password may sit in the URL's
// userinfo or in a query parameter (password=, and sslpassword= for the
// client key): none of it may be printed.
func TestStatusNeverPrintsTheDatabasePassword(t *testing.T) {
	for _, dsn := range []string{
		"postgres://ledger:s3cret-pw@db.example:5433/ledger?sslmode=disable",
		"postgres://ledger@db.example/ledger?sslmode=disable&password=s3cret-pw",
		"postgresql://db.example/ledger?user=ledger&password=s3cret-pw",
		"postgres://ledger@db.example/ledger?sslmode=disable&sslpassword=s3cret-pw",
		"postgres://ledger:s3cret-pw@db@example/ledger",
	} {
		got := redactDSN(dsn)
		if strings.Contains(got, "s3cret") {
			t.Errorf("redactDSN(%q) = %q: the password is printed", dsn, got)
		}
		if !strings.Contains(got, "ledger") && !strings.Contains(got, "…") {
			t.Errorf("redactDSN(%q) = %q names nothing", dsn, got)
		}
	}
	if got := redactDSN("/var/lib/ocserv-telemetry-ledger/ledger.db"); got != "/var/lib/ocserv-telemetry-ledger/ledger.db" {
		t.Errorf("a SQLite path is printed as %q", got)
	}
}
