package main

import (
	"os"
	"strings"
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/config"
)

// The committed example is what the generator makes from config.Keys, so a
// key added to the config package without regenerating fails here.
func TestCommittedExampleIsCurrent(t *testing.T) {
	got, err := os.ReadFile("../agent.env.example")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != Example() {
		t.Fatalf("packaging/agent.env.example is out of date: run go generate ./packaging/genconf")
	}
}

// Every key is in the example, and uncommenting every "#KEY=value" line
// that has a value gives a file the config package reads without a single
// problem (the defaults written there are valid values).
func TestExampleUncommentedParsesClean(t *testing.T) {
	ex := Example()
	var active []string
	for _, k := range config.Keys() {
		if !strings.Contains(ex, "\n#"+k.Key+"=") {
			t.Errorf("key %s missing from the example", k.Key)
		}
	}
	for _, l := range strings.Split(ex, "\n") {
		if strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "# ") && !strings.HasSuffix(l, "=") {
			active = append(active, strings.TrimPrefix(l, "#"))
		}
	}
	if len(active) < 10 {
		t.Fatalf("only %d keys carry a default in the example: %q", len(active), active)
	}
	_, probs, err := config.Parse(strings.NewReader(strings.Join(active, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		t.Errorf("uncommented example: %v", p)
	}
}
