package userconf

import (
	"errors"
	"strings"
	"testing"
)

func TestValidators(t *testing.T) {
	hostile := []string{
		"", " ", "10.0.0.0/8;reboot", "$(id)", "`id`", "10.0.0.0/8\nroute = default", "10.0.0.0/8\r",
		"10.0.0.0/8\x00", "../../etc/passwd", "\"10.0.0.0/8\"", "10.0.0.0/8 # c", " 10.0.0.0/8", "10.0.0.0/8 ",
		strings.Repeat("1", 1<<20), "\\x41", "a\tb",
	}
	cases := map[string]struct{ good, bad []string }{
		"route": {
			good: []string{"default", "10.0.0.0/8", "10.10.10.0/255.255.255.0", "192.168.1.0/24", "10.1.2.3/32", "fd00:1::/64", "2001:db8::/32"},
			bad:  []string{"0.0.0.0/0", "::/0", "0.0.0.0/0.0.0.0", "10.0.0.1/8", "10.0.0.0", "10.0.0.0/33", "10.0.0.0/255.0.255.0", "10.0.0.0/-1", "10.0.0.0/08", "10.0.0.0/8x", "fe80::1%eth0/64", "::ffff:10.0.0.0/104", "300.0.0.0/8", "example.com/24", "DEFAULT", "10.0.0.0/ 8"},
		},
		"no-route": {good: []string{"10.10.10.128/255.255.255.128", "10.0.0.0/8"}, bad: []string{"default"}},
		"iroute":   {good: []string{"192.168.50.0/24"}, bad: []string{"default", "192.168.50.1/24"}},
		"dns":      {good: []string{"192.168.1.1", "2001:db8::53"}, bad: []string{"0.0.0.0", "dns.example.com", "1.2.3.4/32", "fe80::1%eth0"}},
		"nbns":     {good: []string{"10.0.0.2"}, bad: []string{"10.0.0.256"}},
		"split-dns": {good: []string{"example.com", "corp.example.com", "a-b.c"},
			bad: []string{"-a.com", "a..b", "exa mple.com", "a_b.com", "example.com.", strings.Repeat("a", 64) + ".com"}},
		"ipv4-network":            {good: []string{"192.168.2.0", "192.168.2.0/24"}, bad: []string{"192.168.2.1/24", "fd00::/64", "0.0.0.0"}},
		"ipv4-netmask":            {good: []string{"255.255.255.0", "255.255.255.252"}, bad: []string{"255.0.255.0", "0.0.0.0", "24", "/24"}},
		"ipv6-network":            {good: []string{"fd00:1:2::/48"}, bad: []string{"fd00:1:2::", "10.0.0.0/8", "fd00::1/48"}},
		"ipv6-subnet-prefix":      {good: []string{"64", "128"}, bad: []string{"0", "129", "-1", "64.5"}},
		"explicit-ipv4":           {good: []string{"192.168.250.77"}, bad: []string{"192.168.250.77/32", "224.0.0.1", "255.255.255.255", "fd00::1"}},
		"explicit-ipv6":           {good: []string{"fd00:250::77"}, bad: []string{"10.0.0.1", "::", "ff02::1", "::ffff:10.0.0.1"}},
		"restrict-user-to-routes": {good: []string{"true", "false"}, bad: []string{"yes", "TRUE", "1", "on"}},
		"deny-roaming":            {good: []string{"true"}, bad: []string{"no"}},
		"no-udp":                  {good: []string{"false"}, bad: []string{"0"}},
		"restrict-user-to-ports": {
			good: []string{"tcp(443)", "tcp(443), udp(53), icmp()", "tcp(443),tcp(80),udp(443),sctp(99),icmp(),icmpv6(),esp()", "!(tcp(22))", "!(tcp(22), udp(53))", "! (tcp(22))"},
			bad:  []string{"tcp(0)", "tcp(65536)", "tcp()", "icmp(8)", "http(80)", "TCP(443)", "tcp 443", "tcp(443) udp(53)", "tcp(443),", "!tcp(22)", "!(tcp(22)", "tcp((443))", "tcp(443)x", "tcp(4a3)"},
		},
		"rx-data-per-sec":     {good: []string{"0", "1000", "40000", "2147483647"}, bad: []string{"999", "1", "2147483648", "-5", "40k", "1e6", "0x10"}},
		"tx-data-per-sec":     {good: []string{"50000"}, bad: []string{"10"}},
		"idle-timeout":        {good: []string{"0", "1200"}, bad: []string{"-1", "1200s", "99999999999"}},
		"mobile-idle-timeout": {good: []string{"2400"}, bad: []string{"x"}},
		"session-timeout":     {good: []string{"86400"}, bad: []string{"1.5"}},
		"stats-report-time":   {good: []string{"360"}, bad: []string{"-360"}},
		"keepalive":           {good: []string{"32400"}, bad: []string{"86401"}},
		"dpd":                 {good: []string{"90"}, bad: []string{"1000000"}},
		"mobile-dpd":          {good: []string{"1800"}, bad: []string{"abc"}},
		"mtu":                 {good: []string{"1400", "576"}, bad: []string{"575", "65536", "0"}},
		"max-same-clients":    {good: []string{"0", "2"}, bad: []string{"65536"}},
		"net-priority":        {good: []string{"0", "3", "15", "0x10", "0xff"}, bad: []string{"16", "0x100", "0x", "0xzz", "-1"}},
		"hostname":            {good: []string{"laptop-1", "host.example.com"}, bad: []string{"host name", "host_1", "-host"}},
		"cgroup":              {good: []string{"cpuset,cpu:test", "memory:vpn/users"}, bad: []string{"cpu", "cpu:../x", "cpu:/abs", "CPU:x", "cpu:a b", ":x"}},
	}
	for _, k := range Keys() {
		c, ok := cases[k.Name]
		if !ok {
			t.Errorf("key %s has no validator test", k.Name)
			continue
		}
		for _, v := range c.good {
			if err := ValidateValue(k.Name, v); err != nil {
				t.Errorf("%s = %q refused: %v", k.Name, v, err)
			}
		}
		for _, v := range append(append([]string{}, c.bad...), hostile...) {
			err := ValidateValue(k.Name, v)
			if err == nil {
				t.Errorf("%s = %q accepted", k.Name, clip(v))
				continue
			}
			if !errors.Is(err, ErrInvalidValue) {
				t.Errorf("%s = %q: %v is not ErrInvalidValue", k.Name, clip(v), err)
			}
			if len(err.Error()) > 600 {
				t.Errorf("%s: error of %d bytes", k.Name, len(err.Error()))
			}
		}
	}
	for name := range cases {
		if _, ok := LookupKey(name); !ok {
			t.Errorf("test case for %s, which is not a key", name)
		}
	}
}

func TestKeysOutsideWhitelist(t *testing.T) {
	for _, k := range []string{"tunnel-all-dns", "ipv6-prefix", "user-profile", "ipv4-dns", "connect-script", "auth", "Route", "route ", "", "route\n", "../route"} {
		if err := ValidateValue(k, "x"); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("key %q: %v, want ErrInvalidValue", k, err)
		}
		if _, ok := LookupKey(k); ok {
			t.Errorf("key %q is whitelisted", k)
		}
	}
}
