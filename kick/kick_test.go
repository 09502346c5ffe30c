package kick

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAddCheckRemove(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if e, err := Check(dir, "alice", now); e != nil || err != nil {
		t.Fatalf("empty list: %v, %v", e, err)
	}
	if err := Add(dir, Entry{User: "alice", Reason: "abuse", By: "op1", At: now}); err != nil {
		t.Fatal(err)
	}
	e, err := Check(dir, "alice", now)
	if err != nil || e == nil || e.Reason != "abuse" || e.By != "op1" {
		t.Fatalf("Check(alice) = %+v, %v", e, err)
	}
	if e, _ := Check(dir, "alicex", now); e != nil {
		t.Error("a similar name is kicked too")
	}
	if ok, err := Remove(dir, "alice"); !ok || err != nil {
		t.Fatalf("Remove = %v, %v", ok, err)
	}
	if ok, err := Remove(dir, "alice"); ok || err != nil {
		t.Errorf("second Remove = %v, %v; want false, nil", ok, err)
	}
	if e, _ := Check(dir, "alice", now); e != nil {
		t.Error("still kicked after Remove")
	}
}

func TestExpiry(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	until := now.Add(time.Minute)
	Add(dir, Entry{User: "bob", At: now, Until: &until})
	if e, _ := Check(dir, "bob", now); e == nil {
		t.Error("not kicked before the end")
	}
	if e, _ := Check(dir, "bob", now.Add(2*time.Minute)); e != nil {
		t.Error("still kicked after the end")
	}
}

// Names that are hostile as paths stay inside the list directory.
func TestHostileNames(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	for _, u := range []string{"../../etc/passwd", "a/b", ".", "x\x00y", "ü$(id);`x`", strings.Repeat("z", MaxUser)} {
		if err := Add(dir, Entry{User: u, At: now}); err != nil {
			t.Fatalf("Add(%q): %v", u, err)
		}
		if e, err := Check(dir, u, now); e == nil || err != nil {
			t.Errorf("Check(%q) = %v, %v", u, e, err)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(dir, Dir))
	if len(entries) != 6 {
		t.Errorf("%d files in the list dir, want 6", len(entries))
	}
	if _, err := os.Stat(filepath.Join(dir, "etc")); err == nil {
		t.Error("a name escaped the list directory")
	}
	if err := Add(dir, Entry{User: strings.Repeat("z", MaxUser+1), At: now}); err == nil {
		t.Error("an over-long name was accepted")
	}
	list, err := List(dir)
	if err != nil || len(list) != 6 {
		t.Errorf("List = %d entries, %v", len(list), err)
	}
}

// A damaged entry keeps the user out: an operator asked for the kick.
func TestDamagedEntryStillKicks(t *testing.T) {
	dir := t.TempDir()
	Add(dir, Entry{User: "carol", At: time.Now()})
	os.WriteFile(filepath.Join(dir, Dir, fileName("carol")), []byte(`{"user":"car`), 0o640)
	e, err := Check(dir, "carol", time.Now())
	if e == nil || err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("Check(damaged) = %v, %v", e, err)
	}
}
