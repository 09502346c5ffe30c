//go:build e2e

package firewall

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

const ocservFw = "/usr/bin/ocserv-fw"

// topo is client → router → target, each in its own namespace. The
// router's client-side interface is named like ocserv's tun device, and the
// firewall runs in the router.
type topo struct {
	client, router, target *netns
	dev                    string
}

func newTopo(t *testing.T, dev string) *topo {
	t.Helper()
	tp := &topo{client: newNetns(t, "cli"), router: newNetns(t, "rtr"), target: newNetns(t, "tgt"), dev: dev}
	c, r, g := tp.client.name, tp.router.name, tp.target.name
	ip := func(ns string, args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip -n %s %v: %v: %s", ns, args, err, out)
		}
	}
	ip(r, "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", c)
	ip(r, "link", "add", "tgt0", "type", "veth", "peer", "name", "eth0", "netns", g)
	ip(r, "addr", "add", "192.168.250.1/24", "dev", dev)
	ip(r, "addr", "add", "fd00:250::1/64", "dev", dev, "nodad")
	ip(r, "addr", "add", "172.31.0.1/24", "dev", "tgt0")
	ip(r, "addr", "add", "fd00:31::1/64", "dev", "tgt0", "nodad")
	ip(r, "link", "set", dev, "up")
	ip(r, "link", "set", "tgt0", "up")
	ip(r, "route", "add", "10.0.0.0/8", "via", "172.31.0.2")
	ip(r, "route", "add", "192.168.99.0/24", "via", "172.31.0.2")
	ip(r, "-6", "route", "add", "2001:db8::/32", "via", "fd00:31::2")
	// No ICMP error rate limits on the router: every rejected probe must
	// get its port-unreachable back, or a reject would look like a drop.
	tp.router.must(t, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
		"net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0", "net.ipv4.icmp_msgs_per_sec=100000",
		"net.ipv4.icmp_msgs_burst=100000")

	ip(c, "addr", "add", "192.168.250.50/24", "dev", "eth0")
	ip(c, "addr", "add", "fd00:250::50/64", "dev", "eth0", "nodad")
	ip(c, "link", "set", "eth0", "up")
	ip(c, "route", "add", "default", "via", "192.168.250.1")
	ip(c, "-6", "route", "add", "default", "via", "fd00:250::1")

	ip(g, "addr", "add", "172.31.0.2/24", "dev", "eth0")
	ip(g, "addr", "add", "fd00:31::2/64", "dev", "eth0", "nodad")
	ip(g, "link", "set", "eth0", "up")
	for _, a := range []string{tRoute4, tNoRoute4, tOut4, tDNS4} {
		ip(g, "addr", "add", a+"/32", "dev", "lo")
	}
	for _, a := range []string{tRoute6, tNoRoute6, tOut6, tDNS6} {
		ip(g, "addr", "add", a+"/128", "dev", "lo", "nodad")
	}
	ip(g, "route", "add", "default", "via", "172.31.0.1")
	ip(g, "-6", "route", "add", "default", "via", "fd00:31::1")
	tp.serve(t)
	// Warm up neighbour discovery and ARP along both hops: the first IPv6
	// packets can be lost while the router resolves its neighbours.
	for _, d := range probeDsts {
		for try := 0; try < 5; try++ {
			if tp.run(probe{d, "icmp", 0}) == pOK {
				break
			}
		}
	}
	return tp
}

var (
	probeTCPPorts = []int{22, 53, 80, 443}
	probeUDPPorts = []int{53, 5353}
	probeDsts     = []string{tRoute4, tNoRoute4, tOut4, tDNS4, tRoute6, tNoRoute6, tOut6, tDNS6}
)

// serve starts TCP listeners and UDP echo servers in the target namespace
// on every probed port (dual-stack sockets), stopped at cleanup.
func (tp *topo) serve(t *testing.T) {
	t.Helper()
	var closers []func() error
	err := tp.target.do(func() error {
		for _, p := range probeTCPPorts {
			l, err := net.Listen("tcp", fmt.Sprintf("[::]:%d", p))
			if err != nil {
				return err
			}
			closers = append(closers, l.Close)
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}
		// One UDP socket per address: a wildcard socket would answer from
		// the interface's address, which the client's connected socket
		// ignores.
		for _, p := range probeUDPPorts {
			for _, d := range probeDsts {
				pc, err := net.ListenPacket("udp", net.JoinHostPort(d, fmt.Sprint(p)))
				if err != nil {
					return err
				}
				closers = append(closers, pc.Close)
				go func() {
					buf := make([]byte, 64)
					for {
						n, from, err := pc.ReadFrom(buf)
						if err != nil {
							return
						}
						pc.WriteTo(buf[:n], from)
					}
				}()
			}
		}
		return nil
	})
	t.Cleanup(func() {
		for _, c := range closers {
			c()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

type probe struct {
	dst   string
	proto string // tcp, udp, icmp (echo request; ICMPv6 for IPv6 targets)
	port  int
}

func (p probe) String() string {
	if p.proto == "icmp" {
		return "icmp→" + p.dst
	}
	return fmt.Sprintf("%s/%d→%s", p.proto, p.port, p.dst)
}

func allProbes() []probe {
	var ps []probe
	for _, d := range probeDsts {
		for _, p := range probeTCPPorts {
			ps = append(ps, probe{d, "tcp", p})
		}
		for _, p := range probeUDPPorts {
			ps = append(ps, probe{d, "udp", p})
		}
		ps = append(ps, probe{d, "icmp", 0})
	}
	return ps
}

// Verdicts a probe can see.
const (
	pOK       = "ok"
	pRejected = "rejected" // ICMP port unreachable came back
	pTimeout  = "timeout"  // silently dropped
)

// Linux reports an ICMPv6 port unreachable to a connecting TCP socket only
// when the SYN is retransmitted (after 1 s), so the timeout is longer.
const probeTimeout = 3 * time.Second

// run sends one probe from the client namespace and classifies the answer.
func (tp *topo) run(p probe) string {
	var res string
	err := tp.client.do(func() error {
		addr := net.JoinHostPort(p.dst, fmt.Sprint(p.port))
		switch p.proto {
		case "tcp":
			c, err := net.DialTimeout("tcp", addr, probeTimeout)
			if err == nil {
				c.Close()
			}
			res = classify(err)
		case "udp":
			c, err := net.DialTimeout("udp", addr, probeTimeout)
			if err != nil {
				res = classify(err)
				return nil
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(probeTimeout))
			if _, err := c.Write([]byte("probe")); err != nil {
				res = classify(err)
				return nil
			}
			buf := make([]byte, 16)
			_, err = c.Read(buf)
			res = classify(err)
		case "icmp":
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, "ping", "-n", "-c1", "-W1", p.dst).CombinedOutput()
			switch {
			case err == nil:
				res = pOK
			case strings.Contains(strings.ToLower(string(out)), "unreachable"):
				res = pRejected
			default:
				res = pTimeout
			}
		}
		return nil
	})
	if err != nil {
		return "error: " + err.Error()
	}
	return res
}

func classify(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return pOK
	case errors.Is(err, syscall.ECONNREFUSED):
		return pRejected
	case errors.As(err, &ne) && ne.Timeout():
		return pTimeout
	}
	return "error: " + err.Error()
}

// probeAll runs every probe, a few at a time (each is bounded).
func (tp *topo) probeAll(ps []probe) map[probe]string {
	res := make(map[probe]string, len(ps))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, p := range ps {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			v := tp.run(p)
			<-sem
			mu.Lock()
			res[p] = v
			mu.Unlock()
		}()
	}
	wg.Wait()
	return res
}

// expect is the policy written out independently of the rule plan: what
// docs/design.md and the package comment say each probe must meet.
func expect(p *events.Policy, pr probe) string {
	dst := netip.MustParseAddr(pr.dst)
	proto := pr.proto
	if proto == "icmp" && dst.Is6() {
		proto = "icmpv6"
	}
	if pr.port == 53 && (proto == "tcp" || proto == "udp") && slices.Contains(p.DNS, pr.dst) {
		return pOK
	}
	matches := func(ports []events.Port) bool {
		for _, pt := range ports {
			if pt.Proto == proto && (pt.Port == 0 || pt.Port == pr.port) {
				return true
			}
		}
		return false
	}
	if len(p.DenyPorts) > 0 && matches(p.DenyPorts) {
		return pRejected
	}
	if len(p.AllowPorts) > 0 && !matches(p.AllowPorts) {
		return pRejected
	}
	if !p.RestrictToRoutes {
		return pOK
	}
	in := func(list []string) bool {
		for _, s := range list {
			if netip.MustParsePrefix(s).Contains(dst) {
				return true
			}
		}
		return false
	}
	switch {
	case in(p.NoRoutes):
		return pRejected
	case in(p.Routes):
		return pOK
	case len(p.Routes) > 0:
		return pRejected
	}
	return pOK
}

// expectOcservFw is what Debian's ocserv-fw gives: the same, except for the
// documented differences a probe can see (package comment, item 3: with
// allowed ports and no route restriction it rejects all IPv6).
func expectOcservFw(p *events.Policy, pr probe) string {
	v := expect(p, pr)
	if len(p.AllowPorts) > 0 && !p.RestrictToRoutes && netip.MustParseAddr(pr.dst).Is6() {
		dnsOK := pr.port == 53 && slices.Contains(p.DNS, pr.dst) && pr.proto != "icmp"
		if !dnsOK {
			return pRejected
		}
	}
	return v
}

// runOcservFw runs Debian's script in the router namespace with the case's
// environment and the given REASON.
func runOcservFw(t *testing.T, ns *netns, env map[string]string, reason string) {
	t.Helper()
	if _, err := os.Stat(ocservFw); err != nil {
		t.Fatalf("%s is needed for the comparison (Debian package ocserv): %v", ocservFw, err)
	}
	var out []byte
	err := ns.do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, ocservFw)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		for k, v := range env {
			if k != "REASON" && k != "PATH" {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
		}
		cmd.Env = append(cmd.Env, "REASON="+reason)
		var err error
		out, err = cmd.CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("ocserv-fw %s: %v: %s", reason, err, out)
	}
}

// TestPacketVerdicts sends TCP, UDP and ICMP over IPv4 and IPv6 through
// the router for every policy, with each backend and with Debian's
// ocserv-fw, each in its own identical set of namespaces, and compares the
// verdicts with the written-out policy.
func TestPacketVerdicts(t *testing.T) {
	requireRoot(t)
	impls := []string{KindNftables, KindIptables, "ocserv-fw"}
	topos := map[string]*topo{}
	for _, impl := range impls {
		topos[impl] = newTopo(t, "vpns7")
	}
	// Sanity: with no rules at all every probe gets through, so a
	// "rejected" below is the firewall's doing.
	for _, impl := range impls {
		for pr, v := range topos[impl].probeAll(allProbes()) {
			if v != pOK {
				t.Fatalf("%s: without rules %v gives %s; the test network is broken", impl, pr, v)
			}
		}
	}
	for _, c := range testCases(t) {
		p := policyOf(t, c.env)
		t.Run(c.name, func(t *testing.T) {
			var wg sync.WaitGroup
			for _, impl := range impls {
				wg.Add(1)
				go func() {
					defer wg.Done()
					checkImpl(t, impl, topos[impl], c, p)
				}()
			}
			wg.Wait()
		})
	}
}

func checkImpl(t *testing.T, impl string, tp *topo, c fwCase, p *events.Policy) {
	var b Backend
	if impl == "ocserv-fw" {
		runOcservFw(t, tp.router, c.env, "connect")
	} else {
		var err error
		if b, err = Open(impl); err != nil {
			t.Error(err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var out Outcome
		tp.router.do(func() error { out = Connect(ctx, b, tp.dev, testOwner, p); return nil })
		if out.Action != ActionApplied {
			t.Errorf("%s: connect: %+v", impl, out)
			return
		}
	}
	// While the rules are in place: none of them may be in the host.
	assertHostUntouched(t)
	got := tp.probeAll(allProbes())
	rejected := 0
	for _, pr := range allProbes() {
		want := expect(p, pr)
		if impl == "ocserv-fw" {
			want = expectOcservFw(p, pr)
		}
		if got[pr] != want {
			t.Errorf("%s: %v: got %s, want %s", impl, pr, got[pr], want)
		}
		if got[pr] == pRejected {
			rejected++
		}
	}
	if rejected == 0 && c.name != "empty-routes" {
		t.Errorf("%s: nothing was rejected; the policy was not enforced", impl)
	}
	if t.Failed() {
		out, _ := tp.router.exec("iptables-save")
		out6, _ := tp.router.exec("nft", "list", "ruleset")
		t.Logf("%s: router %s holds:\n%s\n%s", impl, tp.router.name, out, out6)
	}
	if impl == "ocserv-fw" {
		runOcservFw(t, tp.router, c.env, "disconnect")
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var out Outcome
		tp.router.do(func() error { out = Disconnect(ctx, b, tp.dev, testOwner); return nil })
		if out.Action != ActionRemoved {
			t.Errorf("%s: disconnect: %+v", impl, out)
		}
	}
}
