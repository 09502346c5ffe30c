package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseValues(t *testing.T) {
	in := `# comment
SERVER_ID=vpn-1
SPOOL_DIR="/var/tmp/spool/"
SPOOL_FSYNC='off'
FIREWALL = on
HOOK_BUDGET=300ms
NATS_URL=nats://a:4222, tls://b:4222
SUBJECT_PREFIX=corp.vpn

NATS_DOMAIN=leaf_1
`
	c, probs, err := Parse(strings.NewReader(in))
	if err != nil || len(probs) != 0 {
		t.Fatalf("Parse: %v, problems %v", err, probs)
	}
	if c.ServerID != "vpn-1" || c.SpoolDir != "/var/tmp/spool" || c.Fsync || c.Firewall != FirewallOn ||
		c.HookBudget != 300*time.Millisecond || len(c.NATS.URLs) != 2 || c.NATS.URLs[1] != "tls://b:4222" ||
		c.SubjectPrefix != "corp.vpn" || c.NATS.Domain != "leaf_1" {
		t.Errorf("got %+v", c)
	}
	d := Default()
	if c.LockBudget != d.LockBudget || c.NATS.StreamName != d.NATS.StreamName {
		t.Error("keys not in the file lost their defaults")
	}
}

// Every bad value is reported with its key and line, and keeps the default.
func TestParseProblemsNameTheKey(t *testing.T) {
	tests := []struct{ line, key string }{
		{"SERVER_ID=vpn.example.com", "SERVER_ID"},
		{"SERVER_ID=", "SERVER_ID"},
		{"SPOOL_DIR=relative/path", "SPOOL_DIR"},
		{"SPOOL_FSYNC=maybe", "SPOOL_FSYNC"},
		{"FIREWALL=iptables", "FIREWALL"},
		{"HOOK_BUDGET=5", "HOOK_BUDGET"},
		{"HOOK_BUDGET=1h", "HOOK_BUDGET"},
		{"NATS_URL=http://x:80", "NATS_URL"},
		{"NATS_URL=", "NATS_URL"},
		{"SUBJECT_PREFIX=a..b", "SUBJECT_PREFIX"},
		{"SUBJECT_PREFIX=a.>", "SUBJECT_PREFIX"},
		{"SHIPPER_MAX_IN_FLIGHT=0", "SHIPPER_MAX_IN_FLIGHT"},
		{"SPOOL_MAX_BYTES=lots", "SPOOL_MAX_BYTES"},
		{"USERNAME=alice", "USERNAME"}, // an ocserv variable is not ours
		{"NO_EQUALS_SIGN", "NO_EQUALS_SIGN"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			c, probs, err := Parse(strings.NewReader("# x\n" + tt.line + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			if len(probs) != 1 {
				t.Fatalf("problems = %v, want one", probs)
			}
			msg := probs[0].Error()
			if probs[0].Key != tt.key || probs[0].Line != 2 || !strings.Contains(msg, "line 2: "+tt.key) {
				t.Errorf("problem %q does not name key %s on line 2", msg, tt.key)
			}
			d := Default()
			if c.ServerID != d.ServerID || c.SpoolDir != d.SpoolDir || c.HookBudget != d.HookBudget || c.Fsync != d.Fsync {
				t.Errorf("a bad value changed the config: %+v", c)
			}
		})
	}
}

func TestRepeatedKey(t *testing.T) {
	c, probs, _ := Parse(strings.NewReader("SERVER_ID=a\nSERVER_ID=b\n"))
	if c.ServerID != "b" || len(probs) != 1 || !strings.Contains(probs[0].Msg, "first on line 1") {
		t.Errorf("got %q, %v", c.ServerID, probs)
	}
}

func TestLoadMissingAndPath(t *testing.T) {
	c, probs, err := Load(filepath.Join(t.TempDir(), "none.env"))
	if err != nil || len(probs) != 1 || !strings.Contains(probs[0].Msg, "using defaults") {
		t.Fatalf("Load(missing) = %v, %v", probs, err)
	}
	if c.SpoolDir != Default().SpoolDir {
		t.Error("defaults not used")
	}
	env := func(v string) func(string) string { return func(string) string { return v } }
	if p := Path("", env("")); p != DefaultPath {
		t.Errorf("Path() = %s", p)
	}
	if p := Path("", env("/x.env")); p != "/x.env" {
		t.Errorf("Path(env) = %s", p)
	}
	if p := Path("/flag.env", env("/x.env")); p != "/flag.env" {
		t.Errorf("Path(flag) = %s", p)
	}
}

func TestLoadUnreadable(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Load(dir); err == nil { // a directory cannot be read as a file
		t.Error("Load(directory) did not fail")
	}
	p := filepath.Join(dir, "a.env")
	os.WriteFile(p, []byte("SERVER_ID=x\n"), 0o600)
	if c, _, err := Load(p); err != nil || c.ServerID != "x" {
		t.Errorf("Load = %v, %v", c.ServerID, err)
	}
}

func TestSanitizeToken(t *testing.T) {
	tests := map[string]string{
		"vpn1.example.com": "vpn1_example_com",
		"host name*>":      "host_name__",
		"":                 "unnamed",
		"ok-name_1":        "ok-name_1",
	}
	for in, want := range tests {
		got := SanitizeToken(in)
		if got != want {
			t.Errorf("SanitizeToken(%q) = %q, want %q", in, got, want)
		}
		if err := ValidToken(got); err != nil {
			t.Errorf("SanitizeToken(%q) = %q is not valid: %v", in, got, err)
		}
	}
}

func TestKeysDocumented(t *testing.T) {
	for _, k := range Keys() {
		if k.Doc == "" {
			t.Errorf("key %s has no documentation", k.Key)
		}
		// Keys must not collide with what ocserv puts in a script's environment.
		for _, ocserv := range []string{"REASON", "ID", "USERNAME", "GROUPNAME", "DEVICE", "VHOST", "HOSTNAME"} {
			if k.Key == ocserv || strings.HasPrefix(k.Key, "OCSERV_") || strings.HasPrefix(k.Key, "IP_") || strings.HasPrefix(k.Key, "STATS_") {
				t.Errorf("key %s collides with ocserv's script variables", k.Key)
			}
		}
	}
}

// docs/configuration.md must list every key, so the docs cannot drift.
func TestEveryKeyDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if !strings.Contains(string(b), "| `"+k.Key+"` |") {
			t.Errorf("docs/configuration.md does not list %s", k.Key)
		}
	}
}

// The command service's own credentials replace the agent's whole, so the
// two identities never mix; without them it uses the agent's.
func TestCommanderNATS(t *testing.T) {
	c, probs, err := Parse(strings.NewReader("NATS_URL=nats://h:4222\nNATS_USER=shipper\nNATS_PASSWORD=s\nNATS_CA=/ca.pem\n"))
	if err != nil || len(probs) > 0 {
		t.Fatal(err, probs)
	}
	if n := c.CommanderNATS(); n.User != "shipper" || n.Password != "s" || n.CAFile != "/ca.pem" {
		t.Fatalf("without CMD_NATS_*: %+v", n)
	}
	c, probs, err = Parse(strings.NewReader("NATS_URL=nats://h:4222\nNATS_USER=shipper\nNATS_PASSWORD=s\nNATS_CA=/ca.pem\nCMD_NATS_CREDS=/etc/commander.creds\n"))
	if err != nil || len(probs) > 0 {
		t.Fatal(err, probs)
	}
	n := c.CommanderNATS()
	if n.Creds != "/etc/commander.creds" || n.User != "" || n.Password != "" || n.CAFile != "/ca.pem" || n.URLs[0] != "nats://h:4222" {
		t.Fatalf("with CMD_NATS_CREDS: %+v", n)
	}
	if c.NATS.User != "shipper" {
		t.Fatal("the agent's own credentials changed")
	}
	// Its own inbox prefix (the verdicts bucket's watcher) is not a
	// credential: it replaces the agent's prefix alone.
	c, probs, err = Parse(strings.NewReader("NATS_USER=vpn1\nNATS_INBOX_PREFIX=_INBOX_vpn1\nCMD_NATS_USER=vpn1-commander\nCMD_NATS_INBOX_PREFIX=_INBOX_vpn1_cmd\n"))
	if err != nil || len(probs) > 0 {
		t.Fatal(err, probs)
	}
	if n := c.CommanderNATS(); n.InboxPrefix != "_INBOX_vpn1_cmd" || n.User != "vpn1-commander" || c.NATS.InboxPrefix != "_INBOX_vpn1" {
		t.Fatalf("with CMD_NATS_INBOX_PREFIX: %+v (agent's prefix %q)", n, c.NATS.InboxPrefix)
	}
	c, _, _ = Parse(strings.NewReader("NATS_INBOX_PREFIX=_INBOX_vpn1\nCMD_NATS_INBOX_PREFIX=_INBOX_vpn1_cmd\n"))
	if n := c.CommanderNATS(); n.InboxPrefix != "_INBOX_vpn1_cmd" || n.User != "" {
		t.Fatalf("CMD_NATS_INBOX_PREFIX alone: %+v", n)
	}
	if _, probs, _ := Parse(strings.NewReader("CMD_NATS_INBOX_PREFIX=_INBOX.>\n")); len(probs) == 0 {
		t.Error("CMD_NATS_INBOX_PREFIX with a wildcard was accepted")
	}
}

// Lines longer than the scanner's first buffer are read whole (up to the
// 1 MiB bound), and SERVER_ID's default (the host name) is filled only
// when the file sets none.
func TestParseLongLineAndServerIDDefault(t *testing.T) {
	long := strings.Repeat("p", 200<<10)
	c, probs, err := Parse(strings.NewReader("SERVER_ID=vpn-2\nNATS_PASSWORD=" + long + "\nSPOOL_DIR=/var/tmp/s\n"))
	if err != nil || len(probs) != 0 {
		t.Fatalf("err %v, problems %v", err, probs)
	}
	if c.NATS.Password != long || c.SpoolDir != "/var/tmp/s" || c.ServerID != "vpn-2" {
		t.Errorf("password of %d bytes, spool %q, server %q", len(c.NATS.Password), c.SpoolDir, c.ServerID)
	}
	if _, _, err := Parse(strings.NewReader("NATS_PASSWORD=" + strings.Repeat("p", 1<<20) + "\n")); err == nil {
		t.Error("a line over 1 MiB was accepted")
	}
	c, _, _ = Parse(strings.NewReader("SPOOL_DIR=/var/tmp/s\n"))
	if c.ServerID == "" || c.ServerID != DefaultServerID() {
		t.Errorf("SERVER_ID unset: got %q, want the host's %q", c.ServerID, DefaultServerID())
	}
}
