package ledgertest

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// Opener makes a new, empty, migrated store for one test; the opener
// closes and removes it when the test ends.
type Opener func(t *testing.T, o ledger.ApplyOptions) ledger.Store

// Run is the conformance suite: every engine passes it.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		f    func(*testing.T, Opener)
	}{
		{"Lifecycle", testLifecycle},
		{"DuplicatesChangeNothing", testDuplicates},
		{"UsageNotDoubleCounted", testUsageOrders},
		{"LostKeepsLastSample", testLost},
		{"RoamedSessionJoined", testRoam},
		{"SchemaViolationRejected", testRejected},
		{"WhoAddressReused", testWho},
		{"WhoBeyondTheScan", testWhoBeyondScan},
		{"HistoryPaging", testHistoryPaging},
		{"UsageGrouping", testUsageGrouping},
		{"UsageRowCap", testUsageRowCap},
		{"Audit", testAudit},
		{"AuditActorAndUser", testAuditActor},
		{"ServersAndNotices", testServers},
		{"Retention", testRetention},
		{"BatchingIndependent", testBatching},
		{"ChunksIndependent", testChunks},
		{"CancelledTransactionLeavesNothing", testCancelled},
		{"RefusedLogin", testRefused},
		{"QueryArguments", testQueryArgs},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, open) })
	}
}

var ctx = context.Background()

func apply(t *testing.T, s ledger.Store, msgs ...ledger.Message) ledger.BatchResult {
	t.Helper()
	r, err := s.Apply(ctx, msgs)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return r
}

func session(t *testing.T, s ledger.Store, uid string) ledger.Session {
	t.Helper()
	x, _, err := s.Session(ctx, uid)
	if err != nil {
		t.Fatalf("session %s: %v", uid, err)
	}
	return x
}

// Checksum is the store's checksum, failing the test on error.
func Checksum(t testing.TB, s ledger.Store) map[string]string {
	t.Helper()
	c, err := s.Checksum(ctx)
	if err != nil {
		t.Fatalf("checksum: %v", err)
	}
	return c
}

func usageOf(t *testing.T, s ledger.Store, user string, from, to time.Time) ledger.UsageRow {
	t.Helper()
	rows, err := s.Usage(ctx, ledger.UsageQuery{From: from, To: to, User: user})
	if err != nil {
		t.Fatalf("usage: %v", err)
	}
	switch len(rows) {
	case 0:
		return ledger.UsageRow{}
	case 1:
		return rows[0]
	}
	t.Fatalf("usage of %s: %d rows, want one: %+v", user, len(rows), rows)
	return ledger.UsageRow{}
}

var t0 = time.Date(2026, 11, 24, 6, 0, 0, 0, time.UTC)

func testLifecycle(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	g := NewGen("vpn1", &Seq{})
	uid := UID()
	conn := t0
	msgs := []ledger.Message{
		g.Connect(uid, Conn{User: "alice", Group: "staff", IPReal: "203.0.113.9", VPN4: "10.8.0.23", VPN6: "fd00::23"}, conn),
		g.Accounting(uid, Acct{Slot: 1, Cookie: "lUuhGo", In: 1000, Out: 5000, DeltaIn: 1000, DeltaOut: 5000, Connected: conn}, conn.Add(5*time.Minute)),
		g.Accounting(uid, Acct{Slot: 2, Cookie: "lUuhGo", In: 3000, Out: 9000, DeltaIn: 2000, DeltaOut: 4000, Connected: conn}, conn.Add(10*time.Minute)),
		g.Disconnect(uid, 3500, 9900, 700, conn.Add(700*time.Second)),
	}
	r := apply(t, s, msgs...)
	if r.Applied != 4 || r.Duplicates != 0 || r.Rejected != 0 {
		t.Fatalf("result %+v, want 4 applied", r)
	}
	x, samples, err := s.Session(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	want := ledger.Session{UID: uid, LogicalUID: uid, ServerID: "vpn1", Username: "alice", Groupname: "staff",
		IPReal: "203.0.113.9", VPNIPv4: "10.8.0.23", VPNIPv6: "fd00::23", CookieID: "lUuhGo",
		ConnectedAt: conn, EndedAt: conn.Add(700 * time.Second), State: ledger.StateDisconnect, Origin: "connect",
		BytesIn: 3500, BytesOut: 9900, Seconds: 700, Samples: 2, LastSampleAt: conn.Add(10 * time.Minute), Settled: true}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"uid", x.UID, want.UID}, {"logical", x.LogicalUID, want.LogicalUID}, {"server", x.ServerID, want.ServerID},
		{"user", x.Username, want.Username}, {"group", x.Groupname, want.Groupname}, {"ip_real", x.IPReal, want.IPReal},
		{"vpn4", x.VPNIPv4, want.VPNIPv4}, {"vpn6", x.VPNIPv6, want.VPNIPv6}, {"cookie", x.CookieID, want.CookieID},
		{"connected", x.ConnectedAt, want.ConnectedAt}, {"connected coarse", x.ConnectedCoarse, false},
		{"ended", x.EndedAt, want.EndedAt}, {"ended coarse", x.EndedCoarse, false}, {"state", x.State, want.State},
		{"origin", x.Origin, want.Origin}, {"bytes in", x.BytesIn, want.BytesIn}, {"bytes out", x.BytesOut, want.BytesOut},
		{"seconds", x.Seconds, want.Seconds}, {"samples", x.Samples, want.Samples}, {"last sample", x.LastSampleAt, want.LastSampleAt},
		{"settled", x.Settled, true}, {"spool", x.SpoolID, g.SpoolID}, {"hostname", x.Hostname, "laptop-alice"},
	} {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if len(samples) != 2 || samples[1].BytesIn != 3000 || samples[1].DeltaOut != 4000 || samples[0].Slot != 1 {
		t.Errorf("samples = %+v", samples)
	}
	u := usageOf(t, s, "alice", conn, conn.Add(48*time.Hour))
	if u.BytesIn != 3500 || u.BytesOut != 9900 || u.Seconds != 700 || u.Sessions != 1 {
		t.Errorf("usage = %+v, want the disconnect's totals and one session", u)
	}
	pos, err := s.Position(ctx)
	if err != nil || pos.StreamSeq != msgs[3].StreamSeq || pos.Applied != 4 || !pos.LastEventTime.Equal(conn.Add(700*time.Second)) {
		t.Errorf("position = %+v, %v", pos, err)
	}
}

func testDuplicates(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	var msgs []ledger.Message
	Workload{Seed: 1, Servers: 2, Users: 20, Start: t0}.Emit(600, func(m ledger.Message) bool { msgs = append(msgs, m); return true })
	apply(t, s, msgs...)
	before := Checksum(t, s)
	// Redelivered whole, in other batches, and with duplicates inside
	// one batch: nothing changes.
	r := apply(t, s, msgs[:300]...)
	if r.Applied != 0 || r.Duplicates != 300 {
		t.Fatalf("redelivery: %+v, want 300 duplicates", r)
	}
	r = apply(t, s, append(msgs[300:], msgs[400:410]...)...)
	if r.Applied != 0 || r.Duplicates != 310 {
		t.Fatalf("redelivery: %+v, want 310 duplicates", r)
	}
	if after := Checksum(t, s); !maps.Equal(before, after) {
		t.Fatalf("tables changed by duplicates:\nbefore %v\nafter  %v", before, after)
	}
}

// testUsageOrders: samples, the disconnect and a reconcile lost of one
// session, in every order, some twice: usage is the disconnect's totals.
func testUsageOrders(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	r := rand.New(rand.NewPCG(7, 7))
	for round := 0; round < 24; round++ {
		g := NewGen("vpn1", &Seq{})
		uid := UID()
		user := fmt.Sprintf("u%02d", round)
		conn := t0.Add(time.Duration(round) * time.Hour)
		in, out := uint64(400), uint64(700)
		evs := []ledger.Message{
			g.Connect(uid, Conn{User: user, VPN4: "10.8.0.2"}, conn),
			g.Accounting(uid, Acct{Slot: 1, In: 100, Out: 200, Connected: conn}, conn.Add(5*time.Minute)),
			g.Accounting(uid, Acct{Slot: 2, In: 300, Out: 500, Connected: conn}, conn.Add(10*time.Minute)),
			g.Reconcile(uid, Rec{Action: "lost", LastSeen: conn.Add(11 * time.Minute), In: &in, Out: &out}, conn.Add(12*time.Minute)),
			g.Disconnect(uid, 1000, 2000, 720, conn.Add(12*time.Minute)),
		}
		r.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
		// Some arrive twice, and late.
		evs = append(evs, evs[r.IntN(len(evs))], evs[r.IntN(len(evs))])
		for i := 0; i < len(evs); {
			n := 1 + r.IntN(3)
			apply(t, s, evs[i:min(i+n, len(evs))]...)
			i += n
		}
		u := usageOf(t, s, user, conn.Add(-time.Hour), conn.Add(48*time.Hour))
		if u.BytesIn != 1000 || u.BytesOut != 2000 || u.Seconds != 720 || u.Sessions != 1 {
			t.Errorf("round %d: usage %+v, want exactly the disconnect's 1000/2000/720s and one session", round, u)
		}
		x := session(t, s, uid)
		if x.State != ledger.StateDisconnect || !x.Settled || x.BytesIn != 1000 || x.EndedCoarse {
			t.Errorf("round %d: session %+v, want settled by its disconnect", round, x)
		}
	}
}

func testLost(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	g := NewGen("vpn1", &Seq{})
	uid, uid2 := UID(), UID()
	conn := t0
	last := conn.Add(20 * time.Minute)
	apply(t, s,
		g.Connect(uid, Conn{User: "bob", VPN4: "10.8.0.9"}, conn),
		g.Accounting(uid, Acct{Slot: 1, In: 100, Out: 200, Connected: conn}, conn.Add(5*time.Minute)),
		g.Accounting(uid, Acct{Slot: 2, In: 600, Out: 900, Connected: conn}, conn.Add(10*time.Minute)),
		g.Reconcile(uid, Rec{Action: "lost", LastSeen: last}, last.Add(time.Minute)),
		// Another one lost with newer totals than its last sample.
		g.Connect(uid2, Conn{User: "carol", VPN4: "10.8.0.10"}, conn),
		g.Accounting(uid2, Acct{Slot: 1, In: 50, Out: 60, Connected: conn}, conn.Add(5*time.Minute)),
	)
	in, out := uint64(80), uint64(90)
	apply(t, s, g.Reconcile(uid2, Rec{Action: "lost", LastSeen: last, In: &in, Out: &out}, last.Add(time.Minute)))
	x := session(t, s, uid)
	if x.State != ledger.StateLost || !x.EndedCoarse || !x.EndedAt.Equal(last) || x.Settled || x.BytesIn != 600 || x.BytesOut != 900 {
		t.Errorf("lost session %+v: want state lost, coarse end at the last sighting, the last sample's 600/900", x)
	}
	if u := usageOf(t, s, "bob", t0, t0.Add(24*time.Hour)); u.BytesIn != 600 || u.BytesOut != 900 || u.Seconds != 1200 {
		t.Errorf("bob's usage %+v, want 600/900/1200s", u)
	}
	if u := usageOf(t, s, "carol", t0, t0.Add(24*time.Hour)); u.BytesIn != 80 || u.BytesOut != 90 {
		t.Errorf("carol's usage %+v, want the lost event's newer 80/90", u)
	}
	// The disconnect arriving after all (late fallback file) settles it.
	apply(t, s, g.Disconnect(uid, 700, 1000, 1300, last.Add(100*time.Second)))
	x = session(t, s, uid)
	if x.State != ledger.StateDisconnect || x.EndedCoarse || !x.Settled || x.BytesIn != 700 {
		t.Errorf("after a late disconnect: %+v", x)
	}
	if u := usageOf(t, s, "bob", t0, t0.Add(24*time.Hour)); u.BytesIn != 700 || u.BytesOut != 1000 || u.Seconds != 1300 {
		t.Errorf("bob's usage after the late disconnect %+v, want 700/1000/1300s", u)
	}
	// Open sessions: history --open.
	open1 := UID()
	apply(t, s, g.Connect(open1, Conn{User: "dave", VPN4: "10.8.0.11"}, t0.Add(time.Hour)))
	p, err := s.History(ctx, ledger.HistoryQuery{OpenOnly: true})
	if err != nil || len(p.Items) != 1 || p.Items[0].UID != open1 {
		t.Errorf("open sessions: %+v %v", p.Items, err)
	}
}

func testRoam(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	g := NewGen("vpn1", &Seq{})
	a, b := UID(), UID()
	conn := t0
	// The join arrives before the first worker's rows (late), and the
	// second worker's sample names the logical session too.
	apply(t, s,
		g.Connect(b, Conn{User: "erin", IPReal: "198.51.100.7", VPN4: "10.8.0.30"}, conn.Add(30*time.Minute)),
		g.Reconcile(b, Rec{Action: "joined", Logical: a, Joined: []string{a}, Cookie: "ck1", Connected: conn.Add(30 * time.Minute)}, conn.Add(31*time.Minute)),
		g.Accounting(b, Acct{Slot: 1, Logical: a, In: 50, Out: 60, Connected: conn.Add(30 * time.Minute)}, conn.Add(35*time.Minute)),
	)
	apply(t, s,
		g.Connect(a, Conn{User: "erin", IPReal: "203.0.113.7", VPN4: "10.8.0.30"}, conn),
		g.Disconnect(a, 1000, 2000, 1790, conn.Add(1790*time.Second)),
		g.Disconnect(b, 500, 600, 600, conn.Add(40*time.Minute)),
	)
	xa, xb := session(t, s, a), session(t, s, b)
	if xa.LogicalUID != a || xb.LogicalUID != a {
		t.Fatalf("logical uids: a %s, b %s, want both %s", xa.LogicalUID, xb.LogicalUID, a)
	}
	p, err := s.History(ctx, ledger.HistoryQuery{LogicalUID: a})
	if err != nil || len(p.Items) != 2 || p.Items[0].UID != b || p.Items[1].UID != a {
		t.Fatalf("history of the logical session: %+v %v", p.Items, err)
	}
	if u := usageOf(t, s, "erin", t0, t0.Add(24*time.Hour)); u.BytesIn != 1500 || u.BytesOut != 2600 || u.Sessions != 2 {
		t.Errorf("roamed usage %+v, want both workers' 1500/2600, two sessions", u)
	}
	// who: the VPN address at an instant on the second worker names it.
	w, err := s.Who(ctx, ledger.WhoQuery{IP: "10.8.0.30", At: conn.Add(35 * time.Minute)})
	if err != nil || len(w) != 1 || w[0].UID != b || w[0].LogicalUID != a {
		t.Errorf("who at the roamed worker's time: %+v %v", w, err)
	}
}

func testRejected(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	g := NewGen("vpn1", &Seq{})
	uid := UID()
	good1 := g.Connect(uid, Conn{User: "frank", VPN4: "10.8.0.40"}, t0)
	bad := []ledger.Message{
		g.Raw("connect", []byte(`{not json`)),
		g.Raw("connect", []byte(`{"v":2,"event_id":"`+UID()+`","server_id":"vpn1","type":"connect","time":"2026-11-24T06:00:00Z","session_uid":"`+UID()+`"}`)),
		g.Raw("connect", []byte(`{"v":1,"event_id":"x","server_id":"vpn1","type":"connect","time":"2026-11-24T06:00:00Z"}`)),
		g.Raw("disconnect", []byte(`{"v":1,"event_id":"`+UID()+`","server_id":"vpn1","type":"disconnect","time":"2026-11-24T06:00:00Z","session_uid":"`+UID()+`"}`)),
		g.Raw("connect", []byte(`{"v":1,"event_id":"`+UID()+`","server_id":"vpn2","type":"connect","time":"2026-11-24T06:00:00Z","session_uid":"`+UID()+`"}`)),
		g.Raw("connect", []byte(`{"v":1,"event_id":"`+UID()+`","server_id":"vpn1","type":"connect","time":"2026-11-24T06:00:00Z","session_uid":"`+UID()+`","session":{"ip_remote":"10.8.0.300"}}`)),
		g.Raw("connect", []byte("\xff\xfe")),
	}
	reasons := []string{"not a JSON event", "schema version 2", "event_id", "stats", "does not match", "ip_remote", "UTF-8"}
	good2 := g.Disconnect(uid, 10, 20, 30, t0.Add(30*time.Second))
	r := apply(t, s, append(append([]ledger.Message{good1}, bad...), good2)...)
	if r.Applied != 2 || r.Rejected != len(bad) {
		t.Fatalf("result %+v: want 2 applied and %d rejected", r, len(bad))
	}
	rej, err := s.Rejected(ctx, 100)
	if err != nil || len(rej) != len(bad) {
		t.Fatalf("rejected rows: %d %v", len(rej), err)
	}
	for i, b := range bad {
		var got *ledger.Rejected
		for j := range rej {
			if rej[j].StreamSeq == b.StreamSeq {
				got = &rej[j]
			}
		}
		if got == nil {
			t.Errorf("bad event %d (seq %d) has no rejected row", i, b.StreamSeq)
			continue
		}
		if !contains(got.Reason, reasons[i]) || got.Subject != b.Subject || string(got.Payload) != string(b.Data) {
			t.Errorf("bad event %d: rejected %+v, want a reason with %q and the payload", i, got, reasons[i])
		}
	}
	if x := session(t, s, uid); x.State != ledger.StateDisconnect {
		t.Errorf("the good events around the bad ones: %+v", x)
	}
	// The same rejected messages redelivered: still one row each.
	apply(t, s, bad...)
	if rej, _ = s.Rejected(ctx, 100); len(rej) != len(bad) {
		t.Errorf("after redelivery %d rejected rows, want %d", len(rej), len(bad))
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || len(s) >= len(sub) && (func() bool {
		for i := 0; i+len(sub) <= len(s); i++ {
			if s[i:i+len(sub)] == sub {
				return true
			}
		}
		return false
	})()
}

func testWho(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	g1, g2 := NewGen("vpn1", &Seq{}), NewGen("vpn2", &Seq{})
	a, b, c := UID(), UID(), UID()
	apply(t, s,
		g1.Connect(a, Conn{User: "gina", IPReal: "203.0.113.50", VPN4: "10.8.0.23"}, t0),
		g1.Disconnect(a, 1, 2, 3600, t0.Add(time.Hour)),
		// The address is reused by the next user on the same server.
		g1.Connect(b, Conn{User: "hank", IPReal: "203.0.113.51", VPN4: "10.8.0.23"}, t0.Add(time.Hour+10*time.Second)),
		// The same private address on another server at the same time.
		g2.Connect(c, Conn{User: "ivy", IPReal: "203.0.113.50", VPN4: "10.8.0.23", VPN6: "fd00::23"}, t0.Add(30*time.Minute)),
	)
	who := func(ip string, at time.Time, kind string) []string {
		t.Helper()
		l, err := s.Who(ctx, ledger.WhoQuery{IP: ip, At: at, Kind: kind})
		if err != nil {
			t.Fatalf("who %s at %s: %v", ip, at, err)
		}
		var out []string
		for _, x := range l {
			out = append(out, x.Username+"@"+x.ServerID)
		}
		return out
	}
	for _, c := range []struct {
		ip   string
		at   time.Time
		kind string
		want string
	}{
		{"10.8.0.23", t0.Add(10 * time.Minute), "", "[gina@vpn1]"},
		{"10.8.0.23", t0.Add(45 * time.Minute), "", "[ivy@vpn2 gina@vpn1]"},
		{"10.8.0.23", t0.Add(2 * time.Hour), "vpn", "[hank@vpn1 ivy@vpn2]"},
		{"10.8.0.23", t0.Add(-time.Hour), "", "[]"},
		{"203.0.113.50", t0.Add(45 * time.Minute), "real", "[ivy@vpn2 gina@vpn1]"},
		{"203.0.113.50", t0.Add(2 * time.Hour), "", "[ivy@vpn2]"},
		{"203.0.113.50", t0.Add(2 * time.Hour), "vpn", "[]"},
		{"fd00:0::23", t0.Add(2 * time.Hour), "", "[ivy@vpn2]"},
		{"::ffff:10.8.0.23", t0.Add(10 * time.Minute), "", "[gina@vpn1]"},
	} {
		if got := fmt.Sprint(who(c.ip, c.at, c.kind)); got != c.want {
			t.Errorf("who %s at +%s (%s) = %s, want %s", c.ip, c.at.Sub(t0), c.kind, got, c.want)
		}
	}
}

// The who question scans a bounded number of the newest sessions of an
// address that connected by the instant. A session still open at the
// instant but older than that many later, already ended sessions of the
// same address was left out, and the answer was "nobody": a user who
// connects, then opens and closes a few thousand short sessions from the
// same real address (or a fleet whose servers share one VPN pool) hid
// the session that held the address. It is found now, whatever came
// after it.
func testWhoBeyondScan(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	g1, g2 := NewGen("vpn1", &Seq{}), NewGen("vpn2", &Seq{})
	long := UID()
	msgs := []ledger.Message{g1.Connect(long, Conn{User: "mallory", IPReal: "198.51.100.66", VPN4: "10.8.0.66"}, t0)}
	for i := range 2 * (ledger.WhoScan + 10) {
		at := t0.Add(time.Minute + time.Duration(i)*time.Second)
		short := UID()
		// From the same real address on vpn1; the same VPN address on
		// vpn2, whose pool is vpn1's.
		g := g1
		c := Conn{User: "mallory", IPReal: "198.51.100.66", VPN4: fmt.Sprintf("10.8.1.%d", i%250)}
		if i%2 == 1 {
			g, c = g2, Conn{User: fmt.Sprintf("u%d", i), IPReal: "203.0.113.9", VPN4: "10.8.0.66"}
		}
		msgs = append(msgs, g.Connect(short, c, at), g.Disconnect(short, 1, 1, 1, at.Add(500*time.Millisecond)))
	}
	apply(t, s, msgs...)
	at := t0.Add(3 * time.Hour)
	for _, q := range []ledger.WhoQuery{{IP: "198.51.100.66", At: at, Kind: ledger.WhoReal}, {IP: "10.8.0.66", At: at, Kind: ledger.WhoVPN},
		{IP: "198.51.100.66", At: at}} {
		l, err := s.Who(ctx, q)
		if err != nil {
			t.Fatalf("who %s (%s): %v", q.IP, q.Kind, err)
		}
		if len(l) != 1 || l[0].UID != long {
			t.Errorf("who %s at +3h (%s): %d sessions, want only the one open since +0 (%v)", q.IP, q.Kind, len(l), l)
		}
	}
}

func testHistoryPaging(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	g := NewGen("vpn1", &Seq{})
	var msgs []ledger.Message
	want := map[string]bool{}
	for i := 0; i < 120; i++ {
		uid := UID()
		want[uid] = true
		// Some share a connect time: the uid breaks the tie.
		msgs = append(msgs, g.Connect(uid, Conn{User: "jack", VPN4: "10.8.0.50"}, t0.Add(time.Duration(i/3)*time.Minute)))
	}
	msgs = append(msgs, g.Connect(UID(), Conn{User: "other"}, t0))
	apply(t, s, msgs...)
	seen := map[string]bool{}
	cursor := ""
	pages := 0
	var prev *ledger.Session
	for {
		p, err := s.History(ctx, ledger.HistoryQuery{User: "jack", Limit: 50, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for i := range p.Items {
			x := &p.Items[i]
			if seen[x.UID] || !want[x.UID] {
				t.Fatalf("page %d: %s twice or not jack's", pages, x.UID)
			}
			seen[x.UID] = true
			if prev != nil && (x.ConnectedAt.After(prev.ConnectedAt) || x.ConnectedAt.Equal(prev.ConnectedAt) && x.UID > prev.UID) {
				t.Fatalf("page %d: not newest first at %s", pages, x.UID)
			}
			prev = x
		}
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	if pages != 3 || len(seen) != 120 {
		t.Errorf("%d pages, %d sessions; want 3 and 120", pages, len(seen))
	}
	// Time range: overlapping sessions only.
	p, err := s.History(ctx, ledger.HistoryQuery{User: "jack", From: t0.Add(10 * time.Minute), To: t0.Add(20 * time.Minute), Limit: 1000})
	if err != nil || len(p.Items) != 60 {
		t.Errorf("from +10m to +20m: %d sessions (the open ones that started before +20m), want 60; %v", len(p.Items), err)
	}
	if _, err := s.History(ctx, ledger.HistoryQuery{Cursor: "garbage!"}); ledger.ErrorCode(err) != ledger.ECodeInvalid {
		t.Errorf("a bad cursor: %v, want invalid_argument", err)
	}
}

// A usage question over every user, day and server of the retention
// (by day, per server: the read-only role may ask it) was read whole
// into the ledger's memory before anything said it was too large. With
// MaxRows the engine stops reading past it and refuses; at or under it,
// the answer is whole, from usage_daily and from usage_monthly alike.
func testUsageRowCap(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	g := NewGen("vpn1", &Seq{})
	var msgs []ledger.Message
	for i := range 30 {
		uid := UID()
		at := t0.Add(time.Duration(i) * time.Minute)
		msgs = append(msgs, g.Connect(uid, Conn{User: fmt.Sprintf("cap%02d", i), VPN4: "10.8.3.1"}, at), g.Disconnect(uid, 10, 20, 30, at.Add(30*time.Second)))
	}
	apply(t, s, msgs...)
	month := time.Date(t0.Year(), t0.Month(), 1, 0, 0, 0, 0, time.UTC)
	for _, q := range []ledger.UsageQuery{
		{From: t0, To: t0.AddDate(0, 0, 1), By: ledger.ByDay, PerServer: true}, // usage_daily
		{From: month, To: month.AddDate(0, 1, 0), By: ledger.ByMonth},          // usage_monthly
	} {
		q.MaxRows = 10
		if rows, err := s.Usage(ctx, q); ledger.ErrorCode(err) != ledger.ECodeTooLarge || rows != nil {
			t.Errorf("usage by %s with 30 rows, at most 10: %d rows, %v", q.By, len(rows), err)
		}
		q.MaxRows = 30
		if rows, err := s.Usage(ctx, q); err != nil || len(rows) != 30 {
			t.Errorf("usage by %s with 30 rows, at most 30: %d rows, %v", q.By, len(rows), err)
		}
	}
}

func testUsageGrouping(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	seq := &Seq{}
	g1, g2 := NewGen("vpn1", seq), NewGen("vpn2", seq)
	day1 := time.Date(2026, 10, 31, 10, 0, 0, 0, time.UTC)
	day2 := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	sess := func(g *Gen, user string, at time.Time, in, out uint64) []ledger.Message {
		uid := UID()
		return []ledger.Message{g.Connect(uid, Conn{User: user}, at), g.Disconnect(uid, in, out, 60, at.Add(time.Minute))}
	}
	var msgs []ledger.Message
	msgs = append(msgs, sess(g1, "kim", day1, 100, 100)...)
	msgs = append(msgs, sess(g2, "kim", day2, 1000, 1000)...)
	msgs = append(msgs, sess(g1, "lee", day2, 50, 50)...)
	msgs = append(msgs, sess(g2, "max", day2, 5000, 0)...)
	apply(t, s, msgs...)
	q := func(u ledger.UsageQuery) string {
		t.Helper()
		rows, err := s.Usage(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rows {
			out = append(out, fmt.Sprintf("%s/%s/%s=%d+%d,%d", r.Period, r.Username, r.ServerID, r.BytesIn, r.BytesOut, r.Sessions))
		}
		return fmt.Sprint(out)
	}
	from, to := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		q    ledger.UsageQuery
		want string
	}{
		{ledger.UsageQuery{From: from, To: to, By: ledger.ByMonth},
			"[2026-10/kim/=100+100,1 2026-11/max/=5000+0,1 2026-11/kim/=1000+1000,1 2026-11/lee/=50+50,1]"},
		{ledger.UsageQuery{From: from, To: to, By: ledger.ByRange, Top: 2},
			"[2026-10-01..2026-12-01/max/=5000+0,1 2026-10-01..2026-12-01/kim/=1100+1100,2]"},
		{ledger.UsageQuery{From: from, To: to, User: "kim", PerServer: true, By: ledger.ByDay},
			"[2026-10-31/kim/vpn1=100+100,1 2026-11-01/kim/vpn2=1000+1000,1]"},
		{ledger.UsageQuery{From: day2, To: day2.Add(24 * time.Hour), Server: "vpn1"}, "[2026-11-01..2026-11-02/lee/=50+50,1]"},
	} {
		if got := q(c.q); got != c.want {
			t.Errorf("usage %+v:\n got %s\nwant %s", c.q, got, c.want)
		}
	}
	// Whole months over every server come from usage_monthly; the same
	// sums per server from usage_daily must agree with them.
	monthly, err := s.Usage(ctx, ledger.UsageQuery{From: from, To: to, By: ledger.ByMonth})
	if err != nil {
		t.Fatal(err)
	}
	daily, err := s.Usage(ctx, ledger.UsageQuery{From: from, To: to, By: ledger.ByMonth, PerServer: true})
	if err != nil {
		t.Fatal(err)
	}
	sum := map[string][4]int64{}
	for _, r := range daily {
		x := sum[r.Period+"/"+r.Username]
		sum[r.Period+"/"+r.Username] = [4]int64{x[0] + r.BytesIn, x[1] + r.BytesOut, x[2] + r.Seconds, x[3] + r.Sessions}
	}
	if len(monthly) != len(sum) {
		t.Errorf("usage_monthly has %d rows, usage_daily sums to %d", len(monthly), len(sum))
	}
	for _, r := range monthly {
		if got, want := [4]int64{r.BytesIn, r.BytesOut, r.Seconds, r.Sessions}, sum[r.Period+"/"+r.Username]; got != want {
			t.Errorf("%s %s: monthly %v, daily %v", r.Period, r.Username, got, want)
		}
	}
	if _, err := s.Usage(ctx, ledger.UsageQuery{From: to, To: from}); ledger.ErrorCode(err) != ledger.ECodeInvalid {
		t.Errorf("from after to: %v", err)
	}
}

// testAuditActor: the web user a console command was signed for is kept
// and filterable, and so is the VPN user a command was about.
func testAuditActor(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	g := NewGen("vpn1", &Seq{})
	apply(t, s,
		g.AuditFor("kick", "olga", "alice", t0),
		g.AuditFor("unkick", "olga", "bob", t0.Add(time.Second)),
		g.AuditFor("disconnect", "victor", "alice", t0.Add(2*time.Second)),
		g.Audit("kick", "ops", true, t0.Add(3*time.Second)), // a person's own key: no actor, user alice
	)
	p, err := s.Audit(ctx, ledger.AuditQuery{Actor: "olga"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 2 || p.Items[0].Action != "unkick" || p.Items[0].Actor != "olga" || p.Items[1].Action != "kick" {
		t.Errorf("by actor olga: %+v", p.Items)
	}
	p, _ = s.Audit(ctx, ledger.AuditQuery{User: "alice"})
	if len(p.Items) != 3 {
		t.Errorf("about alice: %d entries, want 3", len(p.Items))
	}
	for _, a := range p.Items {
		if a.Args["user"] != "alice" {
			t.Errorf("about alice: %+v", a)
		}
	}
	if p.Items[0].Actor != "" || p.Items[1].Actor != "victor" {
		t.Errorf("actors %q, %q; want none and victor", p.Items[0].Actor, p.Items[1].Actor)
	}
}

func testAudit(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	seq := &Seq{}
	g1, g2 := NewGen("vpn1", seq), NewGen("vpn2", seq)
	var msgs []ledger.Message
	for i := 0; i < 30; i++ {
		g := g1
		if i%3 == 0 {
			g = g2
		}
		msgs = append(msgs, g.Audit([]string{"kick", "disconnect"}[i%2], "ops"+fmt.Sprint(i%2), i%5 != 0, t0.Add(time.Duration(i)*time.Second)))
	}
	apply(t, s, msgs...)
	all := 0
	cursor := ""
	for {
		p, err := s.Audit(ctx, ledger.AuditQuery{Limit: 7, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		all += len(p.Items)
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	if all != 30 {
		t.Errorf("paged audit: %d entries, want 30", all)
	}
	p, err := s.Audit(ctx, ledger.AuditQuery{Refused: true, Server: "vpn2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range p.Items {
		if a.OK || a.ServerID != "vpn2" || a.Code != "forbidden" || a.Args["user"] != "alice" {
			t.Errorf("refused on vpn2: %+v", a)
		}
	}
	if len(p.Items) != 2 { // i in {0, 15}
		t.Errorf("refused on vpn2: %d entries, want 2", len(p.Items))
	}
	p, _ = s.Audit(ctx, ledger.AuditQuery{Key: "ops1", Action: "disconnect"})
	if len(p.Items) != 15 {
		t.Errorf("by key name and action: %d, want 15", len(p.Items))
	}
	if !p.Items[0].Time.After(p.Items[1].Time) {
		t.Errorf("audit not newest first")
	}
}

func testServers(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	seq := &Seq{}
	g1, g2 := NewGen("vpn1", seq), NewGen("vpn2", seq)
	uid := UID()
	apply(t, s,
		g1.Connect(uid, Conn{User: "nia"}, t0.Add(time.Hour)),
		g1.Audit("kick", "ops", true, t0), // older, arriving later
		g2.Overflow(42, t0.Add(2*time.Hour)),
	)
	l, err := s.Servers(ctx)
	if err != nil || len(l) != 2 {
		t.Fatalf("servers: %+v %v", l, err)
	}
	a, b := l[0], l[1]
	if a.ServerID != "vpn1" || !a.LastSeen.Equal(t0.Add(time.Hour)) || !a.FirstSeen.Equal(t0) || a.LastType != "connect" ||
		a.Events != 2 || a.OpenSessions != 1 || a.SpoolID != g1.SpoolID {
		t.Errorf("vpn1: %+v", a)
	}
	if b.ServerID != "vpn2" || b.DroppedEvents != 42 || b.OpenSessions != 0 {
		t.Errorf("vpn2: %+v", b)
	}
	n, err := s.Notices(ctx, 10)
	if err != nil || len(n) != 1 || n[0].Events != 42 || n[0].Type != "overflow" || string(n[0].SeqRanges) != "[[1,42]]" {
		t.Errorf("notices: %+v %v", n, err)
	}
}

func testRetention(t *testing.T, open Opener) {
	now := t0.Add(500 * 24 * time.Hour)
	s := open(t, ledger.ApplyOptions{Retention: ledger.DefaultRetention, Now: func() time.Time { return now }})
	g := NewGen("vpn1", &Seq{})
	old, recent, ancient := UID(), UID(), UID()
	oldAt := now.Add(-399 * 24 * time.Hour)
	recAt := now.Add(-40 * 24 * time.Hour)
	r := apply(t, s,
		g.Connect(old, Conn{User: "olga"}, oldAt),
		g.Accounting(old, Acct{Slot: 1, In: 5, Out: 5, Connected: oldAt}, oldAt.Add(5*time.Minute)),
		g.Disconnect(old, 10, 10, 600, oldAt.Add(10*time.Minute)),
		g.Connect(recent, Conn{User: "olga"}, recAt),
		g.Accounting(recent, Acct{Slot: 1, In: 5, Out: 5, Connected: recAt}, recAt.Add(5*time.Minute)),
		g.Disconnect(recent, 10, 10, 600, recAt.Add(10*time.Minute)),
	)
	if r.Expired != 0 {
		t.Fatalf("%+v: nothing is older than the retention yet", r)
	}
	later := now.Add(2 * 24 * time.Hour)
	p, err := s.Prune(ctx, ledger.DefaultRetention, later)
	if err != nil {
		t.Fatal(err)
	}
	if p.Sessions != 1 || p.Samples != 2 || p.UsageDays != 1 || p.Applied != 3 {
		t.Errorf("pruned %+v: want the old session, both samples (one with its session, one by age), its usage day, its 3 event ids", p)
	}
	if _, _, err := s.Session(ctx, old); ledger.ErrorCode(err) != ledger.ECodeNotFound {
		t.Errorf("the old session: %v, want not_found", err)
	}
	if x := session(t, s, recent); x.BytesIn != 10 {
		t.Errorf("the recent session: %+v", x)
	}
	// An event older than the retention is skipped, not resurrected.
	r = apply(t, s, g.Connect(ancient, Conn{User: "olga"}, now.Add(-450*24*time.Hour)))
	if r.Expired != 1 || r.Applied != 0 {
		t.Errorf("an event past the retention: %+v, want expired", r)
	}
}

// testBatching: the tables do not depend on how the stream was cut into
// batches (the basis of replay giving equal tables).
func testBatching(t *testing.T, open Opener) {
	var msgs []ledger.Message
	Workload{Seed: 3, Servers: 3, Users: 30, Start: t0}.Emit(1500, func(m ledger.Message) bool { msgs = append(msgs, m); return true })
	a := open(t, ledger.ApplyOptions{})
	apply(t, a, msgs...)
	b := open(t, ledger.ApplyOptions{})
	r := rand.New(rand.NewPCG(5, 5))
	for i := 0; i < len(msgs); {
		n := 1 + r.IntN(64)
		apply(t, b, msgs[i:min(i+n, len(msgs))]...)
		i += n
	}
	ca, cb := Checksum(t, a), Checksum(t, b)
	if !maps.Equal(ca, cb) {
		t.Fatalf("one batch vs many:\n%v\n%v", ca, cb)
	}
	if ca["sessions"] == "" || ca["samples"][:2] == "0:" {
		t.Fatalf("the workload made no rows: %v", ca)
	}
}

// testChunks: a transaction fed in chunks (ApplyChunks, the consumer's
// way through a backlog) leaves the tables one Apply of the same messages
// leaves, whatever the cut, with a session's events spread over chunks
// and an event that comes again in a later chunk of the same transaction
// counted as a duplicate.
func testChunks(t *testing.T, open Opener) {
	msgs := Workload{Seed: 4, Servers: 3, Users: 30, Start: t0}.Messages(1500)
	a := open(t, ledger.ApplyOptions{})
	apply(t, a, msgs...)
	want := Checksum(t, a)
	r := rand.New(rand.NewPCG(6, 6))
	for round := 0; round < 3; round++ {
		// The first events in a transaction of their own: the chunked
		// one then also changes rows stored before it began.
		b := open(t, ledger.ApplyOptions{})
		head := 300 + r.IntN(300)
		apply(t, b, msgs[:head]...)
		var chunks [][]ledger.Message
		for i := head; i < len(msgs); {
			n := 1 + r.IntN(200)
			chunks = append(chunks, msgs[i:min(i+n, len(msgs))])
			i += n
		}
		again := msgs[head+r.IntN(len(msgs)/2)] // comes back near the end
		chunks = append(chunks[:len(chunks)-1], append([]ledger.Message{again}, chunks[len(chunks)-1]...))
		k := 0
		res, err := b.ApplyChunks(ctx, func() []ledger.Message {
			if k == len(chunks) {
				return nil
			}
			k++
			return chunks[k-1]
		})
		if err != nil {
			t.Fatalf("apply in %d chunks: %v", len(chunks), err)
		}
		if res.Applied != len(msgs)-head || res.Duplicates != 1 {
			t.Errorf("%d chunks: applied %d, duplicates %d; want %d and 1", len(chunks), res.Applied, res.Duplicates, len(msgs)-head)
		}
		if got := Checksum(t, b); !maps.Equal(got, want) {
			t.Fatalf("%d chunks in one transaction vs one batch:\n%v\n%v", len(chunks), got, want)
		}
		if p, _ := b.Position(ctx); p.StreamSeq != msgs[len(msgs)-1].StreamSeq || p.Applied != int64(len(msgs)) {
			t.Errorf("position after the chunks: %+v, want stream seq %d, %d applied", p, msgs[len(msgs)-1].StreamSeq, len(msgs))
		}
	}
}

// testCancelled: a transaction whose context ends while its chunks come
// in (the service stopping) fails and leaves nothing, even where the
// engine runs its statements without watching the context.
func testCancelled(t *testing.T, open Opener) {
	msgs := Workload{Seed: 5, Servers: 2, Users: 10, Start: t0}.Messages(300)
	s := open(t, ledger.ApplyOptions{})
	before := Checksum(t, s)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	k := 0
	_, err := s.ApplyChunks(cctx, func() []ledger.Message {
		if k == 3 {
			return nil
		}
		if k == 2 {
			cancel() // the service stopping, two chunks in
		}
		k++
		return msgs[(k-1)*100 : k*100]
	})
	if err == nil {
		t.Fatal("a transaction whose context ended committed")
	}
	if got := Checksum(t, s); !maps.Equal(got, before) {
		t.Errorf("a cancelled transaction left rows:\n%v\n%v", got, before)
	}
	if p, _ := s.Position(ctx); p.StreamSeq != 0 || p.Applied != 0 {
		t.Errorf("a cancelled transaction moved the position: %+v", p)
	}
}

func testRefused(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	g := NewGen("vpn1", &Seq{})
	uid := UID()
	apply(t, s, g.Connect(uid, Conn{User: "pat", VPN4: "10.8.0.77", Refused: "kicked by an operator"}, t0))
	x := session(t, s, uid)
	if x.State != ledger.StateRefused || x.EndReason != "kicked by an operator" || !x.EndedAt.Equal(t0) {
		t.Errorf("refused login: %+v", x)
	}
	if u := usageOf(t, s, "pat", t0, t0.Add(24*time.Hour)); u.Sessions != 0 {
		t.Errorf("a refused login counted as a session: %+v", u)
	}
	if w, _ := s.Who(ctx, ledger.WhoQuery{IP: "10.8.0.77", At: t0}); len(w) != 0 {
		t.Errorf("a refused login held an address: %+v", w)
	}
}

func testQueryArgs(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	for _, c := range []struct {
		name string
		err  error
	}{
		{"who without ip", func() error { _, err := s.Who(ctx, ledger.WhoQuery{At: t0}); return err }()},
		{"who bad ip", func() error { _, err := s.Who(ctx, ledger.WhoQuery{IP: "10.8.0.300", At: t0}); return err }()},
		{"who without at", func() error { _, err := s.Who(ctx, ledger.WhoQuery{IP: "10.8.0.3"}); return err }()},
		{"who bad kind", func() error { _, err := s.Who(ctx, ledger.WhoQuery{IP: "10.8.0.3", At: t0, Kind: "x"}); return err }()},
		{"history limit", func() error { _, err := s.History(ctx, ledger.HistoryQuery{Limit: 5000}); return err }()},
		{"history ip", func() error { _, err := s.History(ctx, ledger.HistoryQuery{IP: "nope"}); return err }()},
		{"session uid", func() error { _, _, err := s.Session(ctx, "nope"); return err }()},
		{"usage by", func() error { _, err := s.Usage(ctx, ledger.UsageQuery{By: "week"}); return err }()},
		{"audit limit", func() error { _, err := s.Audit(ctx, ledger.AuditQuery{Limit: -1}); return err }()},
	} {
		if ledger.ErrorCode(c.err) != ledger.ECodeInvalid {
			t.Errorf("%s: %v, want invalid_argument", c.name, c.err)
		}
	}
	if _, _, err := s.Session(ctx, UID()); ledger.ErrorCode(err) != ledger.ECodeNotFound {
		t.Errorf("unknown session: %v, want not_found", err)
	}
}
