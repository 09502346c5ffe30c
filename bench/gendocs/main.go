// Command gendocs puts the last benchmark results into the documents'
// generated blocks (package internal/docblocks): each block NAME gets the
// content of RESULTS/NAME.md. A block whose results file is missing (its
// benchmark was skipped, say for want of root) keeps its last figures, and
// gendocs says so. Only the blocks change; everything around them is
// written by people and stays as it is.
//
//	gendocs [-results bench/results] FILE...
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/docblocks"
)

func main() {
	results := flag.String("results", filepath.Join("bench", "results"), "directory of the benchmarks' NAME.md files")
	flag.Parse()
	failed := false
	for _, f := range flag.Args() {
		if err := update(f, *results); err != nil {
			fmt.Fprintln(os.Stderr, "gendocs:", err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func update(path, results string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	blocks, err := docblocks.Parse(doc)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	out := doc
	for _, b := range blocks {
		content, err := os.ReadFile(filepath.Join(results, b.Name+".md"))
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Printf("%s: block %s kept as it was: no %s.md in %s (%s not run or skipped)\n", path, b.Name, b.Name, results, b.Script)
			continue
		}
		if err != nil {
			return err
		}
		if out, _, err = docblocks.Replace(out, b.Name, content); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		fmt.Printf("%s: block %s from %s.md\n", path, b.Name, b.Name)
	}
	if bytes.Equal(out, doc) {
		return nil
	}
	return os.WriteFile(path, out, 0o644)
}
