package events

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Protocols ocserv's restrict-user-to-ports accepts.
var Protocols = map[string]bool{"tcp": true, "udp": true, "sctp": true, "icmp": true, "icmpv6": true, "esp": true}

func (b *envBuilder) policy() {
	p := &Policy{
		Routes:           b.prefixes("OCSERV_ROUTES"),
		NoRoutes:         b.prefixes("OCSERV_NO_ROUTES"),
		DNS:              b.addrList("OCSERV_DNS"),
		RestrictToRoutes: b.env["OCSERV_RESTRICT_TO_ROUTES"] == "1",
	}
	if v := b.env["OCSERV_RESTRICT_TO_ROUTES"]; v != "" && v != "1" && v != "0" {
		b.problem("OCSERV_RESTRICT_TO_ROUTES: expected 1: %s", quoteShort(v))
		p.Invalid = true
	}
	p.AllowPorts = b.ports("OCSERV_ALLOW_PORTS", p)
	p.DenyPorts = b.ports("OCSERV_DENY_PORTS", p)
	if len(p.AllowPorts) > 0 && len(p.DenyPorts) > 0 {
		// ocserv never sets both; ocserv-fw would honour only the deny
		// list. Refuse to guess which the operator meant.
		b.problem("OCSERV_ALLOW_PORTS and OCSERV_DENY_PORTS are both set")
		p.Invalid = true
	}
	for _, pr := range b.ev.Problems {
		if strings.HasPrefix(pr, "OCSERV_") {
			p.Invalid = true
		}
	}
	b.ev.Policy = p
}

var p4p6 = [2]string{"4", "6"}

// listTokens returns the space-separated entries of base, or of base4 and
// base6 together when ocserv did not set base (it sets all three; older
// versions only the family-specific ones).
func (b *envBuilder) listTokens(base string) (key string, toks []string) {
	if _, ok := b.env[base]; ok {
		return base, b.whole(base)
	}
	for _, fam := range p4p6 {
		toks = append(toks, b.whole(base+fam)...)
	}
	return base + "4/6", toks
}

// whole returns the entries of a policy variable, all of them or none: a
// value over MaxPolicyBytes is left out whole and named in a problem, which
// makes the policy invalid (policy() marks every OCSERV_ problem so).
// Reading only a prefix is what must never happen: it can cut an entry in
// two or drop the entries after the cut, and either can widen access.
func (b *envBuilder) whole(key string) []string {
	v := b.env[key]
	if len(v) > MaxPolicyBytes {
		b.problem("%s: %d bytes, over the %d-byte limit of one environment string; not read, so the policy is invalid", key, len(v), MaxPolicyBytes)
		return nil
	}
	return strings.Fields(v)
}

func (b *envBuilder) prefixes(base string) []string {
	key, toks := b.listTokens(base)
	out := make([]string, 0, len(toks))
	seen := make(map[string]bool, len(toks))
	for _, t := range toks {
		p, err := ParseRoute(t)
		if err != nil {
			b.problem("%s: %v", key, err)
			continue
		}
		s := p.String()
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func (b *envBuilder) addrList(base string) []string {
	key, toks := b.listTokens(base)
	out := make([]string, 0, len(toks))
	seen := make(map[string]bool, len(toks))
	for _, t := range toks {
		a, err := netip.ParseAddr(t)
		if err != nil || a.Zone() != "" {
			b.problem("%s: not a valid address: %s", key, quoteShort(t))
			continue
		}
		s := a.Unmap().String()
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// ParseRoute parses one of ocserv's route entries: "addr/prefix",
// "addr/dotted-netmask" (IPv4) or a bare address (a host route). The
// result is masked, as the kernel and iptables would use it.
func ParseRoute(s string) (netip.Prefix, error) {
	addr, mask, hasMask := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad route %s: bad address", quoteShort(s))
	}
	a = a.Unmap()
	if !hasMask {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	bits, err := strconv.Atoi(mask)
	if err != nil {
		m, perr := netip.ParseAddr(mask)
		if perr != nil || !a.Is4() || !m.Is4() {
			return netip.Prefix{}, fmt.Errorf("bad route %s: bad netmask", quoteShort(s))
		}
		if bits, err = maskBits(m.As4()); err != nil {
			return netip.Prefix{}, fmt.Errorf("bad route %s: %v", quoteShort(s), err)
		}
	}
	if bits < 0 || bits > a.BitLen() || strings.HasPrefix(mask, "+") {
		return netip.Prefix{}, fmt.Errorf("bad route %s: bad prefix length", quoteShort(s))
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// maskBits turns a dotted netmask into a prefix length; a mask with holes
// (255.0.255.0) has none.
func maskBits(m [4]byte) (int, error) {
	v := uint32(m[0])<<24 | uint32(m[1])<<16 | uint32(m[2])<<8 | uint32(m[3])
	n := 0
	for v&0x80000000 != 0 {
		n++
		v <<= 1
	}
	if v != 0 {
		return 0, fmt.Errorf("netmask is not contiguous")
	}
	return n, nil
}

// ports parses ocserv's "proto port proto port …" list (port "all" for
// every port, as ocserv writes icmp(), icmpv6() and esp()).
func (b *envBuilder) ports(key string, p *Policy) []Port {
	toks := b.whole(key)
	if len(toks)%2 != 0 {
		b.problem("%s: odd number of entries (want protocol/port pairs): %s", key, quoteShort(b.env[key]))
		p.Invalid = true
		toks = toks[:len(toks)-1]
	}
	var out []Port
	for i := 0; i+1 < len(toks); i += 2 {
		port, err := ParsePort(toks[i], toks[i+1])
		if err != nil {
			b.problem("%s: %v", key, err)
			p.Invalid = true
			continue
		}
		out = append(out, port)
	}
	return out
}

// ParsePort validates one protocol/port pair.
func ParsePort(proto, port string) (Port, error) {
	if !Protocols[proto] {
		return Port{}, fmt.Errorf("unknown protocol %s", quoteShort(proto))
	}
	if port == "all" {
		return Port{Proto: proto}, nil
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port[0] == '+' {
		return Port{}, fmt.Errorf("bad port %s for %s", quoteShort(port), proto)
	}
	switch proto {
	case "icmp", "icmpv6", "esp":
		return Port{}, fmt.Errorf("%s takes no port (got %s)", proto, quoteShort(port))
	}
	return Port{Proto: proto, Port: n}, nil
}
