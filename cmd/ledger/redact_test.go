package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// A mistyped LEDGER_DATABASE (one slash, a misspelt scheme, libpq's
// keyword form, which the ledger does not take) is reported with its key
// and line, as every bad value is, and the report goes to stderr and the
// journal: it must not repeat a password the value carries.
func TestConfigNeverEchoesADatabasePassword(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ledger.env")
	lines := []string{
		"LEDGER_DATABASE=postgres:/ledger:s3cret-pw@db/ledger",
		"LEDGER_DATABASE=postgress://ledger:s3cret-pw@db/ledger",
		"LEDGER_DATABASE=pg://db/ledger?password=s3cret-pw",
		"LEDGER_DATABASE=host=db user=ledger password=s3cret-pw dbname=ledger",
		"LEDGER_DATABASE=relative/ledger.db",
	}
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, probs, err := loadSettings(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(probs) != len(lines) {
		t.Fatalf("%d problems for %d bad values: %q", len(probs), len(lines), probs)
	}
	for i, pr := range probs {
		if strings.Contains(pr, "s3cret") {
			t.Errorf("the problem repeats the password: %s", pr)
		}
		if !strings.Contains(pr, fmt.Sprintf("line %d: LEDGER_DATABASE", i+1)) {
			t.Errorf("the problem does not name the key and line: %s", pr)
		}
	}
	// A plain path carries no secret: it is still quoted, to be found.
	if !strings.Contains(probs[4], `"relative/ledger.db"`) {
		t.Errorf("a relative path is not quoted: %s", probs[4])
	}
}

// --db of migrate and replay took any text: a mistyped URL was opened as
// a SQLite path relative to the working directory, creating directories
// named after the URL, its password included, for anyone listing that
// directory. It is checked as LEDGER_DATABASE is.
func TestDBFlagCheckedLikeTheSetting(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	cfg := filepath.Join(dir, "ledger.env")
	os.WriteFile(cfg, []byte("# defaults\n"), 0o600)
	for name, run := range map[string]func(e env, args []string) error{
		"migrate": func(e env, args []string) error { return (&migrateCmd{e}).Run(context.Background(), args) },
		"replay": func(e env, args []string) error {
			return (&replayCmd{e}).Run(context.Background(), append([]string{"--from", "1"}, args...))
		},
	} {
		var out, errb bytes.Buffer
		e := env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
		err := run(e, []string{"--config", cfg, "--db", "postgress://ledger:s3cret-pw@db/ledger"})
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--db") || strings.Contains(err.Error()+out.String()+errb.String(), "s3cret") {
			t.Errorf("%s --db with a mistyped URL: %v\n%s%s", name, err, out.String(), errb.String())
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Errorf("%s --db with a mistyped URL left %d entries in the working directory: %v", name, len(ents)-1, ents)
		}
	}
}
