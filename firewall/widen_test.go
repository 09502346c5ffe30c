package firewall

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

// allows evaluates the plan for one packet forwarded from the device (in
// conntrack state NEW), the way both backends' rules do: the user chain in
// order, a jump to the route chain that decides or returns, and the base
// chain's policy (accept) when nothing matched. Reject-all allows nothing.
func (pl *plan) allows(dst netip.Addr, proto string, port int) bool {
	if pl.reject {
		return false
	}
	match := func(r rule) bool {
		fam := 4
		if dst.Is6() {
			fam = 6
		}
		switch {
		case r.family != 0 && r.family != fam,
			r.dst.IsValid() && !r.dst.Contains(dst),
			r.proto != "" && r.proto != proto,
			r.port != 0 && r.port != port,
			r.icmp6 >= 0: // the probes below are never ICMPv6 errors
			return false
		}
		return true
	}
	for _, r := range pl.user {
		if !match(r) {
			continue
		}
		switch r.v {
		case vAccept:
			return true
		case vReject:
			return false
		case vRoutes:
			for _, rr := range pl.routes {
				if match(rr) {
					return rr.v == vAccept
				}
			}
		}
	}
	return true
}

// fuzzRoutes turns fuzz bytes into IPv4 route entries, 6 bytes each: the
// address, the prefix length, and whether the entry is a route or a
// no-route and in which of ocserv's two notations it is written.
func fuzzRoutes(data []byte) (routes, noRoutes []netip.Prefix, text [2]string) {
	var sb [2]strings.Builder
	for ; len(data) >= 6; data = data[6:] {
		a := netip.AddrFrom4([4]byte(data[:4]))
		bits := int(data[4]) % 33
		pfx := netip.PrefixFrom(a, bits).Masked()
		which := int(data[5] & 1)
		if which == 0 {
			routes = append(routes, pfx)
		} else {
			noRoutes = append(noRoutes, pfx)
		}
		if data[5]&2 != 0 {
			var m [4]byte
			binary.BigEndian.PutUint32(m[:], ^uint32(0)<<(32-bits))
			if bits == 0 {
				m = [4]byte{}
			}
			fmt.Fprintf(&sb[which], "%s/%s ", a, netip.AddrFrom4(m))
		} else {
			fmt.Fprintf(&sb[which], "%s/%d ", a, bits)
		}
	}
	return routes, noRoutes, [2]string{sb[0].String(), sb[1].String()}
}

// filler is n (at most 15500) distinct /24 routes inside 10.0.0.0/8, in
// ocserv's dotted netmask notation, 27 bytes each.
func filler(n int) (string, []netip.Prefix) {
	var sb strings.Builder
	var pfx []netip.Prefix
	for i := 0; i < n; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(100 + i/100), byte(100 + i%100), 0})
		fmt.Fprintf(&sb, "%s/255.255.255.0 ", a)
		pfx = append(pfx, netip.PrefixFrom(a, 24))
	}
	return sb.String(), pfx
}

func containedIn(list []netip.Prefix, a netip.Addr) bool {
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// FuzzPolicyNeverWidens: for any route and no-route lists, of any length
// (up to twice the kernel's limit for one environment string), the
// policy the hook parses from ocserv's variables and the firewall's plan
// for it never allow an address that the full lists do not allow. A list
// cut short can widen access two ways (an entry cut in two reads as a
// wider prefix; the no-routes after the cut vanish), so this is what
// reading policy variables whole, or failing closed, must guarantee.
func FuzzPolicyNeverWidens(f *testing.F) {
	// The case: the old 64 KiB cap cut OCSERV_ROUTES right after
	// "192.168.128.0/2" (2426 filler entries and a 19-byte one before it),
	// which read as 192.0.0.0/2.
	f.Add(uint16(2426), []byte{172, 160, 255, 128, 28, 0, 192, 168, 128, 0, 24, 0, 192, 168, 128, 77, 32, 1})
	f.Add(uint16(0), []byte{10, 0, 0, 0, 8, 2, 10, 1, 0, 0, 16, 3})
	f.Add(uint16(6000), []byte{0, 0, 0, 0, 0, 0, 172, 16, 0, 0, 12, 3})
	f.Add(uint16(5698), []byte{192, 168, 0, 0, 16, 2, 192, 168, 7, 0, 24, 1})
	f.Fuzz(func(t *testing.T, n uint16, data []byte) {
		fillN := int(n) % 10000 // up to 270 KB, about twice the limit
		fill, fillPfx := filler(fillN)
		routes, noRoutes, text := fuzzRoutes(data)
		routes = slices.Concat(fillPfx, routes)
		env := map[string]string{
			"OCSERV_RESTRICT_TO_ROUTES": "1",
			"OCSERV_ROUTES":             fill + text[0],
			"OCSERV_NO_ROUTES":          fill + text[1],
		}
		noRoutes = slices.Concat(fillPfx, noRoutes)
		ev := events.FromEnv(events.Connect, env)
		pl, err := buildPlan("vpns0", ev.Policy)
		if err != nil {
			// Connect then installs reject-all, which allows nothing.
			pl, _ = rejectPlan("vpns0")
		}
		var probes []netip.Addr
		for _, list := range [][]netip.Prefix{routes[len(fillPfx):], noRoutes[len(fillPfx):]} {
			for _, p := range list {
				first := p.Addr()
				last := lastAddr(p)
				probes = append(probes, first, last, first.Prev(), last.Next())
			}
		}
		for i := 0; i < 256; i++ { // one address in every /8
			probes = append(probes, netip.AddrFrom4([4]byte{byte(i), 1, 2, 3}))
		}
		for _, a := range probes {
			if !a.IsValid() {
				continue
			}
			want := !containedIn(noRoutes, a) && (len(routes) == 0 || containedIn(routes, a))
			if pl.allows(a, "tcp", 443) && !want {
				t.Fatalf("%s is allowed by the parsed policy but not by the full lists (%d filler entries, problems %q)",
					a, fillN, ev.Problems)
			}
		}
	})
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) | (^uint32(0) >> p.Bits())
	if p.Bits() == 0 {
		v = ^uint32(0)
	}
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}
