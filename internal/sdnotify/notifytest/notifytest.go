// Package notifytest is systemd's side of sd_notify for tests: a notify
// socket that a test reads, or fills and leaves unread.
package notifytest

import (
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Listen makes a unix datagram socket in dir, as systemd's notify socket,
// closed when the test ends.
func Listen(t testing.TB, dir string) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(dir, "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, path
}

// Filler is the content of the datagrams Fill sends.
const Filler = "FILLER=1"

// Fill sends datagrams to the unix datagram socket at path until its
// receive queue is full, and returns how many it took. A sender's own
// send buffer can run out first (its datagrams are charged to it until
// read), so it goes on from fresh sockets until even a fresh one's first
// datagram is refused: then the receiver is what is full.
func Fill(t testing.TB, path string) int {
	t.Helper()
	sent := 0
	for range 1000 {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		first := true
		for {
			err = unix.Sendto(fd, []byte(Filler), 0, &unix.SockaddrUnix{Name: path})
			if err != nil {
				break
			}
			sent++
			first = false
		}
		unix.Close(fd)
		if !errors.Is(err, unix.EAGAIN) {
			t.Fatalf("fill %s: %v", path, err)
		}
		if first {
			return sent
		}
	}
	t.Fatalf("fill %s: not full after %d datagrams", path, sent)
	return 0
}

// ReadUntil reads datagrams from c until one equals want, within d, and
// returns all of them in order.
func ReadUntil(t testing.TB, c *net.UnixConn, want string, d time.Duration) []string {
	t.Helper()
	var got []string
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	for {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no %q on the notify socket within %s (read %d datagrams, the last %q): %v", want, d, len(got), last(got, 5), err)
		}
		got = append(got, string(buf[:n]))
		if string(buf[:n]) == want {
			return got
		}
	}
}

// Drain reads every datagram waiting in c, without waiting for more, and
// returns them in order.
func Drain(t testing.TB, c *net.UnixConn) []string {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	buf := make([]byte, 4096)
	for {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			return true // one attempt: never wait in the poller
		}); err != nil {
			t.Fatal(err)
		}
		if errors.Is(rerr, unix.EAGAIN) {
			return got
		}
		if rerr != nil {
			t.Fatalf("drain the notify socket: %v", rerr)
		}
		got = append(got, string(buf[:n]))
	}
}

func last(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
