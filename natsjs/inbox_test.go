package natsjs

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/shipper"
)

// A host whose NATS user may subscribe only under its own inbox prefix
// (docs/nats.md) checks the stream and gets its publishes acknowledged
// with NATS_INBOX_PREFIX set; without it, nats.go's _INBOX replies are
// refused by the server and nothing is acknowledged. This is why the
// prefix exists: the alternative, subscribe rights on _INBOX.>, lets a
// taken-over host read every other client's answers, the events the
// ledger pulls included.
func TestInboxPrefixWithOwnInboxRights(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(),
		Users: []*server.User{
			{Username: "admin", Password: "admin"},
			{Username: "vpn1", Password: "vpn1", Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{"ocserv.events.vpn1.>", "$JS.API.STREAM.INFO.OCSERV_EVENTS"}},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX_vpn1.>"}},
			}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	admin, err := nats.Connect(srv.ClientURL(), nats.UserInfo("admin", "admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ajs, _ := jetstream.New(admin)
	spec := StreamSpec{Name: "OCSERV_EVENTS", Subjects: EventsSubjects("ocserv"), DupWindow: time.Minute}
	if _, err := ajs.CreateStream(context.Background(), spec.Config()); err != nil {
		t.Fatal(err)
	}

	try := func(prefix string) error {
		cfg := config.NATS{URLs: []string{srv.ClientURL()}, User: "vpn1", Password: "vpn1", InboxPrefix: prefix}
		c, err := Connect(cfg, Options{AckTimeout: 2 * time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := EnsureStream(ctx, c.JS, spec); err != nil {
			return err
		}
		p := NewPublisher(c, 8)
		defer p.Close()
		done := make(chan error, 1)
		if err := p.Publish(shipper.Message{Subject: "ocserv.events.vpn1.connect", Data: []byte(`{}`), EventID: prefix + "-1"}, func(err error) { done <- err }); err != nil {
			return err
		}
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return context.DeadlineExceeded
		}
	}
	if err := try("_INBOX_vpn1"); err != nil {
		t.Fatalf("with NATS_INBOX_PREFIX=_INBOX_vpn1: %v", err)
	}
	if err := try(""); err == nil {
		t.Fatal("with nats.go's _INBOX the host's narrow rights still worked: the test proves nothing")
	}
}
