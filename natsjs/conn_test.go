package natsjs

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/syncbuf"
)

// Refused credentials do not end the connection (nats.go's default after
// two refusals in a row), and neither the URL's password nor the client's
// errors carry it into the log or LastError.
func TestRefusedCredentialsKeepTryingAndStaySecret(t *testing.T) {
	const pw = "Pl4ntedPw"
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		Users: []*server.User{{Username: "agent", Password: "right"}}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready")
	}
	defer srv.Shutdown()
	var log syncbuf.Buffer
	url := strings.Replace(srv.ClientURL(), "nats://", "nats://agent:"+pw+"@", 1)
	c, err := Connect(config.NATS{URLs: []string{url}}, Options{ReconnectWait: 20 * time.Millisecond}, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	// Each attempt that reaches the server counts as a reconnect in the
	// client's statistics, refused or not.
	for c.NC.Stats().Reconnects < 5 && time.Now().Before(deadline) {
		if c.State() == StateClosed || c.NC.IsClosed() {
			t.Fatalf("closed after %d refused attempts", c.NC.Stats().Reconnects)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := c.NC.Stats().Reconnects; n < 5 || c.NC.IsClosed() {
		t.Fatalf("%d attempts, closed %v", n, c.NC.IsClosed())
	}
	if !strings.Contains(c.LastError(), "Authorization Violation") {
		t.Errorf("last error %q", c.LastError())
	}
	if strings.Contains(log.String(), pw) || strings.Contains(c.LastError(), pw) {
		t.Errorf("password in the log or last error:\n%s", log.String())
	}
}
