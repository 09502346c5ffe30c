package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
)

// fakeOcctl writes an occtl that answers with the real 1.1.6 fixtures
// (alice and bob connected) and returns its path.
func fakeOcctl(t *testing.T) string {
	t.Helper()
	fx, err := filepath.Abs(filepath.Join("..", "..", "testdata", "occtl-1.1.6-json"))
	if err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\nwhile [ \"$1\" = -s ] || [ \"$1\" = -j ]; do [ \"$1\" = -s ] && shift; shift; done\n" +
		"case \"$*\" in\n--version) echo 'occtl version 1.1.6';;\n" +
		"'show users') cat '" + fx + "/show-users.json';;\n" +
		"'show status') cat '" + fx + "/show-status.json';;\n" +
		"*) echo '[ ]';;\nesac\n"
	path := filepath.Join(t.TempDir(), "occtl")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// scrapeLines returns the endpoint's lines once the live state has read
// occtl (ocserv_sessions 2), failing after within.
func scrapeLines(t *testing.T, url string, within time.Duration) map[string]bool {
	t.Helper()
	var lines map[string]bool
	waitFor(t, within, "a scrape with the live state's sessions", func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			return false
		}
		lines = map[string]bool{}
		for _, l := range strings.Split(string(b), "\n") {
			lines[l] = true
		}
		return lines["ocserv_sessions 2"]
	})
	return lines
}

// METRICS_PER_USER is off unless set: the shipper's endpoint then has no
// per-user series at all (user names are personal data an operator must
// choose to expose), and on when set.
func TestMetricsPerUserOffByDefault(t *testing.T) {
	srv := natstest.Run(t)
	occtl := fakeOcctl(t)
	for _, c := range []struct {
		name    string
		perUser string // "" leaves the key out of the file
	}{{"default", ""}, {"on", "on"}} {
		t.Run(c.name, func(t *testing.T) {
			port := freePort(t)
			extra := map[string]string{
				"LIVESTATE": "on", "CMD_OCCTL": occtl, "CMD_OCSERV": "/bin/false", "SNAPSHOT_INTERVAL": "1s",
				"METRICS_LISTEN": fmt.Sprintf("127.0.0.1:%d", port),
			}
			if c.perUser != "" {
				extra["METRICS_PER_USER"] = c.perUser
			}
			s := newSite(t, srv.ClientURL(), extra)
			p := s.start()
			p.waitNote("READY=1", 5*time.Second)
			lines := scrapeLines(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port), 20*time.Second)
			var perUser []string
			for l := range lines {
				if strings.Contains(l, "ocserv_user_") {
					perUser = append(perUser, l)
				}
			}
			switch c.perUser {
			case "":
				if len(perUser) != 0 {
					t.Errorf("per-user lines without METRICS_PER_USER: %q", perUser)
				}
			default:
				for _, want := range []string{`ocserv_user_sessions{user="alice"} 1`, `ocserv_user_sent_bytes{user="bob"} 400`} {
					if !lines[want] {
						t.Errorf("METRICS_PER_USER=on: no line %q among %q", want, perUser)
					}
				}
			}
			p.stop()
		})
	}
}
