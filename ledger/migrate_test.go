package ledger

import (
	"os"
	"slices"
	"testing"
)

// TestMigrationsAligned: both engines have the same migrations, by version
// and name (docs/ledger.md: a step with nothing to do on one engine still
// takes its number there), so one schema version means one schema.
func TestMigrationsAligned(t *testing.T) {
	names := func(dir string) []string {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}
	lite, pg := names("sqlite/migrations"), names("postgres/migrations")
	if !slices.Equal(lite, pg) {
		t.Fatalf("the engines' migrations differ:\nsqlite:   %v\npostgres: %v", lite, pg)
	}
	if len(lite) == 0 {
		t.Fatal("no migrations found")
	}
}
