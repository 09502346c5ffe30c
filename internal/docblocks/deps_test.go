package docblocks

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// docs/dependencies.md names every module go.mod requires directly (what
// it does here and why), and its list of what the hook links is what
// `go list -deps ./cmd/hook` says: a dependency cannot arrive, or reach
// the hook, without the page saying so.
func TestDependenciesDocumented(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "dependencies.md"))
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range directRequires(gomod) {
		if !bytes.Contains(doc, []byte(m)) {
			t.Errorf("go.mod requires %s directly; docs/dependencies.md does not say what for", m)
		}
	}

	hookDoc := section(string(doc), "## The hook stays small", "## ")
	if hookDoc == "" {
		t.Fatal(`docs/dependencies.md has no "## The hook stays small" section`)
	}
	cmd := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}}{{end}}{{end}}", "./cmd/hook")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/hook: %v", err)
	}
	linked := map[string]bool{}
	for _, m := range strings.Fields(string(out)) {
		linked[m] = true
		if !strings.Contains(hookDoc, m) {
			t.Errorf("the hook links %s; docs/dependencies.md's hook section does not name it", m)
		}
	}
	for _, m := range []string{"github.com/nats-io/nats.go", "github.com/prometheus/client_golang", "github.com/spf13/cobra", "github.com/google/uuid", "github.com/gofrs/flock"} {
		if linked[m] {
			t.Errorf("the hook links %s; docs/dependencies.md says it does not", m)
		}
	}
}

// directRequires lists go.mod's requirements without "// indirect".
func directRequires(gomod []byte) []string {
	var out []string
	in := false
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "require (":
			in = true
		case l == ")":
			in = false
		case strings.HasPrefix(l, "require ") && !strings.HasSuffix(l, "("):
			if f := strings.Fields(l); !strings.Contains(l, "// indirect") {
				out = append(out, f[1])
			}
		case in && l != "" && !strings.Contains(l, "// indirect"):
			out = append(out, strings.Fields(l)[0])
		}
	}
	return out
}

// section returns the text from the heading to the next heading of its
// level.
func section(doc, heading, next string) string {
	i := strings.Index(doc, heading)
	if i < 0 {
		return ""
	}
	rest := doc[i+len(heading):]
	if j := strings.Index(rest, "\n"+next); j >= 0 {
		rest = rest[:j]
	}
	return rest
}
