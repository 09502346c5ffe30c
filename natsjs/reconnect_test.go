package natsjs

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/shipper"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// reconnectAttempts is how many failed connection attempts the outage
// below lasts. nats.go gives up after 60 by default; at the shipper's
// production wait (500ms plus up to 500ms of jitter, natsjs.Options) this
// many attempts take more than eight minutes. The test shortens the wait,
// not the number of attempts, which is what a limit would count.
const reconnectAttempts = 1000

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The connection reconnects without a limit, and delivery resumes after
// the outage. A listener stands where the server will be and drops every
// connection it accepts: each is one failed attempt, counted from outside
// the client. After reconnectAttempts of them the connection is still
// trying and the shipper still holds every event; once a real server takes
// the port, everything is delivered exactly once.
func TestReconnectsWithoutLimit(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	var attempts atomic.Int64
	accepting := make(chan struct{})
	go func() {
		defer close(accepting)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			attempts.Add(1)
			c.Close()
		}
	}()
	defer func() { ln.Close(); <-accepting }()

	cfg := config.Default().NATS
	cfg.URLs = []string{fmt.Sprintf("nats://127.0.0.1:%d", port)}
	conn, err := Connect(cfg, Options{Name: "test", ReconnectWait: time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	sp, err := spool.Open(t.TempDir(), spool.Options{Create: true, LockWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	const n = 50
	for i := 0; i < n; i++ {
		if _, err := sp.Append(func(st spool.Stamp) ([]byte, error) {
			ev := events.Event{V: 1, EventID: fmt.Sprintf("ev-%d", st.Seq), ServerID: "vpn1", SpoolID: st.SpoolID, Seq: st.Seq,
				Type: events.Connect, Time: "2026-01-01T00:00:00Z"}
			return ev.Marshal()
		}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var last shipper.Status
	pub := NewPublisher(conn, 64)
	defer pub.Close()
	sh, err := shipper.New(shipper.Options{Spool: sp, Publisher: pub, ServerID: "vpn1", Prefix: "ocserv",
		Reconnected: conn.Connected(), BackoffInitial: time.Millisecond, BackoffMax: 20 * time.Millisecond,
		Poll: 20 * time.Millisecond, StatusInterval: 20 * time.Millisecond,
		OnStatus: func(st shipper.Status) { mu.Lock(); last = st; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	status := func() shipper.Status { mu.Lock(); defer mu.Unlock(); return last }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sh.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	waitUntil(t, 2*time.Minute, fmt.Sprintf("%d failed connection attempts", reconnectAttempts), func() bool {
		if conn.NC.IsClosed() {
			t.Fatalf("nats.go gave up after %d attempts: a reconnect limit applies", attempts.Load())
		}
		return attempts.Load() >= reconnectAttempts
	})
	if s := conn.State(); s != StateConnecting && s != StateReconnecting {
		t.Fatalf("after %d failed attempts the connection is %q; it must still be trying", attempts.Load(), s)
	}
	if conn.NC.IsClosed() {
		t.Fatal("nats.go closed the connection: a reconnect limit applies")
	}
	waitUntil(t, 5*time.Second, "a status with every event pending", func() bool {
		st := status()
		return st.BacklogEvents == n && st.Acknowledged == 0
	})

	// The outage ends: a real server on the same port.
	ln.Close()
	<-accepting
	srv, err := natstest.Start(natstest.Options{Port: port, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer ccancel()
	stream, err := js.CreateStream(cctx, StreamSpec{Name: "OCSERV_EVENTS", Subjects: EventsSubjects("ocserv"), DupWindow: 2 * time.Hour}.Config())
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the connection back", func() bool { return conn.State() == StateConnected })
	waitUntil(t, 30*time.Second, "every event acknowledged", func() bool { return status().Acknowledged == n })
	info, err := stream.Info(cctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n {
		t.Errorf("stream holds %d messages for %d events", info.State.Msgs, n)
	}
	for seq := uint64(1); seq <= n; seq++ {
		m, err := stream.GetMsg(cctx, seq)
		if err != nil {
			t.Fatalf("stream message %d: %v", seq, err)
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); id == "" {
			t.Errorf("stream message %d without Nats-Msg-Id", seq)
		}
	}
	t.Logf("%d failed connection attempts, then every event delivered once", attempts.Load())
}

// EnsureLoop keeps checking the stream while no server answers, and
// creates it once one does.
func TestEnsureLoopOutlastsAnOutage(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens: connections are refused
	cfg := config.Default().NATS
	cfg.URLs = []string{fmt.Sprintf("nats://127.0.0.1:%d", port)}
	conn, err := Connect(cfg, Options{Name: "test", ReconnectWait: 10 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	logs := &countingHandler{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	checked := make(chan struct{})
	done := make(chan struct{})
	spec := StreamSpec{Name: "EV", Subjects: EventsSubjects("ocserv"), DupWindow: time.Hour, Create: true}
	go func() { EnsureLoop(ctx, conn.JS, spec, slog.New(logs), checked); close(done) }()

	waitUntil(t, time.Minute, "a failed stream check", func() bool { return logs.count("stream check failed; retrying") > 0 })
	select {
	case <-checked:
		t.Fatal("checked closed although no server answered")
	default:
	}
	srv, err := natstest.Start(natstest.Options{Port: port, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("EnsureLoop did not finish within a minute of the server's start")
	}
	select {
	case <-checked:
	default:
		t.Error("checked not closed after the stream was created")
	}
	if logs.count("stream created") != 1 || logs.count("stream check recovered") != 1 {
		t.Errorf("log: %v", logs.msgs())
	}
}

type countingHandler struct {
	mu sync.Mutex
	m  []string
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.m = append(h.m, r.Message)
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func (h *countingHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.m {
		if m == msg {
			n++
		}
	}
	return n
}

func (h *countingHandler) msgs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.m...)
}
