package docblocks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The repository's own README and docs/: every generated block names a
// script that exists and writes that block's results file, and no figure
// that reads like a measurement sits outside a generated block. This is
// what keeps a hand-typed benchmark figure from coming back.
func TestDocsHaveNoHandTypedFigures(t *testing.T) {
	root := filepath.Join("..", "..")
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files := append([]string{filepath.Join(root, "README.md")}, docs...)
	for _, f := range files {
		name, _ := filepath.Rel(root, f)
		t.Run(name, func(t *testing.T) {
			doc, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			blocks, err := Parse(doc)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for _, b := range blocks {
				script, err := os.ReadFile(filepath.Join(root, b.Script))
				if err != nil {
					t.Errorf("%s:%d: block %s names %s: %v", name, b.FirstLine, b.Name, b.Script, err)
					continue
				}
				if !strings.Contains(string(script), b.Name+".md") {
					t.Errorf("%s:%d: block %s: %s does not write %s.md to bench/results", name, b.FirstLine, b.Name, b.Script, b.Name)
				}
			}
			figs, err := Figures(doc)
			if err != nil {
				t.Fatal(err)
			}
			for _, fg := range figs {
				t.Errorf("%s:%s", name, fg)
			}
			if len(figs) > 0 {
				t.Logf("A measured figure belongs in a block a benchmark script writes (see docs/benchmarks.md, "+
					"bench/gendocs); a setting, goal or test parameter that reads like one can end its line with %q.", OKMarker+" why -->")
			}
		})
	}
}

func TestParseAndReplace(t *testing.T) {
	doc := "# T\n\n" + Begin("hook", "scripts/bench-hook.sh") + "\nold 1.27x\n" + End("hook") + "\n\ntail 3.5 ms\n"
	blocks, err := Parse([]byte(doc))
	if err != nil || len(blocks) != 1 || blocks[0].Name != "hook" || blocks[0].Script != "scripts/bench-hook.sh" ||
		blocks[0].FirstLine != 3 || blocks[0].LastLine != 5 {
		t.Fatalf("Parse = %+v, %v", blocks, err)
	}
	out, ok, err := Replace([]byte(doc), "hook", []byte("new 1.30x"))
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	want := "# T\n\n" + Begin("hook", "scripts/bench-hook.sh") + "\nnew 1.30x\n" + End("hook") + "\n\ntail 3.5 ms\n"
	if string(out) != want {
		t.Errorf("Replace:\n%s\nwant:\n%s", out, want)
	}
	if _, ok, _ := Replace([]byte(doc), "other", nil); ok {
		t.Error("Replace found a block that is not there")
	}
	for name, bad := range map[string]string{
		"no end":        Begin("a", "scripts/x.sh") + "\n",
		"other end":     Begin("a", "scripts/x.sh") + "\n" + End("b") + "\n",
		"nested":        Begin("a", "scripts/x.sh") + "\n" + Begin("b", "scripts/x.sh") + "\n" + End("b") + "\n" + End("a") + "\n",
		"stray end":     End("a") + "\n",
		"bad begin":     "<!-- BEGIN GENERATED a -->\n" + End("a") + "\n",
		"not a script":  "<!-- BEGIN GENERATED a by /tmp/x.sh: make bench rewrites this block -->\n" + End("a") + "\n",
		"upper-case id": Begin("Hook", "scripts/x.sh") + "\n" + End("Hook") + "\n",
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%s: parsed without error", name)
		}
	}
}

func TestFigures(t *testing.T) {
	cases := []struct {
		line string
		want []string // the figures reported, in order
	}{
		// Measurements.
		{"one atomic transaction per connect, 15x to 35x faster per cycle", []string{"15x", "35x"}},
		{"hook / floor: **1.27x** on this machine", []string{"1.27x"}},
		{"ocserv-fw spawns ~25 iptables processes (~0.5 s per cycle here)", []string{"0.5 s", "~25"}},
		{"it took 522.2 ms", []string{"522.2 ms"}},
		{"p99 0.82 ms from the hook's exit", []string{"0.82 ms"}},
		{"10 to 11 of the 200 waited past the budget", []string{"10 to 11 of the 200"}},
		{"the shipper did 108061 events/s", []string{"108061 events/s"}},
		{"peak RSS under 64 MiB, at 100 events/s, p99 ≤ 50 ms", nil},
		{"deleting takes 8–20 ms here", []string{"8–20 ms"}},
		{"its disconnect (445 ms) dwarfs its connect (38 ms)", []string{"445 ms", "38 ms"}},
		{"delivered within a millisecond of the hook's exit", []string{"a millisecond"}},
		{"about 3 ms whole-process", []string{"about 3"}},
		// Goals, settings, parameters, code, links.
		{"hook / floor (goal ≤ 1.3x); seed shell / hook (goal ≥ 4x)", nil},
		{"latency p99 ≤ 50 ms at 100 events/s", nil},
		{"| `HOOK_BUDGET` | hard limit (default 500ms) |", nil},
		{"retried every 10s; the shipper runs on", nil},
		{"run `hook --budget 1.5s` or see [x](docs/a-1.5x.md)", nil},
		{"a 3 s outage against a 1 s window " + OKMarker + " the test's parameters -->", nil},
		{"ocserv 1.1.6 and 1.3.0, Debian 12", nil},
		{"the x86_64 machine, 2 cores", nil},
	}
	for _, c := range cases {
		figs, err := Figures([]byte(c.line + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, f := range figs {
			got = append(got, f.Text)
		}
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%q: figures %q, want %q", c.line, got, c.want)
		}
	}
	// Inside a generated block or fenced code, anything goes.
	doc := Begin("x", "scripts/x.sh") + "\n1.27x, 3.5 ms\n" + End("x") + "\n```\ntook 2.5 ms\n```\n"
	if figs, err := Figures([]byte(doc)); err != nil || len(figs) != 0 {
		t.Errorf("figures in a block or code: %v %v", figs, err)
	}
}
