package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/sdnotify/notifytest"
)

// sd_notify never holds the ledger up: with a notify socket that nobody
// reads, full before it starts, it ingests the stream, its READY=1 is not
// dropped (it arrives once the socket is read again), and with the socket
// full again it stops within the unit's TimeoutStopSec (30s) of SIGTERM,
// naming the STOPPING=1 the socket never took. Before the fix
// (go-systemd's daemon.SdNotify, which waits for room without a
// deadline) the ledger's main goroutine hung in READY=1 and never saw
// the signal.
func TestNotifySocketNobodyReads(t *testing.T) {
	b := newBed(t, "sqlite", nil)
	b.publish(workload(3, 200))
	nc, sock := notifytest.Listen(t, b.dir)
	notifytest.Fill(t, sock)
	p := b.serveEnv(b.cfg, "NOTIFY_SOCKET="+sock)
	s := b.open()
	b.waitApplied(s, b.lastSeq(), time.Minute, p)
	got := notifytest.ReadUntil(t, nc, "READY=1", 10*time.Second)
	t.Logf("READY=1 arrived after %d datagrams", len(got)-1)

	notifytest.Fill(t, sock)
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the ledger did not stop within the unit's TimeoutStopSec (30s) of SIGTERM with the notify socket full:\n%s", p.out.String())
	}
	t.Logf("stopped %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	if !p.cmd.ProcessState.Success() {
		t.Errorf("exit: %v\n%s", p.cmd.ProcessState, p.out.String())
	}
	if out := p.out.String(); !strings.Contains(out, "STOPPING=1 not taken") {
		t.Errorf("the undelivered STOPPING=1 is not named in the log:\n%s", out)
	}
}
