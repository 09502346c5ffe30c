package ledger

import (
	"encoding/json"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

// benchAccounting: the accounting payload BenchmarkDecode's event carries
// (FuzzWireMatchesJSONv2 starts from it too).
var benchAccounting = func() *json.RawMessage {
	r := json.RawMessage(`{"interim":2,"slot":2,"session_id":"lUuhGo","logical_session_uid":"01a20c39-82a1-7ad6-94d6-1337fcece38f",` +
		`"bytes_in":7000,"bytes_out":10000,"delta_in":5000,"delta_out":1000,"interval_s":299,"connected_at":"2026-11-22T05:25:00Z",` +
		`"connected_at_coarse":true,"duration_s":601,"observed_at":"2026-11-22T05:35:01Z"}`)
	return &r
}()

// BenchmarkDecode: Decode of an accounting event as the shipper sends it
// (the most common event), and the JSON step alone with encoding/json
// (v1), with encoding/json/v2's decoder (the reference for Decode's
// rules) and with parseWire (fastjson's parse, which Decode uses):
// go test -bench Decode -benchmem ./ledger/
func BenchmarkDecode(b *testing.B) {
	e := &events.Event{V: 1, EventID: "0193a6f2-6c1e-7c3a-9b1e-2f0c4d5e6f70", ServerID: "vpn1", SpoolID: "0193a6f2-6c1e-7c3a-9b1e-2f0c4d5e6f71",
		Seq: 7, Type: events.Accounting, Time: "2026-11-24T06:23:45.313622612Z", SessionUID: "01a20c39-82a1-7ad6-94d6-1337fcece38f",
		Session: &events.Session{ID: 9114, Username: "alice", Groupname: "staff", VHost: "default", Device: "vpns0",
			IPReal: "203.0.113.9", IPRealLocal: "198.51.100.1", IPLocal: "192.168.250.1", IPRemote: "192.168.250.50",
			IPv6Local: "fd00::1", IPv6Remote: "fd00::50", Hostname: "laptop", UserAgent: "Open AnyConnect VPN Agent v9.12"},
		Accounting: benchAccounting}
	line, err := e.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	m := Message{Subject: "ocserv.events.vpn1.accounting", Data: line}
	if _, err := Decode(m); err != nil {
		b.Fatalf("the benchmark's event does not decode: %v", err)
	}
	b.Run("Decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Decode(m)
		}
	})
	b.Run("json-v1", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var w wire
			json.Unmarshal(line, &w)
		}
	})
	b.Run("json-v2", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var w wire
			jsonv2.Unmarshal(line, &w)
		}
	})
	b.Run("fastjson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var w wire
			parseWire(line, &w)
		}
	})
}
