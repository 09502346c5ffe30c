package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ingest"
)

// docs/configuration.md lists every ledger key with its documentation.
func TestConfigDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range ledgerKeys {
		if !strings.Contains(string(b), "| `"+k+"` | "+v.doc+" |") {
			t.Errorf("docs/configuration.md has no row for %s: | `%s` | %s |", k, k, v.doc)
		}
	}
}

func TestLoadSettings(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ledger.env")
	os.WriteFile(p, []byte(`# comment
NATS_URL=nats://10.1.2.3:4222
SUBJECT_PREFIX=fleet
LEDGER_DATABASE="postgres://ledger@db/ledger"
LEDGER_RETAIN_SESSIONS=90d
LEDGER_RETAIN_SAMPLES=12h
LEDGER_BATCH=0
LEDGER_CONSUMER=bad.name
SERVER_ID=ignored-by-the-ledger
COLOUR=blue
`), 0o600)
	s, probs, err := loadSettings(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Database != "postgres://ledger@db/ledger" || s.Agent.SubjectPrefix != "fleet" || s.Agent.NATS.URLs[0] != "nats://10.1.2.3:4222" ||
		s.Retention.Sessions != 90*24*time.Hour || s.Retention.Samples != 12*time.Hour || s.Batch != ingest.DefaultBatch || s.Consumer != "ocserv_ledger" {
		t.Errorf("settings %+v", s)
	}
	want := []string{"line 7: LEDGER_BATCH", "line 8: LEDGER_CONSUMER", "line 9: SERVER_ID: unknown key", "line 10: COLOUR: unknown key"}
	if len(probs) != len(want) {
		t.Fatalf("problems %q, want %d", probs, len(want))
	}
	for i, w := range want {
		if !strings.Contains(probs[i], w) {
			t.Errorf("problem %d: %q, want %q", i, probs[i], w)
		}
	}
	if _, probs, _ := loadSettings(filepath.Join(dir, "missing.env")); len(probs) != 1 || !strings.Contains(probs[0], "defaults") {
		t.Errorf("missing file: %q", probs)
	}
}

// The ledger.env lines docs/nats.md gives for a fleet are taken as they
// are: the ledger's own inbox prefix, operators' answers under _OPS, the
// console's command answers under _OPS.console.
func TestFleetNATSSettings(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ledger.env")
	os.WriteFile(p, []byte("NATS_USER=ledger\nNATS_PASSWORD=ledger-secret\nNATS_INBOX_PREFIX=_INBOX_ledger\n"+
		"LEDGER_INBOX_PREFIXES=_OPS\nLEDGER_CONSOLE_INBOX_PREFIX=_OPS.console\n"), 0o600)
	s, probs, err := loadSettings(p)
	if err != nil || len(probs) != 0 {
		t.Fatalf("%v %q", err, probs)
	}
	if s.Agent.NATS.User != "ledger" || s.Agent.NATS.InboxPrefix != "_INBOX_ledger" || len(s.InboxPrefixes) != 1 || s.InboxPrefixes[0] != "_OPS" ||
		s.Console.InboxPrefix != "_OPS.console" {
		t.Errorf("settings: NATS %+v, inbox prefixes %q, console %q", s.Agent.NATS, s.InboxPrefixes, s.Console.InboxPrefix)
	}
}
