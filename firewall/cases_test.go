package firewall

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

// readEnv reads one of the captured hook environments (KEY=VALUE lines,
// values kept verbatim, trailing spaces included, as ocserv sets them).
func readEnv(t testing.TB, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			env[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return env
}

// Test network used by the unit tests' expectations and the namespace
// tests: the client sits on the device, the targets behind the router.
const (
	tRoute4   = "10.10.10.1"     // in the route 10.10.10.0/24
	tNoRoute4 = "10.10.10.200"   // in the no-route 10.10.10.128/25
	tOut4     = "10.20.0.1"      // outside every route
	tDNS4     = "192.168.99.53"  // the DNS server (outside the routes)
	tRoute6   = "2001:db8:10::1" // in 2001:db8:10::/64
	tNoRoute6 = "2001:db8:10:0:8000::1"
	tOut6     = "2001:db8:20::1"
	tDNS6     = "2001:db8:99::53"
)

// fwCase is one policy, as ocserv would pass it in the environment.
type fwCase struct {
	name string
	env  map[string]string
}

// testCases are the policies every test runs. Routes are written the way
// ocserv writes them (dotted netmasks for IPv4, trailing space).
func testCases(t testing.TB) []fwCase {
	ref := readEnv(t, "testdata/ocserv-hook-env/connect.env")
	routes := map[string]string{
		"OCSERV_ROUTES4":            "10.10.10.0/255.255.255.0 ",
		"OCSERV_ROUTES6":            "2001:db8:10::/64 ",
		"OCSERV_ROUTES":             "10.10.10.0/255.255.255.0 2001:db8:10::/64 ",
		"OCSERV_NO_ROUTES4":         "10.10.10.128/255.255.255.128 ",
		"OCSERV_NO_ROUTES6":         "2001:db8:10:0:8000::/65 ",
		"OCSERV_NO_ROUTES":          "10.10.10.128/255.255.255.128 2001:db8:10:0:8000::/65 ",
		"OCSERV_DNS4":               tDNS4 + " ",
		"OCSERV_DNS6":               tDNS6 + " ",
		"OCSERV_DNS":                tDNS4 + " " + tDNS6 + " ",
		"OCSERV_RESTRICT_TO_ROUTES": "1",
	}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{"REASON": "connect", "DEVICE": "vpns7", "ID": "4242", "USERNAME": "alice"}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	noRestrict := []string{"OCSERV_RESTRICT_TO_ROUTES", ""}
	return []fwCase{
		// The captured environment, device and DNS moved into the test net.
		{"reference", with(ref, "DEVICE", "vpns7", "OCSERV_DNS4", tDNS4+" ", "OCSERV_DNS", tDNS4+" ")},
		{"routes-v4v6", with(routes)},
		{"allow-ports", with(routes, "OCSERV_ALLOW_PORTS", "tcp 443 udp 5353 icmp all tcp 22 ")},
		{"allow-ports-icmpv6", with(routes, "OCSERV_ALLOW_PORTS", "tcp 443 icmpv6 all ")},
		{"allow-ports-only", with(routes, append(noRestrict, "OCSERV_ALLOW_PORTS", "tcp 443 icmp all ")...)},
		{"deny-ports", with(routes, "OCSERV_DENY_PORTS", "tcp 80 udp 5353 icmpv6 all ")},
		{"deny-ports-only", with(routes, append(noRestrict, "OCSERV_DENY_PORTS", "tcp 80 icmp all ")...)},
		{"no-routes-only", with(routes, "OCSERV_ROUTES", "", "OCSERV_ROUTES4", "", "OCSERV_ROUTES6", "")},
		{"empty-routes", with(routes, "OCSERV_ROUTES", "", "OCSERV_ROUTES4", "", "OCSERV_ROUTES6", "",
			"OCSERV_NO_ROUTES", "", "OCSERV_NO_ROUTES4", "", "OCSERV_NO_ROUTES6", "")},
	}
}

func policyOf(t testing.TB, env map[string]string) *events.Policy {
	t.Helper()
	ev := events.FromEnv(events.Connect, env)
	if ev.Policy == nil {
		t.Fatal("no policy")
	}
	return ev.Policy
}
