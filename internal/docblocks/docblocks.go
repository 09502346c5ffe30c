// Package docblocks owns the generated blocks of the README and docs/: the
// benchmark figures `make bench` measures are written between markers, so
// a figure in the documentation is either inside a block a script wrote or
// a setting, a goal or a test parameter typed by a person, never a
// measurement typed by hand (figures.go checks that).
//
// A block looks like this in Markdown; the markers are HTML comments, so
// they do not show when the page is rendered:
//
//	<!-- BEGIN GENERATED hook by scripts/bench-hook.sh: make bench rewrites this block -->
//	...
//	<!-- END GENERATED hook -->
//
// The block's content is the file bench/results/<name>.md of the last run
// of its script; bench/gendocs puts it in place.
package docblocks

import (
	"bytes"
	"fmt"
	"regexp"
)

// Block is one generated block of a document.
type Block struct {
	Name   string // the results file's base name, e.g. "hook"
	Script string // the script that writes it, e.g. "scripts/bench-hook.sh"
	// Start and End are the byte offsets of the content, between the end
	// of the BEGIN line and the start of the END line.
	Start, End int
	// FirstLine and LastLine are the 1-based lines of the two markers.
	FirstLine, LastLine int
}

var (
	beginRE = regexp.MustCompile(`(?m)^<!-- BEGIN GENERATED ([a-z0-9-]+) by (scripts/[A-Za-z0-9_.-]+): make bench rewrites this block -->\n`)
	endRE   = regexp.MustCompile(`(?m)^<!-- END GENERATED ([a-z0-9-]+) -->$`)
	anyRE   = regexp.MustCompile(`(?m)^<!-- (BEGIN|END) GENERATED`)
)

// Begin and End are the marker lines of a block.
func Begin(name, script string) string {
	return fmt.Sprintf("<!-- BEGIN GENERATED %s by %s: make bench rewrites this block -->", name, script)
}

// End is the closing marker line of block name.
func End(name string) string { return fmt.Sprintf("<!-- END GENERATED %s -->", name) }

// Parse finds the generated blocks of doc. A marker that does not pair up
// (a BEGIN without its END, an END of another block, a nested BEGIN, a
// malformed marker) is an error naming its line.
func Parse(doc []byte) ([]Block, error) {
	var out []Block
	pos := 0
	for {
		loc := anyRE.FindIndex(doc[pos:])
		if loc == nil {
			return out, nil
		}
		at := pos + loc[0]
		line := 1 + bytes.Count(doc[:at], []byte("\n"))
		m := beginRE.FindSubmatchIndex(doc[at:])
		if m == nil || m[0] != 0 {
			return nil, fmt.Errorf("line %d: not a BEGIN marker of the form %q", line, Begin("NAME", "scripts/SCRIPT"))
		}
		b := Block{Name: string(doc[at+m[2] : at+m[3]]), Script: string(doc[at+m[4] : at+m[5]]), Start: at + m[1], FirstLine: line}
		next := anyRE.FindIndex(doc[b.Start:])
		if next == nil {
			return nil, fmt.Errorf("line %d: block %s has no %q", line, b.Name, End(b.Name))
		}
		endAt := b.Start + next[0]
		em := endRE.FindSubmatch(doc[endAt:])
		if em == nil || !bytes.HasPrefix(doc[endAt:], em[0]) || string(em[1]) != b.Name {
			return nil, fmt.Errorf("line %d: block %s must end with %q before any other marker", 1+bytes.Count(doc[:endAt], []byte("\n")), b.Name, End(b.Name))
		}
		b.End = endAt
		b.LastLine = 1 + bytes.Count(doc[:endAt], []byte("\n"))
		out = append(out, b)
		pos = endAt + len(em[0])
	}
}

// Replace returns doc with the content of block name set to content (which
// gets a trailing newline if it lacks one). ok is false when doc has no
// such block.
func Replace(doc []byte, name string, content []byte) (out []byte, ok bool, err error) {
	blocks, err := Parse(doc)
	if err != nil {
		return nil, false, err
	}
	if len(content) > 0 && content[len(content)-1] != '\n' {
		content = append(content, '\n')
	}
	for _, b := range blocks {
		if b.Name != name {
			continue
		}
		out = append(out, doc[:b.Start]...)
		out = append(out, content...)
		out = append(out, doc[b.End:]...)
		return out, true, nil
	}
	return doc, false, nil
}
