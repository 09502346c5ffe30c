// Command genconf writes packaging/agent.env.example: every key of the
// agent's configuration (config.Keys), commented out, with its meaning and
// its default. install.sh appends it to a new agent.env and installs it as
// /etc/ocserv-telemetry/agent.env.example; packages ship it too.
//
//	go run ./packaging/genconf > packaging/agent.env.example
//
// The test next to it fails when the committed file is out of date.
package main

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/ocserv-telemetry/ocserv-telemetry/config"
)

//go:generate sh -c "go run . > ../agent.env.example"

func main() {
	if err := write(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "genconf:", err)
		os.Exit(1)
	}
}

// defaultRe finds "(default X)" in a key's documentation.
var defaultRe = regexp.MustCompile(`\(default ([^)]*)\)`)

// Example returns the commented example: for each key a comment with its
// documentation, then "#KEY=" with the default when the documentation
// gives a single-word one.
func Example() string {
	var b strings.Builder
	b.WriteString("# ocserv-telemetry agent configuration: every key, commented out, with\n")
	b.WriteString("# its default. KEY=VALUE lines, as systemd's EnvironmentFile= reads them;\n")
	b.WriteString("# keep the file root-only (0600): it may hold NATS secrets.\n")
	b.WriteString("# Generated from the config package (go run ./packaging/genconf).\n")
	for _, k := range config.Keys() {
		def := ""
		if m := defaultRe.FindStringSubmatch(k.Doc); m != nil && !strings.ContainsAny(m[1], " \t:") {
			def = m[1]
		}
		fmt.Fprintf(&b, "\n# %s: %s\n#%s=%s\n", k.Key, k.Doc, k.Key, def)
	}
	return b.String()
}

func write(w io.Writer) error {
	_, err := io.WriteString(w, Example())
	return err
}
