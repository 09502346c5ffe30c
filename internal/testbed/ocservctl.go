package testbed

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

// OcctlSocket is ocserv's occtl socket (occtl -s).
func (b *Bed) OcctlSocket() string { return b.occtlSock }

// OcctlWrapper writes (once) and returns a script that runs the bed
// version's real occtl inside the server namespace with the arguments it is given, for a
// shipper process started by a test (CMD_OCCTL): occtl reads the tun
// devices' counters through netlink, so it must run where they are.
func (b *Bed) OcctlWrapper() (string, error) { return b.toolWrapper("occtl") }

// StopOcserv stops ocserv (SIGTERM, then SIGKILL) and waits until its
// occtl socket no longer answers. Clients lose their tunnels.
func (b *Bed) StopOcserv() error {
	if b.ocserv == nil {
		return fmt.Errorf("ocserv is not running")
	}
	b.ocserv.stop(syscall.SIGTERM, 5*time.Second)
	b.ocserv = nil
	_ = os.Remove(b.occtlSock) // a stale socket file must not look like a running server
	return nil
}

// StartOcserv starts ocserv again after StopOcserv, with the same
// configuration, and waits until it listens.
func (b *Bed) StartOcserv() error {
	if b.ocserv != nil && !b.ocserv.exited() {
		return fmt.Errorf("ocserv is already running")
	}
	return b.startOcserv()
}
