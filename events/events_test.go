package events

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/envfile"
)

func refEnv(t *testing.T, name string) map[string]string {
	t.Helper()
	env, err := envfile.Read(filepath.Join("..", "testdata", "ocserv-hook-env", name+".env"))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestFromEnvReference(t *testing.T) {
	dur := uint64(19)
	policy := &Policy{
		Routes:           []string{"10.10.10.0/24"},
		NoRoutes:         []string{"10.10.10.128/25"},
		DNS:              []string{"192.168.250.1"},
		RestrictToRoutes: true,
	}
	bob := &Session{
		ID: 9113, Username: "bob", Groupname: "staff", VHost: "default", Device: "vpns1",
		IPReal: "127.0.0.1", IPRealLocal: "127.0.0.1", IPLocal: "192.168.250.1", IPRemote: "192.168.250.106",
		Hostname: "vm", RemoteHostname: "vm", UserAgent: "Open AnyConnect VPN Agent v9.01-3",
	}
	tests := []struct {
		file    string
		typ     Type
		session *Session
		stats   *Stats
	}{
		{"connect", Connect, &Session{
			ID: 9114, Username: "alice", VHost: "default", Device: "vpns0",
			IPReal: "127.0.0.1", IPRealLocal: "127.0.0.1", IPLocal: "192.168.250.1", IPRemote: "192.168.250.50",
			Hostname: "vm", RemoteHostname: "vm", UserAgent: "Open AnyConnect VPN Agent v9.01-3",
		}, nil},
		{"host-update", HostUpdate, bob, nil},
		{"disconnect", Disconnect, bob, &Stats{BytesIn: 0, BytesOut: 448, DurationS: &dur}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			env := refEnv(t, tt.file)
			typ, err := ParseReason(env["REASON"])
			if err != nil || typ != tt.typ {
				t.Fatalf("ParseReason(%q) = %q, %v; want %q", env["REASON"], typ, err, tt.typ)
			}
			ev := FromEnv(typ, env)
			if len(ev.Problems) != 0 || len(ev.Truncated) != 0 {
				t.Errorf("problems %q, truncated %q; want none", ev.Problems, ev.Truncated)
			}
			if !reflect.DeepEqual(ev.Session, tt.session) {
				t.Errorf("session\n got %+v\nwant %+v", ev.Session, tt.session)
			}
			if !reflect.DeepEqual(ev.Stats, tt.stats) {
				t.Errorf("stats got %+v want %+v", ev.Stats, tt.stats)
			}
			if !reflect.DeepEqual(ev.Policy, policy) {
				t.Errorf("policy\n got %+v\nwant %+v", ev.Policy, policy)
			}
			if !ev.Policy.Restricted() {
				t.Error("Restricted() = false for OCSERV_RESTRICT_TO_ROUTES=1")
			}
		})
	}
}

func TestParseReasonUnknown(t *testing.T) {
	for _, r := range []string{"", "CONNECT", "connect ", "reconnect", "connect\n"} {
		if _, err := ParseReason(r); err == nil {
			t.Errorf("ParseReason(%q) accepted it", r)
		}
	}
}

func TestParseRoute(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "10.10.10.0/255.255.255.0", want: "10.10.10.0/24"},
		{in: "10.10.10.128/255.255.255.128", want: "10.10.10.128/25"},
		{in: "10.10.10.5/24", want: "10.10.10.0/24"}, // masked, as the kernel would
		{in: "0.0.0.0/0.0.0.0", want: "0.0.0.0/0"},
		{in: "192.0.2.7", want: "192.0.2.7/32"},
		{in: "fd00:1::/64", want: "fd00:1::/64"},
		{in: "fd00:1::1/48", want: "fd00:1::/48"},
		{in: "::ffff:10.0.0.0/104", want: "10.0.0.0/104", bad: true}, // mapped address with a v6 length
		{in: "10.0.0.0/255.0.255.0", bad: true},                      // netmask with holes
		{in: "10.0.0.0/33", bad: true},
		{in: "10.0.0.0/-1", bad: true},
		{in: "10.0.0.0/+8", bad: true},
		{in: "fd00::/ffff::", bad: true},
		{in: "10.0.0/8", bad: true},
		{in: "fe80::1%eth0/64", bad: true},
		{in: "default", bad: true},
		{in: "", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParseRoute(tt.in)
			if tt.bad {
				if err == nil {
					t.Fatalf("ParseRoute(%q) = %v, want an error", tt.in, p)
				}
				return
			}
			if err != nil || p.String() != tt.want {
				t.Fatalf("ParseRoute(%q) = %v, %v; want %s", tt.in, p, err, tt.want)
			}
		})
	}
}

func TestPolicyVariants(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    Policy
		invalid bool
	}{
		{"ipv6 and family-only variables", map[string]string{
			"OCSERV_ROUTES4": "10.0.0.0/255.0.0.0 ", "OCSERV_ROUTES6": "fd00::/64 ",
			"OCSERV_NO_ROUTES6": "fd00::ff/128 ", "OCSERV_DNS6": "fd00::53 ", "OCSERV_DNS4": "192.0.2.53 ",
		}, Policy{Routes: []string{"10.0.0.0/8", "fd00::/64"}, NoRoutes: []string{"fd00::ff/128"},
			DNS: []string{"192.0.2.53", "fd00::53"}}, false},
		{"combined variable wins and duplicates go", map[string]string{
			"OCSERV_ROUTES": "10.0.0.0/8 10.0.0.0/255.0.0.0 ", "OCSERV_ROUTES4": "192.0.2.0/24 ",
		}, Policy{Routes: []string{"10.0.0.0/8"}, NoRoutes: []string{}, DNS: []string{}}, false},
		{"allowed ports", map[string]string{
			"OCSERV_ALLOW_PORTS": "tcp 443 udp 53 icmp all esp all icmpv6 all sctp 99 ",
		}, Policy{Routes: []string{}, NoRoutes: []string{}, DNS: []string{}, AllowPorts: []Port{
			{"tcp", 443}, {"udp", 53}, {"icmp", 0}, {"esp", 0}, {"icmpv6", 0}, {"sctp", 99}}}, false},
		{"denied ports", map[string]string{"OCSERV_DENY_PORTS": "tcp 22 "},
			Policy{Routes: []string{}, NoRoutes: []string{}, DNS: []string{}, DenyPorts: []Port{{"tcp", 22}}}, false},
		{"empty routes, restricted", map[string]string{"OCSERV_RESTRICT_TO_ROUTES": "1", "OCSERV_ROUTES": " "},
			Policy{Routes: []string{}, NoRoutes: []string{}, DNS: []string{}, RestrictToRoutes: true}, false},
		{"odd port list", map[string]string{"OCSERV_ALLOW_PORTS": "tcp 443 udp"},
			Policy{Routes: []string{}, NoRoutes: []string{}, DNS: []string{}, AllowPorts: []Port{{"tcp", 443}}}, true},
		{"bad protocol", map[string]string{"OCSERV_ALLOW_PORTS": "gre all tcp 80"},
			Policy{Routes: []string{}, NoRoutes: []string{}, DNS: []string{}, AllowPorts: []Port{{"tcp", 80}}}, true},
		{"port out of range", map[string]string{"OCSERV_DENY_PORTS": "udp 65536"},
			Policy{Routes: []string{}, NoRoutes: []string{}, DNS: []string{}}, true},
		{"icmp with a port", map[string]string{"OCSERV_ALLOW_PORTS": "icmp 8"},
			Policy{Routes: []string{}, NoRoutes: []string{}, DNS: []string{}}, true},
		{"both lists", map[string]string{"OCSERV_ALLOW_PORTS": "tcp 1", "OCSERV_DENY_PORTS": "tcp 2"},
			Policy{Routes: []string{}, NoRoutes: []string{}, DNS: []string{}, AllowPorts: []Port{{"tcp", 1}}, DenyPorts: []Port{{"tcp", 2}}}, true},
		{"bad route", map[string]string{"OCSERV_ROUTES": "10.0.0.0/8 10.1.0.0/255.0.255.0 "},
			Policy{Routes: []string{"10.0.0.0/8"}, NoRoutes: []string{}, DNS: []string{}}, true},
		{"bad dns", map[string]string{"OCSERV_DNS": "dns.example "},
			Policy{Routes: []string{}, NoRoutes: []string{}, DNS: []string{}}, true},
		{"bad restrict flag", map[string]string{"OCSERV_RESTRICT_TO_ROUTES": "yes"},
			Policy{Routes: []string{}, NoRoutes: []string{}, DNS: []string{}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := FromEnv(Connect, tt.env)
			tt.want.Invalid = tt.invalid
			if !reflect.DeepEqual(*ev.Policy, tt.want) {
				t.Errorf("policy\n got %+v\nwant %+v", *ev.Policy, tt.want)
			}
			if tt.invalid && len(ev.Problems) == 0 {
				t.Error("invalid policy but no problem reported")
			}
			for _, p := range ev.Problems {
				if !strings.HasPrefix(p, "OCSERV_") {
					t.Errorf("problem %q does not name the variable", p)
				}
			}
		})
	}
}

func TestSessionValidation(t *testing.T) {
	ev := FromEnv(Disconnect, map[string]string{
		"ID": "12ab", "DEVICE": "../../etc", "IP_REAL": "999.1.1.1", "IP_REMOTE": "fd00::1",
		"IPV6_PREFIX": "129", "STATS_BYTES_IN": "-5", "STATS_BYTES_OUT": "77", "USERNAME": "ok",
	})
	s := ev.Session
	if s.ID != 0 || s.Device != "" || s.IPReal != "" || s.IPRemote != "" || s.IPv6Prefix != nil {
		t.Errorf("invalid values kept: %+v", s)
	}
	if s.Username != "ok" {
		t.Errorf("username = %q", s.Username)
	}
	if ev.Stats == nil || ev.Stats.BytesOut != 77 || ev.Stats.BytesIn != 0 || ev.Stats.DurationS != nil {
		t.Errorf("stats = %+v", ev.Stats)
	}
	for _, key := range []string{"ID:", "DEVICE:", "IP_REAL:", "IP_REMOTE:", "IPV6_PREFIX:", "STATS_BYTES_IN:"} {
		found := false
		for _, p := range ev.Problems {
			found = found || strings.HasPrefix(p, key)
		}
		if !found {
			t.Errorf("no problem names %s; problems: %q", key, ev.Problems)
		}
	}
}

// ocserv 1.1.6 puts a junk zone on IPV6_LOCAL; the address is kept without it.
func TestIPv6ZoneDropped(t *testing.T) {
	ev := FromEnv(Connect, map[string]string{"IPV6_LOCAL": "fd00:250::1%287234304", "IPV6_REMOTE": "fd00:250::5"})
	if ev.Session.IPv6Local != "fd00:250::1" || ev.Session.IPv6Remote != "fd00:250::5" || len(ev.Problems) != 0 {
		t.Errorf("got %q %q, problems %v", ev.Session.IPv6Local, ev.Session.IPv6Remote, ev.Problems)
	}
}

func TestValidDevice(t *testing.T) {
	for _, ok := range []string{"vpns0", "vpns10", "tun-user_1", "a"} {
		if err := ValidDevice(ok); err != nil {
			t.Errorf("ValidDevice(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "a:b", "a b", "sixteen-chars-xx", "a\nb", "\x7f", "vpns\xff"} {
		if err := ValidDevice(bad); err == nil {
			t.Errorf("ValidDevice(%q) accepted it", bad)
		}
	}
}

// Hostile values must never break the line or the JSON, and oversized ones
// are cut and named.
func TestHostileValuesStayOneLine(t *testing.T) {
	big := strings.Repeat("é", 60*1024) // 120 KB of two-byte runes
	env := map[string]string{
		"USERNAME":      "a\nb\r\"c\\d\x00e\u2028f",
		"GROUPNAME":     "\xff\xfe invalid utf-8 \xc3",
		"USER_AGENT":    big,
		"HOSTNAME":      "</script><b>&amp;",
		"VHOST":         "\x1b[31mred\x1b[0m",
		"OCSERV_ROUTES": strings.Repeat("10.0.0.0/8 ", 20000), // 220 KB
		"DEVICE":        "vpns0",
	}
	ev := FromEnv(Connect, env)
	ev.EventID, ev.ServerID, ev.Seq, ev.Time = "x", "s", 1, "t"
	line, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(line, []byte("\n")) != 1 || line[len(line)-1] != '\n' {
		t.Fatalf("encoded event is not exactly one line")
	}
	if !utf8.Valid(line) {
		t.Error("encoded event is not valid UTF-8")
	}
	if len(line) > 8*MaxValueBytes+4096 {
		t.Errorf("line is %d bytes; caps not applied", len(line))
	}
	var back Event
	if err := json.Unmarshal(line, &back); err != nil {
		t.Fatalf("line is not valid JSON: %v", err)
	}
	if back.Session.Username != env["USERNAME"] {
		t.Errorf("username did not round-trip: %q", back.Session.Username)
	}
	if back.Session.Hostname != env["HOSTNAME"] {
		t.Errorf("hostname changed: %q", back.Session.Hostname)
	}
	if len(back.Session.UserAgent) > MaxValueBytes || !utf8.ValidString(back.Session.UserAgent) {
		t.Errorf("user agent cut badly: %d bytes", len(back.Session.UserAgent))
	}
	if len(back.Truncated) != 1 || back.Truncated[0] != "USER_AGENT" {
		t.Errorf("truncated = %q, want only USER_AGENT (policy lists are never cut)", back.Truncated)
	}
	// The over-long route list is not read at all (a prefix of it could
	// widen access): the policy is invalid and the problem names it.
	if back.Policy == nil || !back.Policy.Invalid || len(back.Policy.Routes) != 0 {
		t.Errorf("policy = %+v, want invalid with no routes", back.Policy)
	}
	if !hasProblem(back.Problems, "OCSERV_ROUTES: 220000 bytes, over the 131072-byte limit") {
		t.Errorf("problems = %q, want the over-long OCSERV_ROUTES named", back.Problems)
	}
}

func hasProblem(problems []string, prefix string) bool {
	for _, p := range problems {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

func FuzzFromEnv(f *testing.F) {
	f.Add("connect", "9114", "vpns0", "alice", "10.10.10.0/255.255.255.0 ", "tcp 443 udp 53 ", "0", "448")
	f.Add("disconnect", "x", "../x", "\xff", "fd00::/64 bad", "icmp all esp", "-1", "1e3")
	f.Fuzz(func(t *testing.T, reason, id, dev, user, routes, ports, in, out string) {
		typ, err := ParseReason(reason)
		if err != nil {
			typ = Disconnect
		}
		ev := FromEnv(typ, map[string]string{
			"ID": id, "DEVICE": dev, "USERNAME": user, "OCSERV_ROUTES": routes,
			"OCSERV_NO_ROUTES": routes, "OCSERV_DNS": routes, "OCSERV_ALLOW_PORTS": ports,
			"STATS_BYTES_IN": in, "STATS_BYTES_OUT": out, "IP_REAL": user,
		})
		ev.EventID, ev.ServerID, ev.Seq = "e", "s", 1
		line, err := ev.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.IndexByte(line, '\n') != len(line)-1 {
			t.Fatalf("not one line: %q", line)
		}
		var back Event
		if err := json.Unmarshal(line, &back); err != nil {
			t.Fatalf("invalid JSON %q: %v", line, err)
		}
		if ev.Session.Device != "" && ValidDevice(ev.Session.Device) != nil {
			t.Fatalf("invalid device kept: %q", ev.Session.Device)
		}
		for _, r := range ev.Policy.Routes {
			if _, err := ParseRoute(r); err != nil {
				t.Fatalf("route %q kept but does not parse: %v", r, err)
			}
		}
	})
}

// The hand-written encoder must give encoding/json's bytes exactly.
func FuzzMarshalMatchesEncodingJSON(f *testing.F) {
	f.Add("alice", "a\n\"\\\x01\x7f\u2028\u2029\xff<>&", "vpns0", uint64(7), int64(-3), true, "tcp 443 icmp all", "10.0.0.0/8 fd00::/64 ")
	f.Add("", "", "", uint64(0), int64(0), false, "", "")
	f.Fuzz(func(t *testing.T, user, agent, dev string, seq uint64, mono int64, adm bool, ports, routes string) {
		ev := FromEnv(Disconnect, map[string]string{
			"USERNAME": user, "USER_AGENT": agent, "DEVICE": dev, "ID": dev, "OCSERV_ALLOW_PORTS": ports,
			"OCSERV_ROUTES": routes, "IPV6_PREFIX": dev, "STATS_DURATION": dev, "STATS_BYTES_IN": "1",
		})
		ev.EventID, ev.ServerID, ev.Seq, ev.MonoNS, ev.Time = agent, user, seq, mono, dev
		ev.Admitted = &adm
		chained := int(mono % 300)
		ev.Hook = &HookInfo{Version: user, Fallback: adm, LockWaitUS: mono, Chained: &chained}
		ev.Firewall = &Firewall{Mode: user, Error: agent, Micros: mono}
		if adm {
			ev.Firewall.SupersededBy = &SessionRef{ID: int(mono % 100000), SessionUID: user}
			ev.Policy.ListsOmitted = true
		}
		ev.Refusal = agent
		if seq%3 != 0 {
			ev.Verdict = &Verdict{Mirror: dev, AgeMS: mono, StaleMode: user, Allowed: adm, Reason: agent, Until: dev, Error: agent}
		}
		fast, err := ev.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		slow, err := ev.marshalReflect()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fast, slow) {
			t.Fatalf("hand-written encoder differs\nfast %s\nslow %s", fast, slow)
		}
	})
}

func TestMarshalMatchesEncodingJSONOnReferenceEnvs(t *testing.T) {
	for _, name := range []string{"connect", "host-update", "disconnect"} {
		env := refEnv(t, name)
		typ, _ := ParseReason(env["REASON"])
		ev := FromEnv(typ, env)
		ev.EventID, ev.ServerID, ev.Seq, ev.Time = "id", "srv", 3, "t"
		fast, _ := ev.Marshal()
		slow, _ := ev.marshalReflect()
		if !bytes.Equal(fast, slow) {
			t.Errorf("%s:\nfast %s\nslow %s", name, fast, slow)
		}
	}
}
