package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/docblocks"
)

// A block with results is rewritten, one without keeps its figures, and
// the hand-written text around them does not change by a byte.
func TestUpdate(t *testing.T) {
	dir := t.TempDir()
	results := filepath.Join(dir, "results")
	os.Mkdir(results, 0o755)
	os.WriteFile(filepath.Join(results, "a.md"), []byte("new figures 1.30x\n"), 0o644)
	doc := "# Method\n\nWritten by hand, 2 rounds.\n\n" +
		docblocks.Begin("a", "scripts/a.sh") + "\nold figures 1.27x\n" + docblocks.End("a") + "\n\nbetween\n\n" +
		docblocks.Begin("b", "scripts/b.sh") + "\nkept 9.9x\n" + docblocks.End("b") + "\n\n## Notes\n\nby hand\n"
	path := filepath.Join(dir, "doc.md")
	os.WriteFile(path, []byte(doc), 0o644)
	if err := update(path, results); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want := "# Method\n\nWritten by hand, 2 rounds.\n\n" +
		docblocks.Begin("a", "scripts/a.sh") + "\nnew figures 1.30x\n" + docblocks.End("a") + "\n\nbetween\n\n" +
		docblocks.Begin("b", "scripts/b.sh") + "\nkept 9.9x\n" + docblocks.End("b") + "\n\n## Notes\n\nby hand\n"
	if string(got) != want {
		t.Errorf("after update:\n%s\nwant:\n%s", got, want)
	}
	// A broken marker is an error, and the file is left alone.
	bad := "<!-- BEGIN GENERATED a -->\n"
	os.WriteFile(path, []byte(bad), 0o644)
	if err := update(path, results); err == nil {
		t.Error("a malformed marker was accepted")
	}
	if got, _ := os.ReadFile(path); string(got) != bad {
		t.Error("a document with a malformed marker was changed")
	}
}
