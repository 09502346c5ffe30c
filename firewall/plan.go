package firewall

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

// The plan is the one description of a device's rules that both backends
// render. Keeping the policy logic here, and only the syntax in the
// backends, is what makes the nftables and iptables backends give the same
// verdict for every packet.

// verdict is what a matching rule does with the packet.
type verdict int

const (
	vAccept verdict = iota // let it through (to the host's other chains)
	vReject                // ICMP/ICMPv6 port unreachable, like iptables' REJECT
	vRoutes                // continue in the device's route chain
)

func (v verdict) String() string {
	switch v {
	case vAccept:
		return "accept"
	case vReject:
		return "reject"
	case vRoutes:
		return "routes"
	}
	return fmt.Sprintf("verdict(%d)", int(v))
}

// Layer-4 protocol numbers of the protocols ocserv's restrict-user-to-ports
// accepts (IANA numbers; iptables and nftables use the same ones).
var protoNum = map[string]uint8{
	"icmp":   1,
	"tcp":    6,
	"udp":    17,
	"esp":    50,
	"icmpv6": 58,
	"sctp":   132,
}

// hasPorts reports whether the protocol has 16-bit ports at offset 2 of its
// header (so a rule can match the destination port).
func hasPorts(proto string) bool {
	return proto == "tcp" || proto == "udp" || proto == "sctp"
}

// rule is one match-and-verdict line. Zero fields match anything.
type rule struct {
	family int          // 0: IPv4 and IPv6; 4 or 6: that family only
	dst    netip.Prefix // destination, when valid
	proto  string       // "" for any protocol
	port   int          // destination port; 0 for all
	icmp6  int          // ICMPv6 type to match, -1 for any (only with proto icmpv6)
	ctNew  bool         // only conntrack states NEW and ESTABLISHED (ocserv-fw's DNS/TCP rule)
	v      verdict
}

// plan is everything installed for one device. Return traffic to the
// device (conntrack ESTABLISHED,RELATED) is accepted before any of it, for
// both families, by each backend's dispatch rule.
type plan struct {
	dev    string
	reject bool   // reject-all: everything from and to the device is rejected
	user   []rule // traffic from the device, in order
	routes []rule // the route checks, reached through vRoutes
}

// errInvalidPolicy is returned for a policy events marked invalid: some
// entry did not parse, and guessing what the operator meant could open the
// tunnel wider than intended.
var errInvalidPolicy = errors.New("policy has entries that did not parse (see the event's problems); failing closed")

// ICMPv6 error messages (destination unreachable, packet too big, time
// exceeded, parameter problem). RFC 4890 4.3.1: they must not be dropped,
// or IPv6 path MTU discovery and error reporting break; ocserv-fw 1.1.6
// rejects them in allowed-ports mode unless icmpv6 is listed.
var icmp6Errors = []int{1, 2, 3, 4}

// buildPlan validates everything that will reach the kernel and turns
// ocserv-fw's policy into rules. Any error means nothing is applied.
func buildPlan(dev string, p *events.Policy) (*plan, error) {
	if err := ValidDevice(dev); err != nil {
		return nil, err
	}
	if p == nil {
		return nil, errors.New("no policy")
	}
	if p.Invalid {
		return nil, errInvalidPolicy
	}
	if len(p.AllowPorts) > 0 && len(p.DenyPorts) > 0 {
		return nil, errors.New("both allowed and denied ports are set")
	}
	pl := &plan{dev: dev}

	// 1. DNS to each DNS server, before the port and route checks (as
	// ocserv-fw does: a user restricted to routes can still resolve).
	for _, s := range p.DNS {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("bad DNS server address %q", s)
		}
		a = a.Unmap()
		pfx := netip.PrefixFrom(a, a.BitLen())
		fam := famOf(a)
		pl.user = append(pl.user,
			rule{family: fam, dst: pfx, proto: "udp", port: 53, icmp6: -1, v: vAccept},
			rule{family: fam, dst: pfx, proto: "tcp", port: 53, icmp6: -1, ctNew: true, v: vAccept})
	}

	// 2. Ports: denied ones rejected, or only allowed ones go on.
	switch {
	case len(p.DenyPorts) > 0:
		for _, pt := range p.DenyPorts {
			r, err := portRule(pt, vReject)
			if err != nil {
				return nil, err
			}
			pl.user = append(pl.user, r)
		}
		pl.user = append(pl.user, rule{icmp6: -1, v: vRoutes})
	case len(p.AllowPorts) > 0:
		allICMP6 := false
		for _, pt := range p.AllowPorts {
			r, err := portRule(pt, vRoutes)
			if err != nil {
				return nil, err
			}
			allICMP6 = allICMP6 || pt.Proto == "icmpv6"
			pl.user = append(pl.user, r)
		}
		if !allICMP6 {
			for _, t := range icmp6Errors {
				pl.user = append(pl.user, rule{family: 6, proto: "icmpv6", icmp6: t, v: vRoutes})
			}
		}
		pl.user = append(pl.user, rule{icmp6: -1, v: vReject})
	default:
		pl.user = append(pl.user, rule{icmp6: -1, v: vRoutes})
	}

	// 3. Routes: without restrict-user-to-routes everything that got here is
	// accepted; with it, no-routes are rejected first, then routes accepted,
	// then the rest rejected, unless there are no routes at all (the user
	// has the default route).
	if !p.RestrictToRoutes {
		pl.routes = append(pl.routes, rule{icmp6: -1, v: vAccept})
		return pl, nil
	}
	for _, s := range p.NoRoutes {
		pfx, err := parsePrefix(s)
		if err != nil {
			return nil, err
		}
		pl.routes = append(pl.routes, rule{family: famOf(pfx.Addr()), dst: pfx, icmp6: -1, v: vReject})
	}
	for _, s := range p.Routes {
		pfx, err := parsePrefix(s)
		if err != nil {
			return nil, err
		}
		pl.routes = append(pl.routes, rule{family: famOf(pfx.Addr()), dst: pfx, icmp6: -1, v: vAccept})
	}
	if len(p.Routes) > 0 {
		pl.routes = append(pl.routes, rule{icmp6: -1, v: vReject})
	} else {
		pl.routes = append(pl.routes, rule{icmp6: -1, v: vAccept})
	}
	return pl, nil
}

// rejectPlan is the fail-closed plan: nothing from or to the device passes.
func rejectPlan(dev string) (*plan, error) {
	if err := ValidDevice(dev); err != nil {
		return nil, err
	}
	return &plan{dev: dev, reject: true}, nil
}

func famOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// parsePrefix accepts the normalised CIDR strings events produces, and
// refuses anything else rather than re-implementing ocserv's formats.
func parsePrefix(s string) (netip.Prefix, error) {
	pfx, err := netip.ParsePrefix(s)
	if err != nil || pfx.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad route %q", s)
	}
	if pfx.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("bad route %q: IPv4-mapped IPv6 address", s)
	}
	return pfx.Masked(), nil
}

// portRule validates one protocol/port pair (it may come from anywhere
// that builds an events.Policy, not only from events.ParsePort).
func portRule(pt events.Port, v verdict) (rule, error) {
	if _, ok := protoNum[pt.Proto]; !ok || !events.Protocols[pt.Proto] {
		return rule{}, fmt.Errorf("unknown protocol %q", pt.Proto)
	}
	if pt.Port < 0 || pt.Port > 65535 {
		return rule{}, fmt.Errorf("bad port %d for %s", pt.Port, pt.Proto)
	}
	if pt.Port != 0 && !hasPorts(pt.Proto) {
		return rule{}, fmt.Errorf("%s takes no port (got %d)", pt.Proto, pt.Port)
	}
	r := rule{proto: pt.Proto, port: pt.Port, icmp6: -1, v: v}
	switch pt.Proto {
	case "icmp":
		r.family = 4
	case "icmpv6":
		r.family = 6
	}
	return r, nil
}

// ValidDevice accepts the interface names the firewall will write into
// rules: a valid kernel interface name (events.ValidDevice) made only of
// letters, digits, '_', '.' and '-', not starting with '-'. This is
// stricter than the kernel on purpose: '+' is a wildcard to iptables,
// '!' a negation, quotes and '#' are special to iptables-restore, and a
// leading '-' would read as an option. ocserv's devices (vpns0, or the
// configured "device" name plus a number) all pass.
func ValidDevice(dev string) error {
	if err := events.ValidDevice(dev); err != nil {
		return err
	}
	for i := 0; i < len(dev); i++ {
		c := dev[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
		if !ok {
			return fmt.Errorf("interface name %q: character %q not allowed in firewall rules", dev, c)
		}
	}
	if dev[0] == '-' {
		return fmt.Errorf("interface name %q starts with '-'", dev)
	}
	return nil
}
