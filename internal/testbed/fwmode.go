package testbed

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Firewall modes (docs/firewall.md):
//
//   - (a) nothing restricted: ocserv runs the wrapper as connect script;
//   - (b) Options.RestrictToRoutes (or a per-user restrict-user-to-ports):
//     ocserv runs the version's own fw script (Debian's ocserv-fw:
//     iptables up to 1.4.1, nftables in 1.5.0), which runs the wrapper;
//   - (c) Options.HookAsFwScript: a wrapper running `hook --fw` becomes
//     ocserv's fw script the way install.sh --firewall=on does it on the
//     version: bind-mounted over the fixed path the version runs
//     (/usr/bin/ocserv-fw in 1.1.6, /usr/libexec/ocserv-fw in 1.3.0), in
//     the bed's private mount namespace, where install.sh diverts it; or
//     named by OCSERV_FW_SCRIPT in ocserv's environment (1.5.0), as
//     install.sh's drop-in does. The host's files are never touched: the
//     mount disappears with the namespace.
//
// Options.Target adds a namespace behind the server, reachable through the
// tunnel, so restricted traffic can be tested for real.

// OcservFw is the path the host's ocserv 1.1.6 runs as its fw script.
const OcservFw = "/usr/bin/ocserv-fw"

// Addresses of the target namespace (Options.Target), all on its loopback
// and reached through the server, which forwards between the tunnels and
// the target link.
const (
	TargetRouteIP   = "10.10.10.1"   // inside PushedRoute
	TargetNoRouteIP = "10.10.10.200" // inside PushedNoRoute (carved out of the route)
	TargetOutsideIP = "10.20.0.1"    // outside every pushed route
	// TargetOutsideNet is the network of TargetOutsideIP; clients route it
	// into the tunnel with RouteViaTunnel.
	TargetOutsideNet = "10.20.0.0/16"

	serverTargetIP = "10.96.0.1"
	targetServerIP = "10.96.0.2"
)

// TargetPorts are the TCP ports the target listens on (all its addresses).
var TargetPorts = []int{80, 443, 8080}

// fwScriptWrapper is what the bed mounts over /usr/bin/ocserv-fw.
func (b *Bed) fwScriptWrapper() (string, error) {
	p := filepath.Join(b.dir, "ocserv-fw-hook")
	w := "#!/bin/sh\nexec " + shQuote(b.hookPath) + " --fw --config " + shQuote(b.agentEnv) + " \"$@\"\n"
	return p, os.WriteFile(p, []byte(w), 0o755)
}

// ocservArgv is how the bed starts ocserv: its version's binary, in the
// server namespace and the bed's mount namespace (root.go).
func (b *Bed) ocservArgv() ([]string, error) {
	return append(b.Launcher(), "ocserv", "-f", "-d", b.logLevel(), "-c", b.confPath), nil
}

// logLevel is ocserv's -d for a log with each authentication and script
// run (what the tests read in OcservLog): before 1.2.3 -d 1 (a debug
// level under which sec-mod's notes are logged); from 1.2.3 (commit
// f0067ae0, "Cleanup of the logging subsystem") -d is the log level, and
// 1 would drop them: 2 is info.
func (b *Bed) logLevel() string {
	if b.Version().AtLeast(1, 2, 3) {
		return "2"
	}
	return "1"
}

// FwScript is the fw script the bed's ocserv runs for restricted users
// (the path compiled into its version; with HookAsFwScript the hook's
// wrapper is there, or named by OCSERV_FW_SCRIPT on a version that reads
// it).
func (b *Bed) FwScript() string { return b.rel.FwScript }

// CheckHostFwScript fails when the host's /usr/bin/ocserv-fw is the bed's
// wrapper (a mount that leaked out of the private namespace).
func CheckHostFwScript() error {
	data, err := os.ReadFile(OcservFw)
	if err != nil {
		return err
	}
	if strings.Contains(string(data), "--fw --config") || !strings.Contains(string(data), "ocserv-fw") {
		return fmt.Errorf("the host's %s is not Debian's script:\n%s", OcservFw, data)
	}
	return nil
}

// writePerUser writes Options.PerUser files into a config-per-user dir.
func (b *Bed) writePerUser() (string, error) {
	if len(b.opts.PerUser) == 0 && !b.opts.PerUserDir {
		return "", nil
	}
	dir := filepath.Join(b.dir, "config-per-user")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	for user, lines := range b.opts.PerUser {
		if err := os.WriteFile(filepath.Join(dir, user), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// setupTarget makes the target namespace behind the server and lets the
// server forward to it.
func (b *Bed) setupTarget() error {
	b.targetNS = namePrefix + b.id + "-t"
	if err := b.addNS(b.targetNS); err != nil {
		return err
	}
	if err := vethPair(b.serverNS, "o"+b.id+"st", serverTargetIP+"/24", b.targetNS, "o"+b.id+"ts", targetServerIP+"/24"); err != nil {
		return err
	}
	for _, a := range []string{TargetRouteIP, TargetNoRouteIP, TargetOutsideIP} {
		if err := ip("-n", b.targetNS, "addr", "add", a+"/32", "dev", "lo"); err != nil {
			return err
		}
	}
	if err := ip("-n", b.targetNS, "route", "add", "default", "via", serverTargetIP); err != nil {
		return err
	}
	for _, dst := range []string{"10.10.10.0/24", TargetOutsideNet} {
		if err := ip("-n", b.serverNS, "route", "add", dst, "via", targetServerIP); err != nil {
			return err
		}
	}
	// Forwarding on; no ICMP rate limits, so every rejected probe gets its
	// port-unreachable back and a reject never looks like a drop.
	if _, err := runCmd(10*time.Second, "ip", "netns", "exec", b.serverNS, "sysctl", "-q", "-w",
		"net.ipv4.ip_forward=1", "net.ipv4.icmp_ratelimit=0", "net.ipv4.icmp_msgs_per_sec=100000",
		"net.ipv4.icmp_msgs_burst=100000"); err != nil {
		return err
	}
	return b.serveTarget()
}

// serveTarget listens on TargetPorts in the target namespace, accepting
// and closing every connection; stopped at cleanup.
func (b *Bed) serveTarget() error {
	var lns []net.Listener
	err := inNetns(b.targetNS, func() error {
		for _, p := range TargetPorts {
			l, err := net.Listen("tcp4", "0.0.0.0:"+strconv.Itoa(p))
			if err != nil {
				return err
			}
			lns = append(lns, l)
		}
		return nil
	})
	var wg sync.WaitGroup
	for _, l := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	b.mu.Lock()
	b.targetStop = func() {
		for _, l := range lns {
			l.Close()
		}
		wg.Wait()
	}
	b.mu.Unlock()
	return err
}

// TargetNS is the target namespace ("" without Options.Target).
func (b *Bed) TargetNS() string { return b.targetNS }

// InServerNSRuleset lists the server namespace's firewall: nftables
// tables (each listed in full) and iptables-save of both families, without
// iptables-save's time stamps: the same rules read twice are equal text.
func (b *Bed) InServerNSRuleset() (string, error) {
	var s strings.Builder
	out, err := b.InServerNSCmd(15*time.Second, "nft", "list", "ruleset")
	if err != nil {
		return "", err
	}
	s.Write(out)
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		out, err := b.InServerNSCmd(15*time.Second, save, "-t", "filter")
		if err != nil {
			return "", err
		}
		s.WriteString("# " + save + "\n")
		s.WriteString(withoutSaveStamps(string(out)))
	}
	return s.String(), nil
}

// withoutSaveStamps drops the "# Generated by … on <time>" and "# Completed
// on <time>" comments of iptables-save, so that two readings of the same
// rules are equal text.
func withoutSaveStamps(out string) string {
	var s strings.Builder
	for _, l := range strings.SplitAfter(out, "\n") {
		if strings.HasPrefix(l, "# Generated by ") || strings.HasPrefix(l, "# Completed on ") {
			continue
		}
		s.WriteString(l)
	}
	return s.String()
}

// TunDevice is the client's tun device (the one holding its tunnel
// address).
func (c *Client) TunDevice() (string, error) {
	want := c.TunnelIP()
	out, err := runCmd(5*time.Second, "ip", "-n", c.ns, "-o", "-4", "addr", "show")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && strings.HasPrefix(f[3], want+"/") {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("client %s: no device holds %s:\n%s", c.name, want, out)
}

// RouteViaTunnel sends traffic for cidr into the tunnel, whatever routes
// the server pushed (a client that does not honour split routes): how a
// test makes a restricted user try destinations outside its routes.
func (c *Client) RouteViaTunnel(cidr string) error {
	if !c.vpnc {
		return fmt.Errorf("client %s: RouteViaTunnel needs the vpnc-script", c.name)
	}
	dev, err := c.TunDevice()
	if err != nil {
		return err
	}
	return ip("-n", c.ns, "route", "replace", cidr, "dev", dev)
}

// Errors of Dial.
var (
	// ErrRejected: the connection was refused (ICMP port unreachable, which
	// is how both ocserv-fw and our rules reject, or a TCP RST). Host or
	// network unreachable (a routing problem) is neither this nor success.
	ErrRejected = errors.New("rejected")
	// ErrTimedOut: no answer at all within the timeout.
	ErrTimedOut = errors.New("timed out")
)

// Dial opens a TCP connection from the client's namespace to addr:port
// (through the tunnel when routed there) and closes it: nil when it was
// accepted, ErrRejected or ErrTimedOut (wrapped) otherwise.
func (c *Client) Dial(addr string, port int, timeout time.Duration) error {
	return inNetns(c.ns, func() error {
		conn, err := net.DialTimeout("tcp4", net.JoinHostPort(addr, strconv.Itoa(port)), timeout)
		if err == nil {
			return conn.Close()
		}
		var ne net.Error
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return fmt.Errorf("%w: %v", ErrRejected, err)
		case errors.As(err, &ne) && ne.Timeout():
			return fmt.Errorf("%w: %v", ErrTimedOut, err)
		}
		return err
	})
}

// OcservFwMark is what the version's own ocserv-fw (firewall mode b)
// leaves in InServerNSRuleset for a device: the iptables chain
// "FORWARD-ocserv-fw-<dev>" of the iptables script (1.1.6, 1.3.0), or the
// nftables table "table inet ocserv_<dev> " of the nftables one (1.5.0).
func (b *Bed) OcservFwMark(dev string) string {
	if b.rel.FwBackend == "nftables" {
		return "table inet ocserv_" + dev + " "
	}
	return ":FORWARD-ocserv-fw-" + dev + " "
}

// ocservFwRE matches a trace of either ocserv-fw in a ruleset: the
// iptables script's chains and comments, or the nftables script's
// per-device tables (named after ocserv's "vpns" devices, so a table of
// ours with another name does not match).
var ocservFwRE = regexp.MustCompile(`ocserv-fw|table inet ocserv_vpns[0-9]+\b`)

// HasOcservFw reports whether a ruleset (InServerNSRuleset) holds rules of
// any ocserv-fw.
func HasOcservFw(ruleset string) bool { return ocservFwRE.MatchString(ruleset) }
