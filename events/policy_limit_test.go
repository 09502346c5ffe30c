package events

import (
	"fmt"
	"strings"
	"testing"
)

// routeList renders n distinct IPv4 routes the way ocserv writes them
// (dotted netmask, space-separated, trailing space), starting at the
// given second octet.
func routeList(n int) string {
	var sb strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, "10.%d.%d.0/255.255.255.0 ", (i>>8)&0xff, i&0xff)
	}
	return sb.String()
}

// TestPolicyListsReadWhole: the case. A split-tunnel list longer
// than the old 64 KiB cap, whose old cut landed inside
// "192.168.128.0/24" (read as 192.0.0.0/2) and dropped the no-routes after
// it, is now read whole: every entry is there, the policy is valid.
func TestPolicyListsReadWhole(t *testing.T) {
	pad := routeList(2800) // ~ 70 KB of routes before the entry the old cap cut
	routes := pad + "192.168.128.0/24 "
	env := map[string]string{
		"OCSERV_RESTRICT_TO_ROUTES": "1",
		"OCSERV_ROUTES":             routes,
		"OCSERV_NO_ROUTES":          pad + "10.200.0.0/16 ",
	}
	if len(routes) <= 64*1024 || len(routes) > MaxPolicyBytes {
		t.Fatalf("fixture is %d bytes: want between the old cap and the limit", len(routes))
	}
	p := FromEnv(Connect, env).Policy
	if p.Invalid {
		t.Fatalf("a list within the kernel's limit was marked invalid")
	}
	if got := p.Routes[len(p.Routes)-1]; got != "192.168.128.0/24" {
		t.Errorf("last route %q, want 192.168.128.0/24 (read whole, not cut)", got)
	}
	if len(p.Routes) != 2801 || len(p.NoRoutes) != 2801 || p.NoRoutes[2800] != "10.200.0.0/16" {
		t.Errorf("got %d routes and %d no-routes, want 2801 each with the carve-out last", len(p.Routes), len(p.NoRoutes))
	}
}

// TestPolicyOverLimitIsInvalid: any policy variable over the kernel's
// limit for one environment string (which no exec'd process can receive
// from ocserv) is not read at all, and the policy is invalid, so a
// restricted user gets reject-all and the event names the variable.
func TestPolicyOverLimitIsInvalid(t *testing.T) {
	over := strings.Repeat("10.0.0.0/8 ", MaxPolicyBytes/11+1)
	for _, key := range []string{"OCSERV_ROUTES", "OCSERV_ROUTES4", "OCSERV_NO_ROUTES", "OCSERV_NO_ROUTES6", "OCSERV_DNS", "OCSERV_ALLOW_PORTS", "OCSERV_DENY_PORTS"} {
		t.Run(key, func(t *testing.T) {
			env := map[string]string{"OCSERV_RESTRICT_TO_ROUTES": "1", key: over}
			ev := FromEnv(Connect, env)
			if !ev.Policy.Invalid {
				t.Errorf("policy valid with %s over the limit: %+v", key, ev.Policy)
			}
			want := fmt.Sprintf("%s: %d bytes, over the %d-byte limit", key, len(over), MaxPolicyBytes)
			if !hasProblem(ev.Problems, want) {
				t.Errorf("problems %q, want one starting %q", ev.Problems, want)
			}
			if len(ev.Policy.Routes)+len(ev.Policy.NoRoutes)+len(ev.Policy.DNS)+len(ev.Policy.AllowPorts)+len(ev.Policy.DenyPorts) != 0 {
				t.Errorf("parts of an over-long variable were read: %+v", ev.Policy)
			}
		})
	}
	// Exactly at the limit is read.
	at := strings.Repeat("10.0.0.0/8 ", MaxPolicyBytes/11)
	at += strings.Repeat(" ", MaxPolicyBytes-len(at))
	if p := FromEnv(Connect, map[string]string{"OCSERV_ROUTES": at}).Policy; p.Invalid || len(p.Routes) != 1 {
		t.Errorf("a %d-byte list (at the limit): %+v", len(at), p)
	}
}
