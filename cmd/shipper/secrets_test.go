package main

import (
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Credentials in NATS_URL (and NATS_PASSWORD, NATS_TOKEN) never reach the
// shipper's log, the status file, the spool's events or the metrics. The
// real bin/shipper runs against a NATS server that refuses its password
// (user and password in the URL), and against a server that is not there
// (a token in the URL); the hook writes events meanwhile. Once the failure
// is in the log and the status file, every output is searched for the
// planted secrets.
func TestNATSSecretsNeverLeak(t *testing.T) {
	const pw, tok, pwVar, tokVar = "Pl4ntedPassw0rd", "Pl4ntedT0ken", "Pl4ntedEnvPass", "Pl4ntedEnvT0ken"
	opts := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		Users: []*server.User{{Username: "shipper", Password: "the-right-one"}}}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	defer srv.Shutdown()
	port := srv.Addr().String()[strings.LastIndex(srv.Addr().String(), ":")+1:]
	dead := strconv.Itoa(freePort(t))
	for _, tc := range []struct {
		name, url, failure, shown string
	}{
		{"password refused", "nats://shipper:" + pw + "@127.0.0.1:" + port, "Authorization Violation", "nats://REDACTED@127.0.0.1:" + port},
		{"token, no server", "nats://" + tok + "@127.0.0.1:" + dead, "connection refused", "nats://REDACTED@127.0.0.1:" + dead},
	} {
		t.Run(tc.name, func(t *testing.T) {
			metricsPort := freePort(t)
			s := newSite(t, tc.url, map[string]string{
				"NATS_PASSWORD": pwVar, "NATS_TOKEN": tokVar,
				"METRICS_LISTEN": "127.0.0.1:" + strconv.Itoa(metricsPort), "LIVESTATE": "off",
			})
			p := s.start()
			p.waitNote("READY=1", 10*time.Second)
			for i := 0; i < 3; i++ {
				if err := s.hook("connect", "alice", 100+i); err != nil {
					t.Fatal(err)
				}
			}
			// Until the failure is in the log and the status file is
			// written with the connection still trying.
			deadline := time.Now().Add(20 * time.Second)
			for {
				st := s.status()
				if st["nats_state"] == "connecting" && strings.Contains(p.out.String(), tc.failure) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no %q in 20s: status %v", tc.failure, st)
				}
				time.Sleep(50 * time.Millisecond)
			}
			resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			metrics, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			p.stop()

			outputs := map[string]string{"log (stdout and stderr)": p.out.String(), "metrics": string(metrics)}
			filepath.WalkDir(s.spoolDir, func(path string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					b, _ := os.ReadFile(path)
					outputs[path] = string(b)
				}
				return nil
			})
			if _, ok := outputs[filepath.Join(s.spoolDir, "status.json")]; !ok {
				t.Fatal("no status.json in the spool")
			}
			for what, text := range outputs {
				for _, sec := range []string{pw, tok, pwVar, tokVar} {
					if strings.Contains(text, sec) {
						t.Errorf("%s holds the secret %s:\n%s", what, sec, text)
					}
				}
			}
			if !strings.Contains(p.out.String(), tc.shown) {
				t.Errorf("the log does not name the server (redacted) as %s:\n%s", tc.shown, p.out.String())
			}
		})
	}
}
