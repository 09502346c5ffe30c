package ocserv

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The real 1.1.6 captures were taken on a host in UTC (raw_up_since
// 1795325131 is 05:25:31 UTC and "Up since" says 05:25); the tests parse
// local times in another zone too, to show the zone is honoured.
var (
	utc   = time.UTC
	plus3 = time.FixedZone("UTC+3", 3*3600)
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// aliceAt and bobAt are the golden values of the two users in the 1.1.6
// captures, written by hand from the files.
func aliceAt(loc *time.Location) User {
	return User{
		ID: 9114, Username: "alice", Groupname: "", State: "connected", VHost: "default",
		Device: "vpns0", MTU: 1434, Location: "unknown",
		RemoteIP: ip("127.0.0.1"), LocalDeviceIP: ip("127.0.0.1"),
		IPv4: ip("192.168.250.50"), PTPIPv4: ip("192.168.250.1"),
		UserAgent: "Open AnyConnect VPN Agent v9.01-3", Hostname: "vm",
		RX: 0, TX: 400, HasCounters: true, AverageRX: "0 bytes/sec", AverageTX: "40 bytes/sec",
		DPD: 90 * time.Second, KeepAlive: 32400 * time.Second,
		ConnectedAt: time.Date(2026, 11, 22, 5, 25, 0, 0, loc), ConnectedAtCoarse: true,
		Session: "lUuhGo", FullSession: "lUuhGo9w2dgR953LR8Ria32FJuk=",
		TLSCiphersuite: "(TLS1.3)-(ECDHE-SECP256R1)-(RSA-PSS-RSAE-SHA256)-(AES-256-GCM)",
		DTLSCipher:     "(DTLS1.2)-(PSK)-(AES-256-GCM)",
		DNS:            []string{"192.168.250.1"}, NBNS: []string{}, SplitDNSDomains: []string{},
		Routes: []string{"10.10.10.0/255.255.255.0"}, NoRoutes: []string{"10.10.10.128/255.255.255.128"},
		IRoutes: []string{}, RestrictedToRoutes: true, RestrictedToPorts: []string{},
	}
}

func bobAt(loc *time.Location) User {
	u := aliceAt(loc)
	u.ID, u.Username, u.Groupname, u.Device = 9113, "bob", "staff", "vpns1"
	u.IPv4 = ip("192.168.250.106")
	u.Session, u.FullSession = "0Dfl5l", "0Dfl5lfeuR278ajub0iC26eZ3LI="
	return u
}

// sameUser compares everything but Raw, which is checked separately.
func sameUser(t *testing.T, what string, got, want User) {
	t.Helper()
	if got.Raw == nil {
		t.Errorf("%s: Raw is nil", what)
	}
	got.Raw = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func TestFixtureShowUsers(t *testing.T) {
	for _, loc := range []*time.Location{utc, plus3} {
		users, notes, err := ParseUsers(fixture(t, "show-users.json"), loc)
		if err != nil {
			t.Fatal(err)
		}
		if len(notes) != 0 {
			t.Errorf("notes on valid output:\n%s", noteText(notes))
		}
		if len(users) != 2 {
			t.Fatalf("%d users, want 2", len(users))
		}
		sameUser(t, "alice", users[0], aliceAt(loc))
		sameUser(t, "bob", users[1], bobAt(loc))
		// Fields the type does not name stay available.
		if users[0].Raw["_TX"] != "400 bytes" || users[0].Raw["_Connected at"] != "   10s" {
			t.Errorf("Raw lost human fields: %v", users[0].Raw)
		}
	}
	if a, b := aliceAt(utc).ConnectedAt, aliceAt(plus3).ConnectedAt; a.Sub(b) != 3*time.Hour {
		t.Errorf("the same local text in UTC and UTC+3 should be 3h apart, got %s", a.Sub(b))
	}
}

func TestFixtureShowUserAndID(t *testing.T) {
	users, _, err := ParseUsers(fixture(t, "show-user-alice.json"), utc)
	if err != nil || len(users) != 1 {
		t.Fatalf("show user alice: %d users, %v", len(users), err)
	}
	sameUser(t, "show user alice", users[0], aliceAt(utc))

	users, _, err = ParseUsers(fixture(t, "show-id.json"), utc)
	if err != nil || len(users) != 1 {
		t.Fatalf("show id: %d users, %v", len(users), err)
	}
	sameUser(t, "show id 9113", users[0], bobAt(utc))

	after := aliceAt(utc)
	after.TX, after.AverageTX = 448, "20 bytes/sec"
	users, _, err = ParseUsers(fixture(t, "show-users-after-disconnect.json"), utc)
	if err != nil || len(users) != 1 {
		t.Fatalf("show users after bob's disconnect: %d users, %v", len(users), err)
	}
	sameUser(t, "alice after bob left", users[0], after)

	for _, f := range []string{"show-user-nosuch.json", "show-id-nosuch.json"} {
		users, notes, err := ParseUsers(fixture(t, f), utc)
		if err != nil || users == nil || len(users) != 0 || len(notes) != 0 {
			t.Errorf("%s: %v %d notes %v; want an empty, non-nil list", f, users, len(notes), err)
		}
	}
}

func TestFixtureShowStatus(t *testing.T) {
	s, notes, err := ParseStatus(fixture(t, "show-status.json"), plus3)
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != 0 {
		t.Errorf("notes:\n%s", noteText(notes))
	}
	want := Status{
		Status: "online", Online: true, ServerPID: 9072, SecModPID: 9074, SecModInstances: 1,
		UpSince: time.Unix(1795325131, 0), Uptime: 12 * time.Second, ActiveSessions: 2,
		LastStatsReset: time.Unix(1795325131, 0),
	}
	raw := s.Raw
	s.Raw = nil
	if !reflect.DeepEqual(s, want) {
		t.Errorf("status:\n got %+v\nwant %+v", s, want)
	}
	if raw["Median latency"] != "<1ms" || len(raw) != 36 {
		t.Errorf("Raw has %d members (want all 36): %v", len(raw), raw)
	}

	s, _, err = ParseStatus(fixture(t, "show-status-2.json"), utc)
	if err != nil {
		t.Fatal(err)
	}
	if s.ServerPID != 10531 || s.SecModPID != 10533 || s.IPsInBanList != 1 || s.ActiveSessions != 0 ||
		s.Uptime != 5*time.Second || !s.UpSince.Equal(time.Unix(1795325172, 0)) || s.UpSinceCoarse {
		t.Errorf("status-2: %+v", s)
	}

	// Without raw_up_since the minute-resolution text is used and marked.
	noRaw := strings.Replace(string(fixture(t, "show-status.json")), `"raw_up_since":  1795325131,`, "", 1)
	s, _, err = ParseStatus([]byte(noRaw), utc)
	if err != nil {
		t.Fatal(err)
	}
	if !s.UpSinceCoarse || !s.UpSince.Equal(time.Date(2026, 11, 22, 5, 25, 0, 0, utc)) {
		t.Errorf("coarse up since: %v coarse=%v", s.UpSince, s.UpSinceCoarse)
	}
	if d := time.Unix(1795325131, 0).Sub(s.UpSince); d < 0 || d >= time.Minute {
		t.Errorf("coarse time %v is not within the minute before the exact one", s.UpSince)
	}
}

func TestFixtureShowSessions(t *testing.T) {
	for _, f := range []string{"show-sessions-all.json", "show-sessions-valid.json"} {
		ss, notes, err := ParseSessions(fixture(t, f), utc)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		// 1.1.6 ends each object with a comma: two repairs.
		if n := strings.Count(noteText(notes), "trailing comma before '}'"); n != 2 || len(notes) != 2 {
			t.Errorf("%s: notes:\n%s", f, noteText(notes))
		}
		if len(ss) != 2 {
			t.Fatalf("%s: %d sessions", f, len(ss))
		}
		created := time.Date(2026, 11, 22, 5, 25, 0, 0, utc)
		want := []Session{
			{Session: "lUuhGo", FullSession: "lUuhGo9w2dgR953LR8Ria32FJuk=", Created: created, CreatedCoarse: true,
				State: "authenticated", Username: "alice", VHost: "default", UserAgent: "Open AnyConnect VPN Agent v9.01-3",
				RemoteIP: ip("127.0.0.1"), Location: "unknown", SessionIsOpen: true, InUse: true},
			{Session: "0Dfl5l", FullSession: "0Dfl5lfeuR278ajub0iC26eZ3LI=", Created: created, CreatedCoarse: true,
				State: "authenticated", Username: "bob", Groupname: "staff", VHost: "default", UserAgent: "Open AnyConnect VPN Agent v9.01-3",
				RemoteIP: ip("127.0.0.1"), Location: "unknown", SessionIsOpen: true, InUse: true},
		}
		for i := range ss {
			if ss[i].Raw["tls_auth_ok"] == nil {
				t.Errorf("%s: Raw misses tls_auth_ok", f)
			}
			ss[i].Raw = nil
		}
		if !reflect.DeepEqual(ss, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", f, ss, want)
		}
	}
	ss, notes, err := ParseSessions(fixture(t, "show-session.json"), utc)
	if err != nil || len(ss) != 1 || ss[0].Session != "lUuhGo" || ss[0].Username != "alice" || len(notes) != 1 {
		t.Errorf("show session: %+v %v\n%s", ss, err, noteText(notes))
	}
}

func TestFixtureShowIRoutes(t *testing.T) {
	rs, notes, err := ParseIRoutes(fixture(t, "show-iroutes.json"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range rs {
		if rs[i].Raw["Device"] != rs[i].Device {
			t.Errorf("entry %d: Raw %v does not match", i, rs[i].Raw)
		}
		rs[i].Raw = nil
	}
	want := []IRoute{
		{ID: 9114, Username: "alice", VHost: "default", Device: "vpns0", IP: ip("192.168.250.50"), IRoutes: []string{}},
		{ID: 9113, Username: "bob", VHost: "default", Device: "vpns1", IP: ip("192.168.250.106"), IRoutes: []string{}},
	}
	if !reflect.DeepEqual(rs, want) {
		t.Errorf("iroutes:\n got %+v\nwant %+v", rs, want)
	}
	if !strings.Contains(noteText(notes), `one object holding 2 users split at each "ID"`) {
		t.Errorf("split not noted:\n%s", noteText(notes))
	}
}

func TestFixtureBans(t *testing.T) {
	bans, _, err := ParseBans(fixture(t, "show-ip-bans-2.json"), utc)
	if err != nil || len(bans) != 1 {
		t.Fatalf("bans: %v %v", bans, err)
	}
	b := bans[0]
	if b.IP != ip("127.0.0.1") || b.Score != 60 || !b.SinceCoarse || !b.Since.Equal(time.Date(2026, 11, 22, 5, 26, 0, 0, utc)) || b.Raw["_Since"] != "    1s" {
		t.Errorf("ban: %+v", b)
	}
	points, _, err := ParseBans(fixture(t, "show-ip-ban-points-2.json"), utc)
	if err != nil || len(points) != 1 || points[0].IP != ip("127.0.0.1") || points[0].Score != 60 || !points[0].Since.IsZero() {
		t.Errorf("ban points: %+v %v", points, err)
	}
	for _, f := range []string{"show-ip-bans.json", "show-ip-ban-points.json"} {
		bs, _, err := ParseBans(fixture(t, f), utc)
		if err != nil || bs == nil || len(bs) != 0 {
			t.Errorf("%s: %v %v, want an empty list", f, bs, err)
		}
	}
}

// userQuirk is a show users entry with one quirk of another version
// applied; each test below edits it.
const userQuirk = `[
  {
    "ID":  77,
    "Username":  "carol",
    "Groupname":  "staff",
    "State":  "connected",
    "Device":  "vpns3",
    "Remote IP":  "2001:db8::7",
    "IPv4":  "192.168.250.9",
    "IPv6":  "fd00:250::9",
    "P-t-P IPv6":  "fd00:250::1",
    QUIRK
  }
]`

func quirkUser(t *testing.T, quirk string) (User, []Note) {
	t.Helper()
	users, notes, err := ParseUsers([]byte(strings.Replace(userQuirk, "QUIRK", quirk, 1)), utc)
	if err != nil {
		t.Fatalf("%s: %v", quirk, err)
	}
	if len(users) != 1 || users[0].ID != 77 || users[0].Username != "carol" || users[0].IPv6 != ip("fd00:250::9") || users[0].RemoteIP != ip("2001:db8::7") {
		t.Fatalf("%s: %+v", quirk, users)
	}
	return users[0], notes
}

func TestQuirkDuplicateTX(t *testing.T) {
	// ≤ 1.2.0 with a rate limit: "Limit RX" and the TX limit under "TX",
	// then the counters.
	u, notes := quirkUser(t, `"Limit RX":  "1.0 KB/sec",
    "TX":  "2.0 KB/sec",
    "RX":  "1234",
    "TX":  "98765",
    "_RX":  "1.2 KB"`)
	if !u.HasCounters || u.RX != 1234 || u.TX != 98765 {
		t.Errorf("counters RX %d TX %d (has %v), want 1234/98765", u.RX, u.TX, u.HasCounters)
	}
	if u.LimitRX != "1.0 KB/sec" || u.LimitTX != "2.0 KB/sec" {
		t.Errorf("limits %q/%q", u.LimitRX, u.LimitTX)
	}
	if u.Raw["TX"] != "98765" {
		t.Errorf("Raw TX = %v, want the counter", u.Raw["TX"])
	}
	if !strings.Contains(noteText(notes), `duplicate key "TX"`) {
		t.Errorf("duplicate not noted:\n%s", noteText(notes))
	}
}

func TestQuirkNumbersAndBooleans(t *testing.T) {
	// Numbers as numbers (other versions) and as strings, booleans as
	// "True", True, true and 0/1.
	u, notes := quirkUser(t, `"RX":  154892, "TX": "18446744073709551615", "MTU": 1400, "DPD": "60",
    "Restricted to routes": "False"`)
	if u.RX != 154892 || u.TX != 18446744073709551615 || u.MTU != 1400 || u.DPD != time.Minute || u.RestrictedToRoutes {
		t.Errorf("%+v", u)
	}
	if len(notes) != 0 {
		t.Errorf("notes for convertible values:\n%s", noteText(notes))
	}
	for _, b := range []string{`"True"`, `True`, `true`, `1`, `"yes"`} {
		u, _ := quirkUser(t, `"Restricted to routes": `+b)
		if !u.RestrictedToRoutes {
			t.Errorf("Restricted to routes %s read as false", b)
		}
	}
	u, notes = quirkUser(t, `"RX": "lots", "TX": "5", "Restricted to routes": "maybe"`)
	if u.HasCounters || u.RestrictedToRoutes {
		t.Errorf("unreadable values used: %+v", u)
	}
	nt := noteText(notes)
	for _, want := range []string{`"RX" is not a non-negative integer (string "lots")`, "only one of RX and TX", `"Restricted to routes" is not a boolean`} {
		if !strings.Contains(nt, want) {
			t.Errorf("missing note %q in:\n%s", want, nt)
		}
	}
}

func TestQuirkInvalidValues(t *testing.T) {
	u, notes := quirkUser(t, `"User-Agent": "(invalid)", "Routes": ["(invalid)", "10.0.0.0/8"], "RX": "(invalid)", "TX": "1"`)
	if u.UserAgent != "" || !reflect.DeepEqual(u.Routes, []string{"10.0.0.0/8"}) || u.HasCounters {
		t.Errorf("(invalid) used as a value: %+v", u)
	}
	nt := noteText(notes)
	if strings.Count(nt, "(invalid)") != 3 {
		t.Errorf("want a note for each of the three (invalid) values:\n%s", nt)
	}
	// Raw keeps what occtl printed.
	if u.Raw["User-Agent"] != "(invalid)" {
		t.Errorf("Raw User-Agent = %v", u.Raw["User-Agent"])
	}
}

func TestQuirkConnectedAt(t *testing.T) {
	u, _ := quirkUser(t, `"Connected at":  "2026-11-22 05:25", "_Connected at": "  10s", "raw_connected_at":  1795325131`)
	if !u.ConnectedAt.Equal(time.Unix(1795325131, 0)) || u.ConnectedAtCoarse {
		t.Errorf("raw_connected_at present: %v coarse=%v", u.ConnectedAt, u.ConnectedAtCoarse)
	}
	u, _ = quirkUser(t, `"Connected at":  "2026-11-22 05:25"`)
	if !u.ConnectedAt.Equal(time.Date(2026, 11, 22, 5, 25, 0, 0, utc)) || !u.ConnectedAtCoarse {
		t.Errorf("raw_connected_at absent: %v coarse=%v", u.ConnectedAt, u.ConnectedAtCoarse)
	}
	u, notes := quirkUser(t, `"Connected at":  "yesterday"`)
	if !u.ConnectedAt.IsZero() || !strings.Contains(noteText(notes), `"Connected at" = "yesterday" is not a date`) {
		t.Errorf("bad date: %v\n%s", u.ConnectedAt, noteText(notes))
	}
}

func TestQuirkDefaultRouteAndPreAuth(t *testing.T) {
	u, _ := quirkUser(t, `"Routes": "defaultroute", "DNS": ["10.0.16.1", "fc00::1:8601"], "Restricted to ports": ["tcp(443)", "!udp(53)"]`)
	if !u.DefaultRoute || len(u.Routes) != 0 || len(u.DNS) != 2 || !reflect.DeepEqual(u.RestrictedToPorts, []string{"tcp(443)", "!udp(53)"}) {
		t.Errorf("%+v", u)
	}
	// A worker still authenticating has no name and no counters.
	users, _, err := ParseUsers([]byte(`[{"ID": 46, "Username": "(none)", "Groupname": "(none)", "State": "pre-auth", "Remote IP": "172.18.0.3"}]`), utc)
	if err != nil || len(users) != 1 || users[0].Username != "" || users[0].HasCounters || users[0].State != "pre-auth" {
		t.Errorf("pre-auth: %+v %v", users, err)
	}
}

func TestQuirkTruncatedAndTrailing(t *testing.T) {
	full := string(fixture(t, "show-users.json"))
	// Output cut short after bob's last member: both closers missing.
	cut := full[:strings.LastIndex(full, `"Restricted to ports":	[]`)+len(`"Restricted to ports":	[]`)]
	users, notes, err := ParseUsers([]byte(cut), utc)
	if err != nil || len(users) != 2 || users[1].ID != 9113 {
		t.Fatalf("truncated: %d users %v", len(users), err)
	}
	if nt := noteText(notes); !strings.Contains(nt, "missing '}'") || !strings.Contains(nt, "missing ']'") {
		t.Errorf("repairs not noted:\n%s", nt)
	}
	// Trailing commas after every member and object, missing comma between
	// the objects.
	bad := strings.ReplaceAll(full, `"Restricted to ports":	[]`, `"Restricted to ports":	[],`)
	bad = strings.Replace(bad, "},\n\n  {", "}\n\n  {", 1)
	bad = strings.Replace(bad, "}\n]", "},\n]", 1)
	users, notes, err = ParseUsers([]byte(bad), utc)
	if err != nil || len(users) != 2 {
		t.Fatalf("trailing commas: %d users %v", len(users), err)
	}
	sameUser(t, "bob with trailing commas", users[1], bobAt(utc))
	if len(notes) != 4 {
		t.Errorf("want 4 repairs (2 trailing in objects, 1 in the array, 1 missing comma):\n%s", noteText(notes))
	}
	// An empty list printed with a space, as show user does.
	users, _, err = ParseUsers([]byte("[ ]"), utc)
	if err != nil || users == nil || len(users) != 0 {
		t.Errorf("[ ]: %v %v", users, err)
	}
}

func TestQuirkIRoutesFixed(t *testing.T) {
	// ≥ 1.4.0: a real array, one object per user.
	rs, _, err := ParseIRoutes([]byte(`[
  {"ID": 5, "Username": "r1", "vhost": "default", "Device": "vpns0", "IP": "10.1.0.2", "iRoutes": ["192.168.5.0/255.255.255.0"]},
  {"ID": 6, "Username": "r2", "vhost": "default", "Device": "vpns1", "IP": "fd00::2", "iRoutes": []}
]`))
	if err != nil || len(rs) != 2 || rs[0].IRoutes[0] != "192.168.5.0/255.255.255.0" || rs[1].IP != ip("fd00::2") {
		t.Errorf("%+v %v", rs, err)
	}
	// 1.1.6 with nobody connected prints an empty block.
	rs, _, err = ParseIRoutes([]byte("  {\n  }\n"))
	if err != nil || rs == nil || len(rs) != 0 {
		t.Errorf("empty: %+v %v", rs, err)
	}
}

func TestQuirkBansTrailingComma(t *testing.T) {
	// Before 1.4.1 a skipped entry leaves the previous one's comma behind.
	bs, notes, err := ParseBans([]byte("[\n  {\n    \"IP\":  \"10.0.0.1\",\n    \"Score\":  20\n  },\n]\n"), utc)
	if err != nil || len(bs) != 1 || bs[0].IP != ip("10.0.0.1") || bs[0].Score != 20 || len(notes) != 1 {
		t.Errorf("%+v %v\n%s", bs, err, noteText(notes))
	}
}

func TestTypedErrors(t *testing.T) {
	cases := []struct {
		name  string
		parse func([]byte) error
		in    string
		off   int
		msg   string
	}{
		{"users: ID not a number", users, `[{"ID": "abc"}]`, 8, `entry 0: "ID" is not a positive integer (string "abc")`},
		{"users: no ID", users, `[{"Username": "x"}, {}]`, 1, `entry 0: no "ID"`},
		{"users: element not an object", users, `[{"ID": 1}, 7]`, 12, "entry 1: expected an object, found a number"},
		{"users: root is a string", users, `"hello"`, 0, "expected an array of objects or an object, found a string"},
		{"status: two objects", status, `[{"Status": "online"}, {"Status": "online"}]`, 0, "expected one status object, found 2"},
		{"status: no Status", status, `{"Server PID": 1}`, 0, `status object without "Status"`},
		{"sessions: no id", sessions, `[{"State": "x"}]`, 1, `entry 0: no "Session" or "Full session"`},
		{"iroutes: second user without ID value", iroutes, `{"ID": 1, "IP": "1.2.3.4" "ID": "x"}`, 32, `entry 1: "ID" is not a positive integer`},
		{"bans: no IP", bans, `[{"Score": 3}]`, 1, `entry 0: no readable "IP"`},
		{"bans: bad IP", bans, `[{"IP": "300.1.1.1"}]`, 8, `entry 0: no readable "IP"`},
		{"syntax passes through", users, `[{"ID" 1}]`, 7, `':' expected`},
	}
	for _, c := range cases {
		err := c.parse([]byte(c.in))
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("%s: err = %v, want a *ParseError", c.name, err)
			continue
		}
		if pe.Offset != c.off || !strings.Contains(pe.Msg, c.msg) {
			t.Errorf("%s: %v; want byte %d and %q", c.name, err, c.off, c.msg)
		}
	}
}

func users(b []byte) error    { _, _, err := ParseUsers(b, utc); return err }
func status(b []byte) error   { _, _, err := ParseStatus(b, utc); return err }
func sessions(b []byte) error { _, _, err := ParseSessions(b, utc); return err }
func iroutes(b []byte) error  { _, _, err := ParseIRoutes(b); return err }
func bans(b []byte) error     { _, _, err := ParseBans(b, utc); return err }

func TestVersion(t *testing.T) {
	cases := []struct {
		in   string
		want Version
	}{
		{"OpenConnect server control (occtl) version 1.1.6\nCopyright (C) 2014-2017 Red Hat and others.", Version{1, 1, 6}},
		{"ocserv 1.1.6\n\nCompiled with: seccomp, oath\nGnuTLS version: 3.7.9 (compiled with 3.7.8)", Version{1, 1, 6}},
		{"ocserv 1.4.2", Version{1, 4, 2}},
		{"1.3", Version{1, 3, 0}},
	}
	for _, c := range cases {
		v, err := ParseVersion(c.in)
		if err != nil || v != c.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v", c.in, v, err, c.want)
		}
	}
	if _, err := ParseVersion("no digits here"); err == nil {
		t.Error("ParseVersion without a number succeeded")
	}
	caps := []struct {
		v                         Version
		terminate, raw, dupTX, ir bool
	}{
		{Version{1, 1, 6}, false, false, true, false},
		{Version{1, 2, 1}, false, false, false, false},
		{Version{1, 2, 3}, false, true, false, false},
		{Version{1, 4, 0}, false, true, false, true},
		{Version{1, 4, 2}, true, true, false, true},
		{Version{2, 0, 0}, true, true, false, true},
		{Version{}, false, false, false, false},
	}
	for _, c := range caps {
		if c.v.HasTerminate() != c.terminate || c.v.HasRawConnectedAt() != c.raw || c.v.HasDuplicateTX() != c.dupTX || c.v.ValidIRoutesJSON() != c.ir {
			t.Errorf("%v: terminate %v raw %v dupTX %v iroutes %v", c.v, c.v.HasTerminate(), c.v.HasRawConnectedAt(), c.v.HasDuplicateTX(), c.v.ValidIRoutesJSON())
		}
	}
	if (Version{1, 10, 0}).Compare(Version{1, 9, 9}) != 1 || (Version{1, 1, 6}).Compare(Version{1, 1, 6}) != 0 || (Version{0, 9, 9}).Compare(Version{1, 0, 0}) != -1 {
		t.Error("Compare does not order numerically")
	}
}
