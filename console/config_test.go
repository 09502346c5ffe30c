package console

import (
	"os"
	"strings"
	"testing"
	"time"
)

// Every key is in docs/configuration.md with the same words.
func TestEveryKeyDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if !strings.Contains(string(b), "| `"+k.Key+"` | "+k.Doc+" |") {
			t.Errorf("docs/configuration.md lacks the row of %s: | `%s` | %s |", k.Key, k.Key, k.Doc)
		}
	}
}

func TestConfigKeysNameWhatIsWrong(t *testing.T) {
	for _, tc := range []struct{ key, val, want string }{
		{"LEDGER_CONSOLE", "yes", `"yes" is not on or off`},
		{"LEDGER_CONSOLE_LISTEN", "8790", `"8790" is not host:port`},
		{"LEDGER_CONSOLE_USERS", "users", `"users" is not an absolute path`},
		{"LEDGER_CONSOLE_SERVER_ID", "a.b", `"a.b" is not a NATS subject token`},
		{"LEDGER_CONSOLE_SESSION_TTL", "10s", `"10s" is not a duration from 1m0s`},
		{"LEDGER_CONSOLE_TRUSTED_PROXIES", "10.0.0.0/8, nonsense", `"nonsense" is not an address or CIDR`},
		{"LEDGER_CONSOLE_ORIGINS", "console.example.com", `is not an origin like https://`},
		{"LEDGER_CONSOLE_LOGIN_BURST", "0", `"0" is not a number from 1 to 1000`},
	} {
		c := DefaultConfig()
		err := c.SetKey(tc.key, tc.val)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%s: %v, want %q", tc.key, tc.val, err, tc.want)
		}
	}
	c := DefaultConfig()
	for k, v := range map[string]string{"LEDGER_CONSOLE": "on", "LEDGER_CONSOLE_TRUSTED_PROXIES": "127.0.0.1, 10.1.0.0/16",
		"LEDGER_CONSOLE_SESSION_TTL": "8h"} {
		if err := c.SetKey(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if !c.Enabled || len(c.TrustedProxies) != 2 || c.SessionTTL != 8*time.Hour {
		t.Fatalf("config %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("loopback without TLS: %v", err)
	}
	c.Listen = "192.0.2.1:443"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Fatalf("network without TLS: %v", err)
	}
	c.TLSCert = "/etc/cert.pem"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("cert without key: %v", err)
	}
	c.TLSKey = "/etc/key.pem"
	if err := c.Validate(); err != nil {
		t.Fatalf("network with TLS: %v", err)
	}
}
