package events

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Size limits for values taken from the environment.
//
// Scalars are cut at MaxValueBytes: ocserv's own values are far shorter,
// and the cut only stops a hostile or broken value from making a line too
// large to ship (NATS' default max payload is 1 MiB).
//
// Policy lists (OCSERV_ROUTES, OCSERV_NO_ROUTES, OCSERV_DNS, their 4/6
// variants, OCSERV_ALLOW_PORTS, OCSERV_DENY_PORTS) are never cut: a cut
// inside an entry changes its meaning ("192.168.128.0/24" cut after "/2"
// reads as 192.0.0.0/2) and a cut between entries drops no-route carve-outs,
// both of which widen what a restricted user reaches. They are read whole
// up to MaxPolicyBytes, the kernel's own limit for one environment string
// (MAX_ARG_STRLEN, 32 pages: no exec'd process can receive a longer one,
// so a real ocserv environment always fits); a longer value, which can
// only come from somewhere else, makes the policy invalid (fail closed).
const (
	MaxValueBytes  = 1024       // one scalar variable (USER_AGENT, USERNAME, …)
	MaxPolicyBytes = 128 * 1024 // one policy variable, MAX_ARG_STRLEN
)

// FromEnv builds the session part of a hook event (type, session, stats,
// policy) from ocserv's script environment. It never fails: what cannot be
// used is left out and described in Problems, and oversized values are cut
// and named in Truncated. The caller fills in ids, times and outcome.
func FromEnv(t Type, env map[string]string) *Event {
	b := envBuilder{env: env, ev: &Event{V: SchemaVersion, Type: t}}
	b.session()
	b.policy()
	if t == Disconnect {
		b.stats()
	}
	return b.ev
}

type envBuilder struct {
	env map[string]string
	ev  *Event
}

func (b *envBuilder) problem(format string, args ...any) {
	b.ev.Problems = append(b.ev.Problems, fmt.Sprintf(format, args...))
}

// text returns the variable, cut at MaxValueBytes on a rune boundary.
func (b *envBuilder) text(key string) string {
	return b.capped(key, MaxValueBytes)
}

func (b *envBuilder) capped(key string, max int) string {
	v, ok := b.env[key]
	if !ok || len(v) <= max {
		return v
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	b.ev.Truncated = append(b.ev.Truncated, key)
	return v[:cut]
}

func (b *envBuilder) addr(key string, want func(netip.Addr) bool) string {
	v := strings.TrimSpace(b.text(key))
	if v == "" {
		return ""
	}
	a, err := netip.ParseAddr(v)
	if err != nil || !want(a) {
		b.problem("%s: not a valid address: %s", key, quoteShort(v))
		return ""
	}
	// ocserv 1.1.6 appends a meaningless zone to IPV6_LOCAL
	// ("fd00:250::1%287234304"); a tunnel address has no zone.
	return a.WithZone("").String()
}

func is4(a netip.Addr) bool   { return a.Is4() || a.Is4In6() }
func is6(a netip.Addr) bool   { return a.Is6() && !a.Is4In6() }
func isAny(a netip.Addr) bool { return true }

func (b *envBuilder) session() {
	s := &Session{
		Username:       b.text("USERNAME"),
		Groupname:      b.text("GROUPNAME"),
		VHost:          b.text("VHOST"),
		Hostname:       b.text("HOSTNAME"),
		RemoteHostname: b.text("REMOTE_HOSTNAME"),
		UserAgent:      b.text("USER_AGENT"),
		DeviceType:     b.text("DEVICE_TYPE"),
		DevicePlatform: b.text("DEVICE_PLATFORM"),
		IPReal:         b.addr("IP_REAL", isAny),
		IPRealLocal:    b.addr("IP_REAL_LOCAL", isAny),
		IPLocal:        b.addr("IP_LOCAL", is4),
		IPRemote:       b.addr("IP_REMOTE", is4),
		IPv6Local:      b.addr("IPV6_LOCAL", is6),
		IPv6Remote:     b.addr("IPV6_REMOTE", is6),
	}
	if v, ok := b.env["ID"]; ok {
		id, err := strconv.Atoi(v)
		if err != nil || id <= 0 {
			b.problem("ID: not a process id: %s", quoteShort(v))
		} else {
			s.ID = id
		}
	}
	if v := b.env["DEVICE"]; v != "" {
		if err := ValidDevice(v); err != nil {
			b.problem("DEVICE: %v", err)
		} else {
			s.Device = v
		}
	}
	if v := strings.TrimSpace(b.env["IPV6_PREFIX"]); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 128 {
			b.problem("IPV6_PREFIX: not a prefix length: %s", quoteShort(v))
		} else {
			s.IPv6Prefix = &n
		}
	}
	b.ev.Session = s
}

// ValidDevice checks an interface name the way the kernel does
// (dev_valid_name): 1 to 15 bytes, not "." or "..", no '/', ':' or
// white space. Anything else cannot be ocserv's tun device, and must never
// reach a file name or a firewall rule.
func ValidDevice(name string) error {
	if name == "" || len(name) > 15 || name == "." || name == ".." {
		return fmt.Errorf("not a valid interface name: %s", quoteShort(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '/' || c == ':' || c <= ' ' || c >= 0x7f {
			return fmt.Errorf("not a valid interface name: %s", quoteShort(name))
		}
	}
	return nil
}

func (b *envBuilder) stats() {
	st := &Stats{}
	var ok bool
	num := func(key string) (uint64, bool) {
		v, present := b.env[key]
		if !present {
			return 0, false
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			b.problem("%s: not a number: %s", key, quoteShort(v))
			return 0, false
		}
		return n, true
	}
	var present bool
	if st.BytesIn, present = num("STATS_BYTES_IN"); present {
		ok = true
	}
	if st.BytesOut, present = num("STATS_BYTES_OUT"); present {
		ok = true
	}
	if d, present := num("STATS_DURATION"); present {
		st.DurationS = &d
		ok = true
	}
	if ok {
		b.ev.Stats = st
	}
}
