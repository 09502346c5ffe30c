package ledger_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/livestate"
)

func msgOf(t *testing.T, e *events.Event) ledger.Message {
	t.Helper()
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return ledger.Message{Subject: "ocserv.events." + e.ServerID + "." + string(e.Type), Data: b, StreamSeq: 1, Time: time.Now()}
}

func raw(t *testing.T, v any) *json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	r := json.RawMessage(b)
	return &r
}

// TestDecodesTheProducersPayloads: the ledger reads what the shipper's
// own types write (livestate's accounting and reconcile payloads,
// cmdsvc's audit), so the two sides cannot drift apart unnoticed.
func TestDecodesTheProducersPayloads(t *testing.T) {
	base := func(typ events.Type) *events.Event {
		return &events.Event{V: 1, EventID: "0193a6f2-6c1e-7c3a-9b1e-2f0c4d5e6f70", ServerID: "vpn1", SpoolID: "s", Seq: 7, Type: typ,
			Time: "2026-11-24T06:23:45.313622612Z", SessionUID: "01a20c39-82a1-7ad6-94d6-1337fcece38f",
			Session: &events.Session{ID: 9114, Username: "alice", IPRemote: "192.168.250.50", IPReal: "::ffff:203.0.113.9", IPv6Local: "fd00::1"}}
	}
	e := base(events.Accounting)
	e.Accounting = raw(t, livestate.Accounting{Interim: 2, Slot: 2, SessionID: "lUuhGo", LogicalSessionUID: "01a20c39-82a1-7ad6-94d6-1337fcece38f",
		BytesIn: 7000, BytesOut: 10000, DeltaIn: 5000, DeltaOut: 1000, IntervalS: 299, ConnectedAt: "2026-11-22T05:25:00Z",
		ConnectedAtCoarse: true, DurationS: 601, ObservedAt: "2026-11-22T05:35:01Z"})
	ev, err := ledger.Decode(msgOf(t, e))
	if err != nil {
		t.Fatal(err)
	}
	a := ev.Acct
	if a.Slot != 2 || a.BytesIn != 7000 || a.DeltaOut != 1000 || !a.ConnectedCoarse || a.DurationS != 601 || a.SessionID != "lUuhGo" ||
		!a.ConnectedAt.Equal(time.Date(2026, 11, 22, 5, 25, 0, 0, time.UTC)) || a.LogicalUID != e.SessionUID {
		t.Errorf("accounting: %+v", a)
	}
	if ev.Session.IPReal != "203.0.113.9" || ev.Time.Nanosecond()%1000 != 0 {
		t.Errorf("address not canonical or time not to the microsecond: %q %v", ev.Session.IPReal, ev.Time)
	}
	in := uint64(5)
	e = base(events.Reconcile)
	e.Reconcile = raw(t, livestate.Reconcile{Action: livestate.ActionJoined, Reason: "roamed", HookKey: "9114-vpns0", SessionID: "x",
		LogicalSessionUID: "01a20c39-82a1-7ad6-94d6-1337fcece38f", JoinedSessionUIDs: []string{"01a20c39-82a1-7ad6-94d6-1337fcece38f"},
		BytesIn: &in, ObservedAt: "2026-11-22T05:35:01Z"})
	if ev, err = ledger.Decode(msgOf(t, e)); err != nil || ev.Rec.Action != "joined" || len(ev.Rec.JoinedUIDs) != 1 || ev.Rec.BytesIn != 5 || ev.Rec.BytesOut != -1 {
		t.Errorf("reconcile: %+v %v", ev, err)
	}
	e = base(events.Audit)
	e.SessionUID, e.Session = "", nil
	e.Audit = raw(t, cmdsvc.Audit{Phase: cmdsvc.PhaseRefused, Action: "kick", Subject: "ocserv.cmd.vpn1.kick", Key: "UA…", KeyName: "ops",
		Role: "read-only", Args: map[string]string{"user": "alice"}, OK: false, Code: "forbidden", Message: "no", SuppressedRefusals: 3})
	if ev, err = ledger.Decode(msgOf(t, e)); err != nil || ev.Audit.Action != "kick" || ev.Audit.Suppressed != 3 || ev.Audit.Args["user"] != "alice" || ev.Audit.OK {
		t.Errorf("audit: %+v %v", ev.Audit, err)
	}
	// Text that PostgreSQL cannot hold (NUL) or that is too long is cut
	// and cleaned, not refused.
	e = base(events.Connect)
	e.Session.UserAgent = "a\x00b" + strings.Repeat("x", 5000)
	if ev, err = ledger.Decode(msgOf(t, e)); err != nil || strings.ContainsRune(ev.Session.UserAgent, 0) || len(ev.Session.UserAgent) > 1024 {
		t.Errorf("user agent %q… %v", ev.Session.UserAgent[:8], err)
	}
}

// A member named twice is refused (encoding/json took the last one, so
// an event could say one thing to a reader that takes the first and
// another to the ledger), and one spelt in another case than the schema's
// is not taken for it (encoding/json matched names case-insensitively).
func TestDecodeTakesEachMemberOnceAndByItsName(t *testing.T) {
	e := &events.Event{V: 1, EventID: "0193a6f2-6c1e-7c3a-9b1e-2f0c4d5e6f70", ServerID: "vpn1", SpoolID: "s", Seq: 7, Type: events.Connect,
		Time: "2026-11-24T06:23:45.313622612Z", SessionUID: "01a20c39-82a1-7ad6-94d6-1337fcece38f",
		Session: &events.Session{ID: 9114, Username: "alice", IPRemote: "192.168.250.50"}}
	m := msgOf(t, e)
	if _, err := ledger.Decode(m); err != nil {
		t.Fatalf("the event itself: %v", err)
	}
	twice := m
	twice.Data = []byte(strings.Replace(string(m.Data), `"username":"alice"`, `"username":"alice","username":"mallory"`, 1))
	if ev, err := ledger.Decode(twice); err == nil {
		t.Errorf("username named twice decoded, as %q", ev.Session.Username)
	} else if !strings.Contains(err.Error(), "not a JSON event") || !strings.Contains(err.Error(), "username") {
		t.Errorf("username named twice: %v, want a JSON error naming the member", err)
	}
	cased := m
	cased.Data = []byte(strings.Replace(string(m.Data), `"username":"alice"`, `"username":"alice","UserName":"mallory"`, 1))
	if ev, err := ledger.Decode(cased); err != nil || ev.Session.Username != "alice" {
		t.Errorf("UserName beside username: %+v %v, want alice", ev, err)
	}
}

// FuzzDecode: any bytes either decode into a checked event or are refused
// with a reason; nothing panics, and what decodes is clean.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"event_id":"0193a6f2-6c1e-7c3a-9b1e-2f0c4d5e6f70","server_id":"vpn1","type":"disconnect","time":"2026-11-24T06:23:45Z","session_uid":"01a20c39-82a1-7ad6-94d6-1337fcece38f","stats":{"bytes_in":1,"bytes_out":2}}`))
	f.Add([]byte(`{"v":1,"event_id":"0193a6f2-6c1e-7c3a-9b1e-2f0c4d5e6f70","server_id":"vpn1","type":"reconcile","time":"2026-11-24T06:23:45Z","session_uid":"01a20c39-82a1-7ad6-94d6-1337fcece38f","reconcile":{"action":"lost","observed_at":"2026-11-24T06:23:45Z"}}`))
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ledger.Decode(ledger.Message{Subject: "ocserv.events.vpn1.disconnect", Data: b})
		if err != nil {
			if err.Error() == "" {
				t.Fatal("a refusal without a reason")
			}
			return
		}
		for _, s := range []string{ev.Session.Username, ev.Session.UserAgent, ev.Session.Hostname, ev.Refusal} {
			if strings.ContainsRune(s, 0) || len(s) > 1024 {
				t.Fatalf("unclean text %q", s)
			}
		}
		if ev.Type != events.Disconnect || ev.ServerID != "vpn1" || ev.Stats == nil {
			t.Fatalf("decoded %+v from the disconnect subject", ev)
		}
	})
}

// TestDecodeCanonicalSpellings: uuids and addresses are stored in one
// spelling whatever the producer wrote (upper-case uuids lowered, mapped
// and zoned addresses unmapped and unzoned), and ones already in it are
// kept as they are.
func TestDecodeCanonicalSpellings(t *testing.T) {
	const id, sid = "0193A6F2-6C1E-7C3A-9B1E-2F0C4D5E6F70", "01a20c39-82a1-7ad6-94d6-1337fcece38f"
	e := &events.Event{V: 1, EventID: id, ServerID: "vpn1", Seq: 1, Type: events.Connect, Time: "2026-11-24T06:23:45Z",
		SessionUID: strings.ToUpper(sid), Session: &events.Session{ID: 1, Username: "alice", IPReal: "::ffff:203.0.113.9",
			IPRealLocal: "198.51.100.1", IPRemote: "192.168.250.50", IPv6Remote: "FD00:0::50", IPv6Local: "fe80::1%vpns0"}}
	ev, err := ledger.Decode(msgOf(t, e))
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != strings.ToLower(id) || ev.SessionUID != sid {
		t.Errorf("uuids %q %q, want them lower-case", ev.ID, ev.SessionUID)
	}
	s := ev.Session
	if s.IPReal != "203.0.113.9" || s.IPRealLocal != "198.51.100.1" || s.IPRemote != "192.168.250.50" || s.IPv6Remote != "fd00::50" || s.IPv6Local != "fe80::1" {
		t.Errorf("addresses %q %q %q %q %q, want 203.0.113.9 198.51.100.1 192.168.250.50 fd00::50 fe80::1", s.IPReal, s.IPRealLocal, s.IPRemote, s.IPv6Remote, s.IPv6Local)
	}
}

// TestDecodeChecksTheSubject: an event is taken only from
// <prefix>.events.<its server_id>.<its type>, whatever the prefix, as
// the subject split at its dots says (the check finds the last three
// tokens without splitting).
func TestDecodeChecksTheSubject(t *testing.T) {
	e := &events.Event{V: 1, EventID: "0193a6f2-6c1e-7c3a-9b1e-2f0c4d5e6f70", ServerID: "vpn1", Seq: 1, Type: events.Connect,
		Time: "2026-11-24T06:23:45Z", SessionUID: "01a20c39-82a1-7ad6-94d6-1337fcece38f", Session: &events.Session{ID: 1, Username: "alice"}}
	m := msgOf(t, e)
	split := func(subject string) bool {
		toks := strings.Split(subject, ".")
		n := len(toks)
		return n >= 4 && toks[n-3] == "events" && toks[n-2] == "vpn1" && toks[n-1] == "connect"
	}
	for _, subject := range []string{"ocserv.events.vpn1.connect", "a.b.c.events.vpn1.connect", ".events.vpn1.connect",
		"events.vpn1.connect", "x.events.vpn1", "ocserv.event.vpn1.connect", "ocserv.events.vpn2.connect", "ocserv.events.vpn1.disconnect",
		"ocserv.events.vpn1.connect.", "ocserv.events..vpn1.connect", "ocserv.events.vpn1..connect", "vpn1.connect", "connect", ".", "...", "....",
		".vpn1.connect", "events..vpn1.connect", "x.events.vpn1.connectx", "x.eventsvpn1.connect", "x.events.vpn1.connect"} {
		m.Subject = subject
		_, err := ledger.Decode(m)
		if want := split(subject); (err == nil) != want {
			t.Errorf("subject %q: %v, want taken=%v", subject, err, want)
		}
	}
	m.Subject = ""
	if _, err := ledger.Decode(m); err != nil {
		t.Errorf("no subject (a replay): %v", err)
	}
}
