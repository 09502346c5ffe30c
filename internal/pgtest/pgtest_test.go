package pgtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

// TestSweepStopsOrphans: a cluster whose test process died (killed before
// it could stop it) is stopped and removed by the next run's sweep; a
// live run's cluster is left alone.
func TestSweepStopsOrphans(t *testing.T) {
	c, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if err := c.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	Sweep()
	if _, err := os.Stat(c.Dir); err != nil {
		t.Fatalf("the sweep removed a live run's cluster: %v", err)
	}
	// Make it an orphan: its owner is a process that has exited.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(c.Dir, "owner.pid"), []byte(strconv.Itoa(dead.Process.Pid)), 0o644)
	Sweep()
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Fatalf("the orphan cluster's directory is still there: %v", err)
	}
	if err := c.Exec(context.Background(), "SELECT 1"); err == nil {
		t.Fatal("the orphan cluster still answers")
	}
}

// TestDatabasePerTest: each test gets its own database, dropped after it.
func TestDatabasePerTest(t *testing.T) {
	var first string
	t.Run("a", func(t *testing.T) { first = Database(t) })
	second := Database(t)
	if first == second {
		t.Fatalf("two tests got one database: %s", first)
	}
	if err := Shared(t).Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
}
