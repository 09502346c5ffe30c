package userconf

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrInvalidValue wraps every refusal of a key or a value.
var ErrInvalidValue = errors.New("invalid value")

// Bounds of values.
const (
	MaxValueLen = 256 // one value, in bytes
	MaxValues   = 64  // values of one multi-valued key
)

// Key is one key operators may set in a per-user or per-group file.
type Key struct {
	Name string
	// Multi keys take several values, one line each (route = …, route =
	// …); ocserv uses every line. For the others it uses the last line.
	Multi bool
	// Syntax describes accepted values, for help texts and errors.
	Syntax   string
	validate func(string) error
	// quote writes the value in double quotes (ocserv strips them), as
	// ocserv's documentation writes it.
	quote bool
}

// Validate checks one value for the key.
func (k Key) Validate(v string) error {
	if err := basicValue(v); err != nil {
		return fmt.Errorf("%s: %w", k.Name, err)
	}
	if err := k.validate(v); err != nil {
		return fmt.Errorf("%w: %s = %q: %v (expected %s)", ErrInvalidValue, k.Name, clip(v), err, k.Syntax)
	}
	return nil
}

// keys is the whitelist: what ocserv 1.1.6's sec-mod reads from a
// per-user or per-group file (src/sup-config/file.c), minus what it reads
// under another name or not at all (see docs/user-management.md):
// tunnel-all-dns (1.1.6 compares the name with "tunnel_all_dns"),
// ipv6-prefix (not read per user; give ipv6-network a /prefix),
// user-profile (a path the worker opens; global only per ocserv's
// documentation) and the ipv4-/ipv6-dns and -nbns aliases (use dns, nbns).
var keys = []Key{
	{Name: "route", Multi: true, Syntax: `"default", an IPv4 network as a.b.c.d/len or a.b.c.d/netmask, or an IPv6 network as addr/len`, validate: routeDefault},
	{Name: "no-route", Multi: true, Syntax: `an IPv4 network as a.b.c.d/len or a.b.c.d/netmask, or an IPv6 network as addr/len`, validate: route},
	{Name: "iroute", Multi: true, Syntax: `a network behind the client, as a.b.c.d/len or a.b.c.d/netmask or addr6/len`, validate: route},
	{Name: "dns", Multi: true, Syntax: "an IPv4 or IPv6 address", validate: ipAddr},
	{Name: "nbns", Multi: true, Syntax: "an IPv4 or IPv6 address", validate: ipAddr},
	{Name: "split-dns", Multi: true, Syntax: "a DNS domain such as corp.example.com", validate: domain},
	{Name: "ipv4-network", Syntax: "an IPv4 network address, optionally with /len", validate: ipv4Network},
	{Name: "ipv4-netmask", Syntax: "a dotted IPv4 netmask such as 255.255.255.0", validate: netmask},
	{Name: "ipv6-network", Syntax: "an IPv6 network as addr/len", validate: ipv6Network},
	{Name: "ipv6-subnet-prefix", Syntax: "the prefix length given to each client, 1 to 128", validate: intRange(1, 128)},
	{Name: "explicit-ipv4", Syntax: "an IPv4 address", validate: ipv4Addr},
	{Name: "explicit-ipv6", Syntax: "an IPv6 address", validate: ipv6Addr},
	{Name: "restrict-user-to-routes", Syntax: "true or false", validate: boolean},
	{Name: "restrict-user-to-ports", Syntax: `a list such as "tcp(443), udp(53), icmp()" or its negation "!(tcp(22))"; protocols tcp, udp, sctp (with a port 1-65535), icmp, icmpv6, esp (with empty parentheses)`, validate: ports, quote: true},
	{Name: "deny-roaming", Syntax: "true or false", validate: boolean},
	{Name: "no-udp", Syntax: "true or false", validate: boolean},
	{Name: "rx-data-per-sec", Syntax: "bytes per second, 0 (no limit) or 1000 to 2147483647 (ocserv counts in kB/s: less than 1000 would mean no limit)", validate: rate},
	{Name: "tx-data-per-sec", Syntax: "bytes per second, 0 (no limit) or 1000 to 2147483647 (ocserv counts in kB/s: less than 1000 would mean no limit)", validate: rate},
	{Name: "idle-timeout", Syntax: "seconds, 0 (none) to 2147483647", validate: intRange(0, 1<<31-1)},
	{Name: "mobile-idle-timeout", Syntax: "seconds, 0 (none) to 2147483647", validate: intRange(0, 1<<31-1)},
	{Name: "session-timeout", Syntax: "seconds, 0 (none) to 2147483647", validate: intRange(0, 1<<31-1)},
	{Name: "stats-report-time", Syntax: "seconds, 0 to 2147483647", validate: intRange(0, 1<<31-1)},
	{Name: "keepalive", Syntax: "seconds, 0 to 86400", validate: intRange(0, 86400)},
	{Name: "dpd", Syntax: "seconds, 0 to 86400", validate: intRange(0, 86400)},
	{Name: "mobile-dpd", Syntax: "seconds, 0 to 86400", validate: intRange(0, 86400)},
	{Name: "mtu", Syntax: "bytes, 576 to 65535", validate: intRange(576, 65535)},
	{Name: "max-same-clients", Syntax: "sessions, 0 (no limit) to 65535", validate: intRange(0, 65535)},
	{Name: "net-priority", Syntax: "a socket priority 0 to 15, or a TOS byte in hex such as 0x10", validate: netPriority},
	{Name: "hostname", Syntax: "a host name such as vpn-client-1 or host.example.com", validate: domain},
	{Name: "cgroup", Syntax: `cgroup v1 controllers and path as "cpuset,cpu:name" (ignored on a cgroup v2 only host)`, validate: cgroup},
}

// Keys returns the whitelist, in a stable order.
func Keys() []Key { return append([]Key(nil), keys...) }

// LookupKey finds a whitelisted key by its exact name (ocserv 1.1.6
// compares names case-sensitively).
func LookupKey(name string) (Key, bool) {
	for _, k := range keys {
		if k.Name == name {
			return k, true
		}
	}
	return Key{}, false
}

// ValidateValue checks one value of a whitelisted key.
func ValidateValue(key, value string) error {
	k, ok := LookupKey(key)
	if !ok {
		return fmt.Errorf("%w: key %q is not one that may be set (see userconf.Keys)", ErrInvalidValue, clip(key))
	}
	return k.Validate(value)
}

// basicValue refuses what no value of any key may contain: it must stay
// one line of the ini file ocserv reads, mean the same to ocserv as to
// us (ocserv strips spaces and double quotes at both ends, and ';' or '#'
// can start a comment), and be of bounded size.
func basicValue(v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%w: empty value", ErrInvalidValue)
	case len(v) > MaxValueLen:
		return fmt.Errorf("%w: value of %d bytes (at most %d)", ErrInvalidValue, len(v), MaxValueLen)
	case !utf8.ValidString(v):
		return fmt.Errorf("%w: value is not UTF-8", ErrInvalidValue)
	case strings.TrimSpace(v) != v:
		return fmt.Errorf("%w: value %q has leading or trailing space", ErrInvalidValue, clip(v))
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || r == '"' || r == ';' || r == '#' || r == '\\' || r == '`' || r == '$' {
			return fmt.Errorf("%w: value %q contains %q", ErrInvalidValue, clip(v), r)
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 60 {
		i := 60
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		return s[:i] + "…"
	}
	return s
}

func routeDefault(v string) error {
	if v == "default" {
		return nil
	}
	return route(v)
}

// route accepts what ocserv 1.1.6's ip_route_sanity_check accepts and
// what makes sense as a route: an address with a prefix length or (IPv4)
// a contiguous dotted netmask, no host bits set, prefix not 0 (1.1.6
// refuses an IPv4 /0 at login; "default" says that for route).
func route(v string) error {
	addrS, lenS, ok := strings.Cut(v, "/")
	if !ok {
		return errors.New("missing /prefix")
	}
	addr, err := netip.ParseAddr(addrS)
	if err != nil || addr.Zone() != "" {
		return errors.New("not an IP address before '/'")
	}
	var bits int
	if addr.Is4() && strings.Contains(lenS, ".") {
		bits, err = maskBits(lenS)
		if err != nil {
			return err
		}
	} else {
		bits, err = strictInt(lenS)
		if err != nil || bits < 0 || bits > addr.BitLen() {
			return fmt.Errorf("prefix length %q out of range 1-%d", lenS, addr.BitLen())
		}
	}
	if addr.Is4In6() {
		return errors.New("IPv4-mapped IPv6 address; write the IPv4 form")
	}
	if bits == 0 {
		return errors.New(`prefix length 0; use "route = default" for all traffic`)
	}
	p := netip.PrefixFrom(addr, bits)
	if p.Masked().Addr() != addr {
		return fmt.Errorf("host bits set; the network is %s", p.Masked())
	}
	return nil
}

// maskBits converts a dotted netmask to its prefix length.
func maskBits(m string) (int, error) {
	a, err := netip.ParseAddr(m)
	if err != nil || !a.Is4() {
		return 0, fmt.Errorf("netmask %q is not a dotted IPv4 netmask", m)
	}
	b := a.As4()
	u := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	ones := 0
	for u&(1<<31) != 0 {
		ones++
		u <<= 1
	}
	if u != 0 {
		return 0, fmt.Errorf("netmask %q is not contiguous", m)
	}
	return ones, nil
}

func netmask(v string) error {
	bits, err := maskBits(v)
	if err != nil {
		return err
	}
	if bits == 0 {
		return errors.New("netmask 0.0.0.0")
	}
	return nil
}

func ipAddr(v string) error {
	a, err := netip.ParseAddr(v)
	if err != nil || a.Zone() != "" || a.Is4In6() {
		return errors.New("not an IP address")
	}
	if a.IsUnspecified() {
		return errors.New("unspecified address")
	}
	return nil
}

func ipv4Addr(v string) error {
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is4() {
		return errors.New("not an IPv4 address")
	}
	if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return errors.New("not a unicast address")
	}
	return nil
}

func ipv6Addr(v string) error {
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
		return errors.New("not an IPv6 address")
	}
	if a.IsUnspecified() || a.IsMulticast() {
		return errors.New("not a unicast address")
	}
	return nil
}

func ipv4Network(v string) error {
	if !strings.Contains(v, "/") {
		return ipv4Addr(v)
	}
	a, _, _ := strings.Cut(v, "/")
	if ad, err := netip.ParseAddr(a); err != nil || !ad.Is4() {
		return errors.New("not an IPv4 address before '/'")
	}
	return route(v)
}

func ipv6Network(v string) error {
	a, _, ok := strings.Cut(v, "/")
	if !ok {
		return errors.New("missing /prefix")
	}
	if ad, err := netip.ParseAddr(a); err != nil || !ad.Is6() || ad.Is4In6() {
		return errors.New("not an IPv6 address before '/'")
	}
	return route(v)
}

// strictInt parses a decimal integer without sign, spaces or leading
// zeros (ocserv's strtol would read "12abc" as 12; we do not).
func strictInt(s string) (int, error) {
	if s == "" || len(s) > 10 || (len(s) > 1 && s[0] == '0') {
		return 0, errors.New("not a plain decimal number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("not a plain decimal number")
		}
	}
	return strconv.Atoi(s)
}

func intRange(lo, hi int) func(string) error {
	return func(v string) error {
		n, err := strictInt(v)
		if err != nil {
			return err
		}
		if n < lo || n > hi {
			return fmt.Errorf("%d out of range %d-%d", n, lo, hi)
		}
		return nil
	}
}

func rate(v string) error {
	n, err := strictInt(v)
	if err != nil {
		return err
	}
	if n != 0 && (n < 1000 || n > 1<<31-1) {
		return fmt.Errorf("%d out of range: 0, or 1000-2147483647", n)
	}
	return nil
}

func boolean(v string) error {
	if v != "true" && v != "false" {
		return errors.New("not true or false")
	}
	return nil
}

func netPriority(v string) error {
	if strings.HasPrefix(v, "0x") {
		h := v[2:]
		if len(h) < 1 || len(h) > 2 {
			return errors.New("TOS must be 0x00-0xff")
		}
		if _, err := strconv.ParseUint(h, 16, 8); err != nil {
			return errors.New("TOS must be 0x00-0xff")
		}
		return nil
	}
	return intRange(0, 15)(v)
}

// domain accepts a DNS name: dot-separated labels of letters, digits and
// inner hyphens, each 1-63 bytes, 253 in all, no trailing dot.
func domain(v string) error {
	if len(v) > 253 {
		return errors.New("longer than 253 bytes")
	}
	for _, l := range strings.Split(v, ".") {
		if l == "" || len(l) > 63 {
			return errors.New("empty or over-long label")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return errors.New("label starts or ends with '-'")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q is not allowed in a DNS name", rune(c))
			}
		}
	}
	return nil
}

// ports follows ocserv's cfg_parse_ports (config-ports.c) and is
// stricter: lower-case protocols, a port 1-65535 for tcp, udp and sctp,
// empty parentheses for icmp, icmpv6 and esp, commas between entries, and
// the negated form only as a whole "!( … )".
func ports(v string) error {
	s := v
	if strings.HasPrefix(s, "!") {
		s = strings.TrimSpace(s[1:])
		if !strings.HasPrefix(s, "(") || !strings.HasSuffix(s, ")") {
			return errors.New("a negation must be !( … )")
		}
		s = s[1 : len(s)-1]
	}
	items := strings.Split(s, ",")
	if len(items) > 64 {
		return errors.New("more than 64 entries")
	}
	for _, it := range items {
		it = strings.TrimSpace(it)
		open := strings.IndexByte(it, '(')
		if open < 0 || !strings.HasSuffix(it, ")") {
			return fmt.Errorf("entry %q is not proto(port)", it)
		}
		proto := strings.TrimSpace(it[:open])
		arg := it[open+1 : len(it)-1]
		if strings.ContainsAny(arg, "()") {
			return fmt.Errorf("entry %q has nested parentheses", it)
		}
		switch proto {
		case "tcp", "udp", "sctp":
			n, err := strictInt(arg)
			if err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("entry %q needs a port 1-65535", it)
			}
		case "icmp", "icmpv6", "esp":
			if arg != "" {
				return fmt.Errorf("entry %q takes no port: write %s()", it, proto)
			}
		default:
			return fmt.Errorf("unknown protocol %q", proto)
		}
	}
	return nil
}

// cgroup accepts "controller[,controller…]:path" with plain names.
func cgroup(v string) error {
	ctrls, path, ok := strings.Cut(v, ":")
	if !ok || ctrls == "" || path == "" {
		return errors.New("not controllers:path")
	}
	for _, c := range strings.Split(ctrls, ",") {
		if c == "" {
			return errors.New("empty controller name")
		}
		for i := 0; i < len(c); i++ {
			if !(c[i] >= 'a' && c[i] <= 'z' || c[i] >= '0' && c[i] <= '9' || c[i] == '_') {
				return fmt.Errorf("controller %q has %q", c, rune(c[i]))
			}
		}
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return errors.New("path with an empty, '.' or '..' element")
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
				return fmt.Errorf("path has %q", rune(c))
			}
		}
	}
	return nil
}
