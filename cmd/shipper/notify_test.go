package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/sdnotify/notifytest"
)

// sd_notify never holds the shipper up. Its notify socket is one that
// nobody reads, full before the shipper starts (as when the service
// manager, or the demo's stand-in for it, stops reading): the shipper
// still delivers every event while its READY=1, STATUS= and WATCHDOG=1
// find no room, and it stops within the unit's TimeoutStopSec (15s) of
// SIGTERM. READY=1 is not dropped: once the socket is read again it
// arrives after the datagrams that filled it. A STOPPING=1 that the socket
// never takes before the exit is named in the log, not lost silently.
//
// Before the fix (go-systemd's daemon.SdNotify, whose write waits for
// room without a deadline) the shipper hung in its READY=1 and delivered
// nothing.
func TestNotifySocketNobodyReads(t *testing.T) {
	srv := natstest.Run(t)
	s := newSite(t, srv.ClientURL(), nil)
	nc, sock := notifytest.Listen(t, s.dir)
	filled := notifytest.Fill(t, sock)
	t.Logf("notify socket full after %d datagrams", filled)

	p := s.launch(sock, "WATCHDOG_USEC=400000")
	s.appendEvents(20)
	waitFor(t, 20*time.Second, "20 events stored with the notify socket full", func() bool {
		return streamCount(srv.ClientURL(), stream) == 20
	})
	// The loop keeps turning (status every 200ms, watchdog every 100ms,
	// all refused by the full socket): more events go through.
	s.appendEvents(20)
	waitFor(t, 20*time.Second, "40 events stored", func() bool { return streamCount(srv.ClientURL(), stream) == 40 })

	// Read the socket as a service manager that came back would: the
	// filler first, then the shipper's READY=1, retried until it fit.
	got := notifytest.ReadUntil(t, nc, "READY=1", 10*time.Second)
	if got[0] != notifytest.Filler {
		t.Errorf("first datagram %q, want the filler", got[0])
	}
	t.Logf("READY=1 arrived after %d datagrams", len(got)-1)

	// Full again, then SIGTERM: the stop is not held up either.
	notifytest.Fill(t, sock)
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("shipper exited with %v:\n%s", p.err, p.out.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("shipper did not stop within the unit's TimeoutStopSec (15s) of SIGTERM with the notify socket full:\n%s", p.out.String())
	}
	t.Logf("stopped %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	if out := p.out.String(); !strings.Contains(out, "STOPPING=1") {
		t.Errorf("the undelivered STOPPING=1 is not named in the log:\n%s", out)
	}
	if n := streamCount(srv.ClientURL(), stream); n != 40 {
		t.Errorf("stream holds %d messages, want 40", n)
	}
}
