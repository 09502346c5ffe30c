package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/livestate"
)

// wireCases: what parseWire must take (ok) or refuse, as jsonv2 does; the
// edges of each rule parseWire keeps (wire.go), at each level of the
// schema. TestWireCases checks both sides against the column, and
// FuzzWireMatchesJSONv2 starts from them.
var wireCases = []struct {
	json string
	ok   bool
}{
	// Duplicates, at each level, by the same name or by an escaped one.
	{`{"v":1,"v":1}`, false},
	{`{"v":1,"\u0076":1}`, false},
	{`{"x":1,"x":[]}`, false},
	{`{"x":1,"y":1,"X":1}`, true},
	{`{"v":1,"V":2,"Event_ID":"x"}`, true},
	{`{"session":{"username":"a","username":"b"}}`, false},
	{`{"session":{"username":"a","UserName":"b"}}`, true},
	{`{"session":{"x":{},"x":{}}}`, false},
	{`{"stats":{"bytes_in":1,"bytes_in":1}}`, false},
	{`{"accounting":{"slot":1,"slot":null}}`, false},
	{`{"reconcile":{"action":"seen","act\u0069on":"seen"}}`, false},
	{`{"overflow":{"events":1,"events":1}}`, false},
	{`{"quarantine":{"reason":"a","reason":"a"}}`, false},
	{`{"audit":{"ok":true,"ok":true}}`, false},
	{`{"audit":{"args":{"a":"1","a":"2"}}}`, false},
	{`{"audit":{"args":{"a":"1","\u0061":"2"}}}`, false},
	{`{"audit":{"args":{"a":"1","A":"2"}}}`, true},
	{`{"overflow":{"seq_ranges":[{"a":1,"a":2}]}}`, false},
	{`{"policy":{"routes":[{"a":1,"b":{"c":1,"c":2}}]}}`, false},
	{`{"policy":{"routes":[{"a":1,"b":{"c":1,"C":2}}],"a":[[{}],{"a":{"a":{}}}]}}`, true},
	{`{"session":null,"session":null}`, false},
	{`{"k0":0,"k1":0,"k2":0,"k3":0,"k4":0,"k5":0,"k6":0,"k7":0,"k8":0,"k9":0,"k10":0,"k11":0,"k3":0}`, false},
	{`{"k0":0,"k1":0,"k2":0,"k3":0,"k4":0,"k5":0,"k6":0,"k7":0,"k8":0,"k9":0,"k10":0,"k11":0,"v":1,"k12":0}`, true},
	{`{"k0":0,"k1":0,"k2":0,"k3":0,"k4":0,"k5":0,"k6":0,"k7":0,"k8":0,"k9":0,"k10":0,"k11":0,"v":1,"v":1}`, false},

	// null, into each kind of field.
	{`null`, true},
	{" \tnull\r\n", true},
	{`{"v":null,"event_id":null,"server_id":null,"spool_id":null,"seq":null,"type":null,"time":null,"session_uid":null,` +
		`"session":null,"stats":null,"admitted":null,"refusal":null,"accounting":null,"reconcile":null,"overflow":null,` +
		`"quarantine":null,"audit":null}`, true},
	{`{"session":{"id":null,"username":null,"ip_real":null}}`, true},
	{`{"stats":{"bytes_in":null,"bytes_out":0,"duration_s":null}}`, true},
	{`{"accounting":{"slot":null,"bytes_in":null,"counter_reset":null,"connected_at":null}}`, true},
	{`{"reconcile":{"joined_session_uids":null,"bytes_in":null,"connected_at_coarse":null}}`, true},
	{`{"reconcile":{"joined_session_uids":[null,"a"]}}`, true},
	{`{"reconcile":{"joined_session_uids":[]}}`, true},
	{`{"audit":{"args":null,"ok":null,"elapsed_ms":null}}`, true},
	{`{"audit":{"args":{"a":null}}}`, true},
	{`{"audit":{"args":{}}}`, true},
	{`{"overflow":{"seq_ranges":null}}`, true},
	{`{"overflow":{"seq_ranges":  [ [1, 2] , [4,4]]  },"quarantine":{"seq_ranges":"a\u0041\n"}}`, true},
	{`{"quarantine":{"seq_ranges":{"b":[1,{"c":null}]},"events":2}}`, true},
	{`{"admitted":false,"session":{},"stats":{},"accounting":{},"reconcile":{},"overflow":{},"quarantine":{},"audit":{}}`, true},

	// The wrong JSON type for a field.
	{`{"v":"1"}`, false},
	{`{"v":true}`, false},
	{`{"event_id":1}`, false},
	{`{"event_id":{}}`, false},
	{`{"seq":"7"}`, false},
	{`{"session":[]}`, false},
	{`{"session":"x"}`, false},
	{`{"session":{"id":"1"}}`, false},
	{`{"admitted":"true"}`, false},
	{`{"admitted":1}`, false},
	{`{"stats":{"bytes_in":"1"}}`, false},
	{`{"stats":[1]}`, false},
	{`{"accounting":{"counter_reset":0}}`, false},
	{`{"accounting":{"slot":false}}`, false},
	{`{"reconcile":{"joined_session_uids":"a"}}`, false},
	{`{"reconcile":{"joined_session_uids":[1]}}`, false},
	{`{"reconcile":{"joined_session_uids":[["a"]]}}`, false},
	{`{"audit":{"args":[]}}`, false},
	{`{"audit":{"args":{"a":1}}}`, false},
	{`{"audit":{"ok":"true"}}`, false},
	{`{"overflow":{"events":"1"}}`, false},
	{`{"x":{"y":[1,"a",true,null,{}]},"y":"z"}`, true},

	// Numbers at the edges.
	{`{"seq":0}`, true},
	{`{"seq":18446744073709551615}`, true},
	{`{"seq":18446744073709551616}`, false},
	{`{"seq":99999999999999999999999999}`, false},
	{`{"seq":-0}`, false},
	{`{"seq":-1}`, false},
	{`{"seq":1.0}`, false},
	{`{"seq":0.5}`, false},
	{`{"seq":1e3}`, false},
	{`{"seq":1E3}`, false},
	{`{"seq":0e0}`, false},
	{`{"seq":1000000000000000000.0}`, false},
	{`{"seq":1000000000000000000e0}`, false},
	{`{"v":-0}`, true},
	{`{"v":9223372036854775807}`, true},
	{`{"v":9223372036854775808}`, false},
	{`{"v":-9223372036854775808}`, true},
	{`{"v":-9223372036854775809}`, false},
	{`{"v":1.0}`, false},
	{`{"v":-1e0}`, false},
	{`{"session":{"id":-0}}`, true},
	{`{"session":{"id":-1}}`, true},
	{`{"session":{"id":18446744073709551615}}`, false},
	{`{"stats":{"bytes_in":-0}}`, false},
	{`{"stats":{"bytes_out":18446744073709551615}}`, true},
	{`{"accounting":{"slot":-0,"bytes_in":1,"duration_s":12345678901234567890}}`, true},
	{`{"accounting":{"slot":-9223372036854775808}}`, true},
	{`{"accounting":{"delta_in":1.5}}`, false},
	{`{"reconcile":{"bytes_out":-5}}`, false},
	{`{"overflow":{"events":-5,"bytes":9223372036854775807}}`, true},
	{`{"audit":{"elapsed_ms":1e2}}`, false},
	{`{"x":1.5e300,"y":-0.0,"z":[1E-5,0]}`, true},
	{`{"v":01}`, false},
	{`{"v":+1}`, false},
	{`{"v":.5}`, false},
	{`{"v":1.}`, false},
	{`{"v":NaN}`, false},
	{`{"v":nan}`, false},
	{`{"v":Infinity}`, false},
	{`{"v":-inf}`, false},
	{`{"x":1-2}`, false},
	{`{"x":1e}`, false},
	{`{"x":-}`, false},
	{`{"x":[01]}`, false},
	{`{"x":{"y":1.}}`, false},
	{`{"x":.5}`, false},
	{`{"x":-01}`, false},
	{`{"x":1e5,"y":-1.5E-3,"z":[0,-0,0.0,1E+2]}`, true},
	{`{"x":Infinity}`, false},
	{`{"x":-nan}`, false},
	{`{"x":+inf}`, false},
	{`{"x":e5}`, false},
	{`{"x":1e5e5}`, false},
	{`{"x":1..5}`, false},
	{`{"overflow":{"seq_ranges":[01]}}`, false},
	{`{"overflow":{"seq_ranges":[1.5e3,-0]}}`, true},
	{"{\"x\":[1.5e3,01]}\n", false},
	{"{\"x\":\"a\nb\"}\n", false},
	{"\n{\"v\":1}", true},
	{"{\"v\":1}\r\n", true},
	{"{\n\t\"v\": 1,\n\t\"x\": [01]\n}", false},

	// Strings: escapes, surrogates, control characters.
	{`{"event_id":"\u0000"}`, true},
	{`{"session":{"username":"a\u0000b","user_agent":"\"\\\/\b\f\n\r\t"}}`, true},
	{`{"session":{"hostname":"\ud83d\ude00\uD83D\uDE00é😀"}}`, true},
	{`{"session":{"hostname":"\ud800"}}`, false},
	{`{"session":{"hostname":"\udc00"}}`, false},
	{`{"session":{"hostname":"\ud800\u0041"}}`, false},
	{`{"session":{"hostname":"\ud800x"}}`, false},
	{`{"session":{"hostname":"\udc00\ud800"}}`, false},
	{`{"session":{"hostname":"\ud800\ud800"}}`, false},
	{`{"session":{"hostname":"\\ud800"}}`, true},
	{`{"session":{"hostname":"\\\ud800"}}`, false},
	{`{"x":"\ud800"}`, false},
	{`{"x":["\uDBFF\uDFFF"]}`, true},
	{`{"\ud800":1}`, false},
	{`{"\ud83d\ude00":1}`, true},
	{`{"session":{"us\u0065rname":"alice"}}`, true},
	{`{"event_id":"\x"}`, false},
	{`{"event_id":"\u12"}`, false},
	{`{"event_id":"\u12g4"}`, false},
	{`{"event_id":"\U0041"}`, false},
	{"{\"event_id\":\"a\tb\"}", false},
	// fastjson's Validate took these (FuzzWireMatchesJSONv2 found the
	// first): a control character before an escape in the same string.
	{"{\"\":{\"\":\"\x1c\\b0000\"}}", false},
	{"{\"session\":{\"username\":\"a\x01\\\"b\"}}", false},
	{"{\"x\x1f\\n\":1}", false},
	{"{\"x\":[\"\t\\u0041\"]}", false},
	{"{\"event_id\":\"a\x00b\"}", false},
	{"{\"event_id\":\"a\x7fb\"}", true},
	{"{\"ev\x01\":1}", false},
	{`{"event_id":"abc}`, false},
	{`{"event_id":"abc\"}`, false},

	// Trailing data, the top level, the document's shape.
	{`{}`, true},
	{" {}\n\t ", true},
	{`{} x`, false},
	{`{}{}`, false},
	{`{},`, false},
	{"{}\x00", false},
	{`{} null`, false},
	{`[]`, false},
	{`[{}]`, false},
	{`"x"`, false},
	{`1`, false},
	{`true`, false},
	{``, false},
	{` `, false},
	{`{`, false},
	{`{"v":1`, false},
	{`{"v"}`, false},
	{`{"v":1,}`, false},
	{`{,"v":1}`, false},
	{`{'v':1}`, false},
	{`{v:1}`, false},
	{"\ufeff{}", false},
	{"{\"x\":\"\xff\"}", false},
	{`{"x":` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + `}`, true},
	{`{"x":` + strings.Repeat(`{"a":`, 64) + "1" + strings.Repeat("}", 64) + `}`, true},
}

func TestWireCases(t *testing.T) {
	for _, c := range wireCases {
		var v2 wire
		errV2 := jsonv2.Unmarshal([]byte(c.json), &v2)
		if (errV2 == nil) != c.ok {
			t.Errorf("%q: jsonv2 says %v, the table says ok=%v", c.json, errV2, c.ok)
		}
		var w wire
		err := parseWireChecked([]byte(c.json), &w)
		if (err == nil) != c.ok {
			t.Errorf("%q: parseWire says %v, the table says ok=%v", c.json, err, c.ok)
		}
		if err == nil && errV2 == nil && !reflect.DeepEqual(w, v2) {
			t.Errorf("%q:\nparseWire %s\njsonv2    %s", c.json, dump(w), dump(v2))
		}
	}
}

// parseWireChecked is parseWire behind Decode's own check: invalid UTF-8
// never reaches it.
func parseWireChecked(b []byte, w *wire) error {
	if !utf8.Valid(b) {
		return fmt.Errorf("not valid UTF-8")
	}
	return parseWire(b, w)
}

// FuzzWireMatchesJSONv2: for any bytes, parseWire and jsonv2.Unmarshal
// into a wire both refuse them or both take them, with the same result.
// One class is left out: values nested more than fastjson.MaxDepth (300)
// deep, which fastjson refuses and jsonv2 takes up to 10000 (wire.go says
// why refusing them is right for Decode).
func FuzzWireMatchesJSONv2(f *testing.F) {
	for _, c := range wireCases {
		f.Add([]byte(c.json))
	}
	for _, b := range producerPayloads(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var v2 wire
		errV2 := jsonv2.Unmarshal(b, &v2)
		if !utf8.Valid(b) {
			// Decode refuses these before parseWire; jsonv2 must too,
			// or Decode's check would refuse more than it did.
			if errV2 == nil {
				t.Fatalf("jsonv2 took invalid UTF-8 %q", b)
			}
			return
		}
		var w wire
		err := parseWire(b, &w)
		switch {
		case err != nil && errV2 == nil:
			if strings.Contains(err.Error(), "too big depth") && depth(b) >= fastjsonMaxDepth-1 {
				return // the one difference, on the side of refusing
			}
			t.Fatalf("%q: parseWire refuses (%v), jsonv2 takes it", b, err)
		case err == nil && errV2 != nil:
			t.Fatalf("%q: parseWire takes it as %s, jsonv2 refuses (%v)", b, dump(w), errV2)
		case err == nil && !reflect.DeepEqual(w, v2):
			t.Fatalf("%q:\nparseWire %s\njsonv2    %s", b, dump(w), dump(v2))
		}
	})
}

const fastjsonMaxDepth = 300

// depth: how deep b's containers nest, by jsontext's decoder.
func depth(b []byte) int {
	dec := jsontext.NewDecoder(strings.NewReader(string(b)), jsontext.AllowDuplicateNames(true))
	max := 0
	for {
		if _, err := dec.ReadToken(); err != nil {
			return max
		}
		if d := dec.StackDepth(); d > max {
			max = d
		}
	}
}

// TestParseWireCopiesStrings: what parseWire filled stays as it was when
// the pooled parser parses the next document (its strings are copies, not
// views of the parser's buffer).
func TestParseWireCopiesStrings(t *testing.T) {
	checked := 0
	for _, b := range producerPayloads(t) {
		var w, want wire
		if jsonv2.Unmarshal(b, &want) != nil {
			continue // the member named twice
		}
		if err := parseWire(b, &w); err != nil {
			t.Fatal(err)
		}
		checked++
		// As long a document, other letters in every string: the parser's
		// buffer, reused, is overwritten where w's strings would point.
		other := []byte(strings.Map(func(r rune) rune {
			if 'a' <= r && r <= 'z' {
				return 'a' + 'z' - r
			}
			return r
		}, string(b)))
		for range 4 {
			var x wire
			parseWire(other, &x)
		}
		if !reflect.DeepEqual(w, want) {
			t.Errorf("after another parse:\n%s\nwant %s", dump(w), dump(want))
		}
	}
	if checked < 10 {
		t.Errorf("%d of the producers' payloads decode", checked)
	}
}

func dump(w wire) string {
	b, err := json.Marshal(w)
	if err != nil {
		return fmt.Sprintf("%+v", w)
	}
	return string(b)
}

// producerPayloads: the events the ledger's tests decode (event_test.go,
// BenchmarkDecode), made by the producers' own types.
func producerPayloads(tb testing.TB) [][]byte {
	raw := func(v any) *json.RawMessage {
		b, err := json.Marshal(v)
		if err != nil {
			tb.Fatal(err)
		}
		r := json.RawMessage(b)
		return &r
	}
	base := func(typ events.Type) *events.Event {
		return &events.Event{V: 1, EventID: "0193a6f2-6c1e-7c3a-9b1e-2f0c4d5e6f70", ServerID: "vpn1", SpoolID: "s", Seq: 7, Type: typ,
			Time: "2026-11-24T06:23:45.313622612Z", SessionUID: "01a20c39-82a1-7ad6-94d6-1337fcece38f",
			Session: &events.Session{ID: 9114, Username: "alice", IPRemote: "192.168.250.50", IPReal: "::ffff:203.0.113.9", IPv6Local: "fd00::1"}}
	}
	var evs []*events.Event
	e := base(events.Accounting)
	e.Accounting = raw(livestate.Accounting{Interim: 2, Slot: 2, SessionID: "lUuhGo", LogicalSessionUID: "01a20c39-82a1-7ad6-94d6-1337fcece38f",
		BytesIn: 7000, BytesOut: 10000, DeltaIn: 5000, DeltaOut: 1000, IntervalS: 299, ConnectedAt: "2026-11-22T05:25:00Z",
		ConnectedAtCoarse: true, DurationS: 601, ObservedAt: "2026-11-22T05:35:01Z"})
	evs = append(evs, e)
	in := uint64(5)
	e = base(events.Reconcile)
	e.Reconcile = raw(livestate.Reconcile{Action: livestate.ActionJoined, Reason: "roamed", HookKey: "9114-vpns0", SessionID: "x",
		LogicalSessionUID: "01a20c39-82a1-7ad6-94d6-1337fcece38f", JoinedSessionUIDs: []string{"01a20c39-82a1-7ad6-94d6-1337fcece38f"},
		BytesIn: &in, ObservedAt: "2026-11-22T05:35:01Z"})
	evs = append(evs, e)
	e = base(events.Audit)
	e.SessionUID, e.Session = "", nil
	e.Audit = raw(cmdsvc.Audit{Phase: cmdsvc.PhaseRefused, Action: "kick", Subject: "ocserv.cmd.vpn1.kick", Key: "UA…", KeyName: "ops",
		Role: "read-only", Args: map[string]string{"user": "alice", "device": "vpns0"}, OK: false, Code: "forbidden", Message: "no", SuppressedRefusals: 3})
	evs = append(evs, e)
	e = base(events.Connect)
	e.Session.UserAgent = "a\x00b" + strings.Repeat("x", 5000)
	evs = append(evs, e)
	e = base(events.Disconnect)
	dur := uint64(3)
	e.Stats = &events.Stats{BytesIn: 1, BytesOut: 2, DurationS: &dur}
	evs = append(evs, e)
	// A hook's connect with the members the ledger does not read.
	e = base(events.Connect)
	e.BootID, e.MonoNS = "b0e7", 12345
	e.Policy = &events.Policy{Routes: []string{"10.0.0.0/8"}, DNS: []string{"10.0.0.53"}, RestrictToRoutes: true,
		AllowPorts: []events.Port{{Proto: "tcp", Port: 443}, {Proto: "icmp"}}}
	e.Firewall = &events.Firewall{Mode: "on", Action: "applied", Backend: "nftables", Micros: 800,
		SupersededBy: &events.SessionRef{ID: 9, SessionUID: "01a20c39-82a1-7ad6-94d6-1337fcece38f"}}
	e.Hook = &events.HookInfo{Version: "1.0", LockWaitUS: 3}
	e.Truncated, e.Problems = []string{"user_agent"}, []string{"IPV6_PREFIX: not a prefix"}
	evs = append(evs, e)
	evs = append(evs, &events.Event{V: 1, EventID: "0193A6F2-6C1E-7C3A-9B1E-2F0C4D5E6F70", ServerID: "vpn1", Seq: 1, Type: events.Connect,
		Time: "2026-11-24T06:23:45Z", SessionUID: "01A20C39-82A1-7AD6-94D6-1337FCECE38F", Session: &events.Session{ID: 1, Username: "alice",
			IPReal: "::ffff:203.0.113.9", IPRealLocal: "198.51.100.1", IPRemote: "192.168.250.50", IPv6Remote: "FD00:0::50", IPv6Local: "fe80::1%vpns0"}})
	evs = append(evs, &events.Event{V: 1, EventID: "0193a6f2-6c1e-7c3a-9b1e-2f0c4d5e6f70", ServerID: "vpn1", SpoolID: "0193a6f2-6c1e-7c3a-9b1e-2f0c4d5e6f71",
		Seq: 7, Type: events.Accounting, Time: "2026-11-24T06:23:45.313622612Z", SessionUID: "01a20c39-82a1-7ad6-94d6-1337fcece38f",
		Session: &events.Session{ID: 9114, Username: "alice", Groupname: "staff", VHost: "default", Device: "vpns0",
			IPReal: "203.0.113.9", IPRealLocal: "198.51.100.1", IPLocal: "192.168.250.1", IPRemote: "192.168.250.50",
			IPv6Local: "fd00::1", IPv6Remote: "fd00::50", Hostname: "laptop", UserAgent: "Open AnyConnect VPN Agent v9.12"},
		Accounting: benchAccounting})
	admitted := false
	e = base(events.Connect)
	e.Admitted, e.Refusal = &admitted, "kicked"
	evs = append(evs, e)
	for _, typ := range []events.Type{events.Overflow, events.Quarantine} {
		e = base(typ)
		e.SessionUID, e.Session = "", nil
		n := &events.SpoolNotice{Reason: "quota", Events: 3, Bytes: 4096, SeqRanges: [][2]uint64{{1, 2}, {9, 9}}}
		if typ == events.Overflow {
			e.Overflow = n
		} else {
			e.Quarantine = n
		}
		evs = append(evs, e)
	}
	var out [][]byte
	for _, e := range evs {
		b, err := e.Marshal()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	// TestDecodeTakesEachMemberOnceAndByItsName's and FuzzDecode's.
	twice := strings.Replace(string(out[3]), `"username":"alice"`, `"username":"alice","username":"mallory"`, 1)
	cased := strings.Replace(string(out[3]), `"username":"alice"`, `"username":"alice","UserName":"mallory"`, 1)
	return append(out, []byte(twice), []byte(cased),
		[]byte(`{"v":1,"event_id":"0193a6f2-6c1e-7c3a-9b1e-2f0c4d5e6f70","server_id":"vpn1","type":"disconnect","time":"2026-11-24T06:23:45Z","session_uid":"01a20c39-82a1-7ad6-94d6-1337fcece38f","stats":{"bytes_in":1,"bytes_out":2}}`),
		[]byte(`{"v":1,"event_id":"0193a6f2-6c1e-7c3a-9b1e-2f0c4d5e6f70","server_id":"vpn1","type":"reconcile","time":"2026-11-24T06:23:45Z","session_uid":"01a20c39-82a1-7ad6-94d6-1337fcece38f","reconcile":{"action":"lost","observed_at":"2026-11-24T06:23:45Z"}}`),
		[]byte(`{"v":1}`))
}

// TestPlainStrings: every byte value at every place in the eight-byte
// words and in the tail, against the rule said byte by byte.
func TestPlainStrings(t *testing.T) {
	for n := 1; n <= 19; n++ {
		for pos := range n {
			for c := range 256 {
				b := []byte(strings.Repeat("a", n))
				b[pos] = byte(c)
				want := c >= 0x20 && c != '\\'
				if pos == n-1 && strings.IndexByte(" \n\t\r", byte(c)) >= 0 {
					want = true // trailing space after the value
				}
				if got := plainStrings(b); got != want {
					t.Fatalf("plainStrings(%q) = %v, want %v", b, got, want)
				}
			}
		}
	}
	// Several at once, where a borrow could carry from one byte to the next.
	for _, s := range []string{"\x00\x01\x1f\x20\x21\x5b\x5c\x5d", "\xff\xff\xff\xff\xff\xff\xff\x5c", "\x1f\x20\x20\x20\x20\x20\x20\x20", "{\"v\":1}\n\n"} {
		want := !strings.ContainsAny(strings.TrimRight(s, " \n\t\r"), "\\\x00\x01\x1f")
		if got := plainStrings([]byte(s)); got != want {
			t.Errorf("plainStrings(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestParseWireChecksNestedLongDocumentsFirst: a document whose brackets
// times its length pass maxErrorCost goes through jsontext's decoder
// before fastjson's Parse, whose failure would cost the depth times the
// length (the refusal is jsontext's); the producers' events do not.
func TestParseWireChecksNestedLongDocumentsFirst(t *testing.T) {
	doc := `{"a":` + strings.Repeat("[", 200) + "t" + strings.Repeat("x", 1<<20)
	var w wire
	err := parseWire([]byte(doc), &w)
	if _, ok := errors.AsType[*jsontext.SyntacticError](err); !ok {
		t.Errorf("a megabyte nested 200 deep: %v, want jsontext's refusal", err)
	}
	for _, b := range producerPayloads(t) {
		if n := strings.Count(string(b), "{") + strings.Count(string(b), "["); n*len(b) > maxErrorCost/2 {
			t.Errorf("a producer's event of %d bytes with %d brackets is within twice the bound", len(b), n)
		}
	}
}

// TestMemberTables: each wire type's table names each member once, and
// has no more members than names has bits for known ones.
func TestMemberTables(t *testing.T) {
	check := func(table string, names []string) {
		seen := map[string]bool{}
		for _, n := range names {
			if seen[n] {
				t.Errorf("%s: %q twice", table, n)
			}
			seen[n] = true
		}
		if len(names) > 32 {
			t.Errorf("%s: %d members; names has 32 bits", table, len(names))
		}
	}
	check("event", memberNames(eventMembers))
	check("session", memberNames(sessionMembers))
	check("stats", memberNames(statsMembers))
	check("accounting", memberNames(accountingMembers))
	check("reconcile", memberNames(reconcileMembers))
	check("overflow", memberNames(overflowMembers))
	check("audit", memberNames(auditMembers))
}

func memberNames[T any](ms []member[T]) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.name)
	}
	return out
}
