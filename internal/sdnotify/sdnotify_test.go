package sdnotify

import (
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/sdnotify/notifytest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/syncbuf"
)

func newLog() (*slog.Logger, *syncbuf.Buffer) {
	b := &syncbuf.Buffer{}
	return slog.New(slog.NewTextHandler(b, nil)), b
}

// returnsWithin fails the test when f has not returned within d: a call
// that blocks on the full socket would never return.
func returnsWithin(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %s: it blocks on the full notify socket", what, d)
	}
}

// What the package replaces: go-systemd's SdNotify on a full socket does
// not return (it waits for room without a deadline). Kept as the reason
// for this package; if a later go-systemd bounds it, this test says so.
func TestGoSystemdSdNotifyBlocksOnAFullSocket(t *testing.T) {
	c, path := notifytest.Listen(t, t.TempDir())
	notifytest.Fill(t, path)
	t.Setenv(Env, path)
	done := make(chan struct{})
	go func() {
		daemon.SdNotify(false, "STATUS=blocked?")
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("daemon.SdNotify returned on a full socket: go-systemd bounds it now; this package may be simplified")
	case <-time.After(time.Second):
	}
	// Room for one datagram ends the blocked call (and the goroutine).
	notifytest.ReadUntil(t, c, notifytest.Filler, 5*time.Second)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("daemon.SdNotify still blocked after the socket had room")
	}
}

// STATUS= and WATCHDOG=1 on a full socket: the call returns at once,
// reports the drop, counts it and warns once; once there is room they go
// again.
func TestSendDropsWhenFull(t *testing.T) {
	c, path := notifytest.Listen(t, t.TempDir())
	log, logs := newLog()
	n := NewAt(path, log)
	defer n.Close(0)
	if !n.Send("STATUS=one") {
		t.Fatal("Send on an empty socket failed")
	}
	if got := notifytest.ReadUntil(t, c, "STATUS=one", 5*time.Second); len(got) != 1 {
		t.Fatalf("read %q", got)
	}
	notifytest.Fill(t, path)
	for i := range 100 {
		var ok bool
		returnsWithin(t, 5*time.Second, "Send", func() { ok = n.Send("STATUS=full") })
		if ok {
			t.Fatalf("send %d on a full socket reported delivered", i)
		}
	}
	if d := n.Dropped(); d != 100 {
		t.Errorf("Dropped() = %d, want 100", d)
	}
	if w := strings.Count(logs.String(), "the notify socket takes nothing"); w != 1 {
		t.Errorf("%d warnings for 100 drops, want 1:\n%s", w, logs)
	}
	notifytest.Drain(t, c)
	if !n.Send("WATCHDOG=1") {
		t.Fatal("Send after the socket was read failed")
	}
	if got := notifytest.ReadUntil(t, c, "WATCHDOG=1", 5*time.Second); len(got) != 1 {
		t.Errorf("after the drain read %q, want only WATCHDOG=1 (dropped ones must not come late)", got)
	}
}

// READY=1 and STOPPING=1 on a full socket: the call returns at once, and
// both arrive, in order, after the datagrams already waiting, once the
// socket is read again.
func TestMustIsQueuedAndArrivesInOrder(t *testing.T) {
	c, path := notifytest.Listen(t, t.TempDir())
	log, logs := newLog()
	n := NewAt(path, log)
	defer n.Close(0)
	filled := notifytest.Fill(t, path)
	returnsWithin(t, 5*time.Second, "Ready", n.Ready)
	returnsWithin(t, 5*time.Second, "Stopping", n.Stopping)
	if p := n.Pending(); !slices.Equal(p, []string{"READY=1", "STOPPING=1"}) {
		t.Fatalf("Pending() = %q", p)
	}
	// A reader that comes back: everything that was waiting, then ours.
	got := notifytest.ReadUntil(t, c, "STOPPING=1", 10*time.Second)
	var ours []string
	for _, g := range got {
		if g != notifytest.Filler {
			ours = append(ours, g)
		}
	}
	if !slices.Equal(ours, []string{"READY=1", "STOPPING=1"}) || len(got) != filled+2 {
		t.Errorf("read %d filler datagrams and %q; want %d and READY=1, STOPPING=1", len(got)-len(ours), ours, filled)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(n.Pending()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if p := n.Pending(); len(p) != 0 {
		t.Errorf("still pending after delivery: %q", p)
	}
	if !strings.Contains(logs.String(), "delivered late") {
		t.Errorf("no log of the late delivery:\n%s", logs)
	}
}

// Close waits for the queue within its bound: with nobody reading it
// returns after the bound and names what was not taken; with room it
// returns as soon as the queue is empty.
func TestCloseIsBounded(t *testing.T) {
	c, path := notifytest.Listen(t, t.TempDir())
	log, logs := newLog()
	n := NewAt(path, log)
	notifytest.Fill(t, path)
	n.Stopping()
	start := time.Now()
	returnsWithin(t, 10*time.Second, "Close", func() { n.Close(300 * time.Millisecond) })
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("Close returned after %s, before its bound, with STOPPING=1 queued", el)
	}
	if !strings.Contains(logs.String(), "STOPPING=1 not taken by the notify socket before exit") {
		t.Errorf("the lost STOPPING=1 is not named:\n%s", logs)
	}
	n.Close(time.Second) // twice: no panic, no wait
	n.Send("STATUS=after close")
	n.Ready()

	// With a reader, Close returns once the queue is taken.
	notifytest.Drain(t, c)
	n2 := NewAt(path, log)
	notifytest.Fill(t, path)
	n2.Stopping()
	read := make(chan []string, 1)
	go func() {
		// Not from the test's goroutine: no t.Fatal here.
		var got []string
		buf := make([]byte, 4096)
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		for !slices.Contains(got, "STOPPING=1") {
			k, err := c.Read(buf)
			if err != nil {
				break
			}
			got = append(got, string(buf[:k]))
		}
		read <- got
	}()
	start = time.Now()
	n2.Close(time.Minute)
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("Close took %s with a reader", el)
	}
	if p := n2.Pending(); len(p) != 0 {
		t.Errorf("pending after Close with a reader: %q", p)
	}
	if got := <-read; !slices.Contains(got, "STOPPING=1") {
		t.Errorf("the reader did not get STOPPING=1: %q", last(got))
	}
}

func last(s []string) []string { return s[max(0, len(s)-3):] }

// Without NOTIFY_SOCKET (not under systemd) everything is a no-op; an
// abstract socket name works; an unsupported address is ignored.
func TestAddresses(t *testing.T) {
	t.Setenv(Env, "")
	n := New(nil)
	if n.Enabled() || n.Send("STATUS=x") {
		t.Fatal("a notifier without NOTIFY_SOCKET sends")
	}
	n.Ready()
	n.Close(time.Second)
	var nilN *Notifier
	nilN.Ready()
	nilN.Send("STATUS=x")
	nilN.Close(0)

	abs := "@ocserv-telemetry-sdnotify-test-" + strconv.Itoa(os.Getpid())
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: abs, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := NewAt(abs, nil)
	a.Ready()
	a.Close(time.Second)
	notifytest.ReadUntil(t, c, "READY=1", 5*time.Second)

	log, logs := newLog()
	v := NewAt("vsock:2:1234", log)
	if v.Enabled() || !strings.Contains(logs.String(), "unsupported NOTIFY_SOCKET") {
		t.Errorf("vsock address: enabled %v, log %s", v.Enabled(), logs)
	}
}
