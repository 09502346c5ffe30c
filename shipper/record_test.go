package shipper

import (
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

var recordSeeds = []string{
	`{"v":1,"event_id":"0190a-b","server_id":"vpn1","spool_id":"s-1","seq":42,"type":"connect","session":{"username":"a\"}b","id":3},"policy":{"routes":["10.0.0.0/8"]},"x":[1,{"y":"}"}],"z":null,"t":true}`,
	`{"v":1,"event_id":"e","server_id":"s","seq":1,"type":"overflow","overflow":{"seq_ranges":[[1,2]]}}`,
	`{"V":1,"event_id":"e","server_id":"s","seq":1,"type":"t"}`,
	`{"v":1,"event_id":"e","server_id":"s","seq":1,"type":"t","seq":2}`,
	`{"v":1,"event_id":"e","server_id":"s","seq":1.0,"type":"t"}`,
	`{"v":1,"event_id":"e","server_id":"s","seq":-1,"type":"t"}`,
	`{"v":1,"event_id":"e\u0041","server_id":"s","seq":1,"type":"t"}`,
	`{"v":1,"event_id":"e","server_id":"s","ſeq":1,"type":"t"}`,
	`{"v":1,"event_id":"e","server_id":"a.b","seq":1,"type":"t"}`,
	`{"v":1,"event_id":"e","server_id":"s","seq":18446744073709551615,"type":"t"}`,
	`{"v":1,"event_id":"e","server_id":"s","seq":18446744073709551616,"type":"t"}`,
	`{"v":1,"event_id":null,"server_id":"s","seq":1,"type":"t"}`,
	`{"v":1,"event_id":"e","server_id":"s","seq":01,"type":"t"}`,
	` {"v":1,"event_id":"e","server_id":"s","seq":1,"type":"t"}`,
	`{"v":1,"event_id":"e","server_id":"s","seq":1,"type":"t"} `,
	`{"v":1,"event_id":"e","server_id":"s","seq":1,"type":"t"`,
	`{"v" : 1 , "event_id" : "e" , "server_id":"s","seq":1e3,"type":"t"}`,
	`{}`, `[]`, ``, `{"v":99999999999,"event_id":"e","server_id":"s","seq":1,"type":"t"}`,
}

// parseRecord must agree with spool.ParseRecord on every input: same
// record, same error.
func FuzzParseRecordAgrees(f *testing.F) {
	for _, s := range recordSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, werr := spool.ParseRecord(b)
		got, gerr := parseRecord(b)
		if (werr == nil) != (gerr == nil) || werr != nil && werr.Error() != gerr.Error() {
			t.Fatalf("%q: error %v, spool.ParseRecord says %v", b, gerr, werr)
		}
		if werr == nil && got != want {
			t.Fatalf("%q: record %+v, spool.ParseRecord says %+v", b, got, want)
		}
	})
}

func TestParseRecordFastPathTaken(t *testing.T) {
	if _, ok := fastRecord([]byte(recordSeeds[0])); !ok {
		t.Fatal("a hook-shaped line took the slow path")
	}
}
