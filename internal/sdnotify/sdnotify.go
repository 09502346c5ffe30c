// Package sdnotify tells systemd about a service's state (sd_notify(3):
// READY=1, STATUS=, WATCHDOG=1, STOPPING=1) without ever blocking the
// caller. The shipper, the command service and the ledger use it.
//
// Why not coreos/go-systemd's daemon.SdNotify, which they used before: it
// dials $NOTIFY_SOCKET and writes on the net.UnixConn without a deadline.
// A unix datagram socket whose receive queue is full (net.unix.max_dgram_qlen
// datagrams waiting) makes that write wait in Go's poller until the reader
// takes one: forever when nobody reads (a service manager that stopped
// reading; the demo's stand-in for systemd once it stopped reading after
// READY=1). The shipper sends STATUS= from its delivery loop every few
// seconds, so a full socket stopped delivery and then the shutdown.
//
// Here every send is one sendto(2) with MSG_DONTWAIT, which returns EAGAIN
// at once when the socket is full, and what happens then depends on the
// message:
//
//   - STATUS= and WATCHDOG=1 (Send) are dropped and counted. A newer
//     STATUS= follows within seconds and says everything the dropped one
//     did; a caller that feeds the watchdog tries again at its next turn
//     (the shipper several times per WatchdogSec), and a service manager
//     that reads nothing sees no pings however long one waits.
//   - READY=1 and STOPPING=1 (Must) are never dropped while the process
//     runs: one that does not fit is queued, in order, and a goroutine
//     retries it (every 10ms at first, backing off to once a second) until
//     the socket takes it. The caller goes on at once: the shipper's loop
//     delivers and its shutdown drains while READY=1 waits for room.
//     Close gives the queue a bounded time; what is still queued then is
//     logged by name, and the process exits: systemd learns of the stop
//     from the main process's exit, and of a start that never reported
//     READY=1 from its own TimeoutStartSec.
package sdnotify

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Env is the variable systemd sets for Type=notify services.
const Env = "NOTIFY_SOCKET"

// Retry bounds for queued READY=1 and STOPPING=1.
const (
	firstRetry = 10 * time.Millisecond
	maxRetry   = time.Second
)

// Notifier sends to one notify socket. Its zero value and a nil *Notifier
// send nothing.
type Notifier struct {
	log  *slog.Logger
	addr *unix.SockaddrUnix // nil: no notify socket, every call is a no-op
	name string             // the address as given, for messages

	mu     sync.RWMutex // fd against Close
	fd     int
	closed bool

	qmu   sync.Mutex
	queue []queued // READY=1 / STOPPING=1 not taken yet, oldest first
	wake  chan struct{}
	empty chan struct{} // closed and replaced as the queue empties
	stop  chan struct{}
	done  chan struct{}

	dropped atomic.Uint64
	warned  atomic.Bool
}

type queued struct {
	state string
	since time.Time
}

// New returns a Notifier for $NOTIFY_SOCKET; without it (not started by
// systemd) every call does nothing.
func New(log *slog.Logger) *Notifier { return NewAt(os.Getenv(Env), log) }

// NewAt returns a Notifier for the socket address addr as NOTIFY_SOCKET
// gives it: a path, or "@name" for the abstract namespace. Another kind
// (systemd's "vsock:" for virtual machines) is reported and ignored.
func NewAt(addr string, log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{log: log, name: addr, fd: -1}
	if addr == "" {
		return n
	}
	if !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@") {
		log.Warn("sd_notify: unsupported NOTIFY_SOCKET (a path or @abstract name); not notifying systemd", "notify_socket", addr)
		return n
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		log.Warn("sd_notify: cannot make a socket; not notifying systemd", "err", err.Error())
		return n
	}
	// x/sys/unix turns a leading '@' into the abstract namespace's NUL.
	n.addr = &unix.SockaddrUnix{Name: addr}
	n.fd = fd
	n.wake = make(chan struct{}, 1)
	n.empty = make(chan struct{})
	close(n.empty) // nothing queued yet
	n.stop = make(chan struct{})
	n.done = make(chan struct{})
	go n.retry()
	return n
}

// Enabled reports whether there is a notify socket to send to.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// send is one attempt that never waits.
func (n *Notifier) send(state string) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		return errClosed
	}
	return unix.Sendto(n.fd, []byte(state), unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, n.addr)
}

var errClosed = errors.New("notifier closed")

// Send sends a state that may be lost (STATUS=, WATCHDOG=1): when the
// socket cannot take it at once it is dropped, counted and, the first
// time, reported. It reports whether the datagram went.
func (n *Notifier) Send(state string) bool {
	if !n.Enabled() {
		return false
	}
	err := n.send(state)
	if err == nil {
		return true
	}
	d := n.dropped.Add(1)
	if !errors.Is(err, errClosed) && n.warned.CompareAndSwap(false, true) {
		n.log.Warn("sd_notify: the notify socket takes nothing (full: is its reader gone?); STATUS= and WATCHDOG=1 are dropped until it does, READY=1 and STOPPING=1 retried",
			"notify_socket", n.name, "dropped", d, "err", err.Error())
	}
	return false
}

// Must sends a state that must not be lost (READY=1, STOPPING=1) without
// waiting: at once when the socket takes it and nothing is queued before
// it, else queued and retried in order until Close.
func (n *Notifier) Must(state string) {
	if !n.Enabled() {
		return
	}
	n.qmu.Lock()
	defer n.qmu.Unlock()
	if len(n.queue) == 0 && n.send(state) == nil {
		return
	}
	if len(n.queue) == 0 {
		n.empty = make(chan struct{})
	}
	n.queue = append(n.queue, queued{state: state, since: time.Now()})
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Ready sends READY=1; Stopping sends STOPPING=1 (see Must).
func (n *Notifier) Ready()    { n.Must("READY=1") }
func (n *Notifier) Stopping() { n.Must("STOPPING=1") }

// Dropped counts the Send datagrams the socket did not take.
func (n *Notifier) Dropped() uint64 {
	if n == nil {
		return 0
	}
	return n.dropped.Load()
}

// Pending lists the Must states still queued.
func (n *Notifier) Pending() []string {
	if !n.Enabled() {
		return nil
	}
	n.qmu.Lock()
	defer n.qmu.Unlock()
	var out []string
	for _, q := range n.queue {
		out = append(out, q.state)
	}
	return out
}

// retry sends the queue's head until the socket takes it, backing off
// while it does not.
func (n *Notifier) retry() {
	defer close(n.done)
	wait := firstRetry
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		n.qmu.Lock()
		for len(n.queue) > 0 {
			q := n.queue[0]
			if n.send(q.state) != nil {
				break
			}
			n.log.Info("sd_notify: delivered late (the notify socket was full)", "state", q.state, "after", time.Since(q.since).Round(time.Millisecond))
			n.queue = n.queue[1:]
			wait = firstRetry
		}
		pending := len(n.queue) > 0
		if !pending {
			select {
			case <-n.empty:
			default:
				close(n.empty)
			}
		}
		n.qmu.Unlock()
		var tick <-chan time.Time
		if pending {
			timer.Reset(wait)
			tick = timer.C
			wait = min(2*wait, maxRetry)
		}
		select {
		case <-n.stop:
			timer.Stop()
			return
		case <-n.wake:
			timer.Stop()
		case <-tick:
		}
	}
}

// Close waits at most wait for queued READY=1/STOPPING=1 to be taken,
// then stops sending; what is still queued is logged by name. Safe to call
// more than once and on a Notifier without a socket.
func (n *Notifier) Close(wait time.Duration) {
	if !n.Enabled() {
		return
	}
	n.qmu.Lock()
	empty := n.empty
	n.qmu.Unlock()
	select {
	case <-empty:
	case <-time.After(wait):
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	unix.Close(n.fd)
	n.mu.Unlock()
	close(n.stop)
	<-n.done
	if left := n.Pending(); len(left) > 0 {
		n.log.Warn(fmt.Sprintf("sd_notify: %s not taken by the notify socket before exit (full for %s: is its reader gone?); systemd sees the exit itself",
			strings.Join(left, ", "), wait), "notify_socket", n.name)
	}
	if d := n.dropped.Load(); d > 0 {
		n.log.Info("sd_notify: STATUS=/WATCHDOG=1 datagrams dropped on a full notify socket", "dropped", d)
	}
}
