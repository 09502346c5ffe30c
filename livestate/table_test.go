package livestate

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
)

const testSpool = "2c2ca7b7-d63f-4fba-8658-1151af4a207e"

// v7At makes a UUIDv7 carrying t, as the hook's session_uid does.
func v7At(t time.Time, n byte) string {
	var u uuid.UUID
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(t.UnixMilli()))
	copy(u[0:6], ts[2:8])
	u[6] = 0x70
	u[8] = 0x80
	u[15] = n
	return u.String()
}

// fixtureUsers reads the real 1.1.6 show users output (alice 9114 on vpns0,
// bob 9113 on vpns1, "Connected at" 2026-11-22 05:25, to the minute).
func fixtureUsers(t *testing.T) []ocserv.User {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "occtl-1.1.6-json", "show-users.json"))
	if err != nil {
		t.Fatal(err)
	}
	us, _, err := ocserv.ParseUsers(b, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 2 || !us[0].ConnectedAtCoarse {
		t.Fatalf("fixture: %d users, coarse %v", len(us), us[0].ConnectedAtCoarse)
	}
	return us
}

var fixtureConnect = time.Date(2026, 11, 22, 5, 25, 0, 0, time.UTC)

func ofType(evs []Derived, typ events.Type) []Derived {
	var out []Derived
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func reconciles(evs []Derived, action string) []*Reconcile {
	var out []*Reconcile
	for _, e := range evs {
		if r, ok := e.Payload.(*Reconcile); ok && r.Action == action {
			out = append(out, r)
		}
	}
	return out
}

func withCounters(us []ocserv.User, rx, tx uint64) []ocserv.User {
	out := append([]ocserv.User(nil), us...)
	for i := range out {
		out[i].RX, out[i].TX = rx+uint64(i), tx+uint64(i)
	}
	return out
}

// restart simulates a shipper restart: the table goes through its state
// file form.
func restart(t *testing.T, tb *Table) *Table {
	t.Helper()
	b, err := tb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	n := NewTable(tb.SpoolID, tb.Interval)
	n.Grace, n.OrphanGrace = tb.Grace, tb.OrphanGrace
	if err := n.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	return n
}

// Sessions the hook recorded produce accounting at each interval with
// deltas and totals; a restart re-emits nothing and continues the count.
func TestAccountingFromFixture(t *testing.T) {
	us := fixtureUsers(t)
	hook := map[string]string{
		"9114-vpns0": v7At(fixtureConnect.Add(30*time.Second), 1),
		"9113-vpns1": v7At(fixtureConnect.Add(31*time.Second), 2),
	}
	tb := NewTable(testSpool, 5*time.Minute)
	at := fixtureConnect.Add(40 * time.Second)
	res := tb.Observe(Observation{Time: at, Users: us, Hook: hook})
	if len(res.Events) != 0 {
		t.Fatalf("first reading of recorded sessions: %d events, want none: %+v", len(res.Events), res.Events)
	}
	// Before the first interval ends: nothing.
	res = tb.Observe(Observation{Time: fixtureConnect.Add(4 * time.Minute), Users: withCounters(us, 1000, 5000), Hook: hook})
	if len(res.Events) != 0 {
		t.Fatalf("inside the first interval: %d events", len(res.Events))
	}
	// First interval over: one accounting event each, totals = deltas.
	res = tb.Observe(Observation{Time: fixtureConnect.Add(5*time.Minute + 2*time.Second), Users: withCounters(us, 2000, 9000), Hook: hook})
	acct := ofType(res.Events, events.Accounting)
	if len(acct) != 2 || len(res.Events) != 2 {
		t.Fatalf("after one interval: %d events (%d accounting), want 2", len(res.Events), len(acct))
	}
	first := map[string]Derived{}
	for _, d := range acct {
		a := d.Payload.(*Accounting)
		first[d.SessionUID] = d
		if a.Interim != 1 || a.Slot != 1 || a.DeltaIn != a.BytesIn || a.DeltaOut != a.BytesOut {
			t.Errorf("first interim %+v: want interim 1, slot 1, deltas = totals", a)
		}
		if d.SessionUID != hook["9114-vpns0"] && d.SessionUID != hook["9113-vpns1"] {
			t.Errorf("accounting session_uid %s is not the hook's", d.SessionUID)
		}
		if d.Session == nil || d.Session.Username == "" || d.Session.IPRemote == "" {
			t.Errorf("accounting session object %+v lacks occtl's fields", d.Session)
		}
		if !a.ConnectedAtCoarse || a.ConnectedAt != "2026-11-22T05:25:00Z" {
			t.Errorf("connected_at %q coarse %v", a.ConnectedAt, a.ConnectedAtCoarse)
		}
	}
	alice := first[hook["9114-vpns0"]].Payload.(*Accounting)
	if alice.BytesIn != 2000 || alice.BytesOut != 9000 || alice.SessionID != "lUuhGo" {
		t.Errorf("alice's first interim %+v: want 2000/9000, session lUuhGo", alice)
	}
	// A restart in the same interval: nothing.
	tb = restart(t, tb)
	res = tb.Observe(Observation{Time: fixtureConnect.Add(6 * time.Minute), Users: withCounters(us, 2500, 9500), Hook: hook})
	if len(res.Events) != 0 {
		t.Fatalf("after a restart within the interval: %d events re-emitted", len(res.Events))
	}
	// Next interval: deltas since the first event.
	res = tb.Observe(Observation{Time: fixtureConnect.Add(10*time.Minute + time.Second), Users: withCounters(us, 7000, 10000), Hook: hook})
	acct = ofType(res.Events, events.Accounting)
	if len(acct) != 2 {
		t.Fatalf("second interval: %d accounting events", len(acct))
	}
	for _, d := range acct {
		a := d.Payload.(*Accounting)
		if d.SessionUID != hook["9114-vpns0"] {
			continue
		}
		if a.Interim != 2 || a.Slot != 2 || a.BytesIn != 7000 || a.DeltaIn != 5000 || a.DeltaOut != 1000 {
			t.Errorf("alice's second interim %+v: want interim 2, totals 7000/10000, deltas 5000/1000", a)
		}
		if a.IntervalS < 298 || a.IntervalS > 300 {
			t.Errorf("interval_s %v, want ~299", a.IntervalS)
		}
		if d.ID == first[d.SessionUID].ID {
			t.Error("second interim has the first one's event id")
		}
	}
}

// The same slot computed by a table that lost its state gets the same id:
// JetStream's duplicate window (or the consumer) drops the repeat.
func TestAccountingIDsDeterministic(t *testing.T) {
	us := fixtureUsers(t)
	hook := map[string]string{"9114-vpns0": v7At(fixtureConnect.Add(10*time.Second), 1), "9113-vpns1": v7At(fixtureConnect.Add(12*time.Second), 2)}
	ids := func() map[string]bool {
		tb := NewTable(testSpool, time.Minute)
		tb.Observe(Observation{Time: fixtureConnect.Add(90 * time.Second), Users: us, Hook: hook})
		res := tb.Observe(Observation{Time: fixtureConnect.Add(150 * time.Second), Users: us, Hook: hook})
		m := map[string]bool{}
		for _, d := range ofType(res.Events, events.Accounting) {
			m[d.ID] = true
		}
		return m
	}
	a, b := ids(), ids()
	if len(a) != 2 {
		t.Fatalf("%d accounting ids, want 2", len(a))
	}
	for id := range a {
		if !b[id] {
			t.Errorf("id %s not derived again by a fresh table", id)
		}
	}
	other := NewTable("another-spool", time.Minute)
	other.Observe(Observation{Time: fixtureConnect.Add(90 * time.Second), Users: us, Hook: hook})
	for _, d := range other.Observe(Observation{Time: fixtureConnect.Add(150 * time.Second), Users: us, Hook: hook}).Events {
		if a[d.ID] {
			t.Error("another spool derived the same event id")
		}
	}
}

// A session occtl lists without a hook record is reconciled ("seen")
// exactly once, also across a restart; its uid is handed to the hook so
// the disconnect event carries it.
func TestReconcileSeenOnceAcrossRestart(t *testing.T) {
	us := fixtureUsers(t)
	hook := map[string]string{"9113-vpns1": v7At(fixtureConnect.Add(20*time.Second), 2)} // alice has none
	tb := NewTable(testSpool, time.Hour)
	t0 := fixtureConnect.Add(3 * time.Minute)
	res := tb.Observe(Observation{Time: t0, Users: us, Hook: hook})
	if len(res.Events) != 0 {
		t.Fatalf("one reading is not enough to call a session unrecorded: %d events", len(res.Events))
	}
	res = tb.Observe(Observation{Time: t0.Add(30 * time.Second), Users: us, Hook: hook})
	seen := reconciles(res.Events, ActionSeen)
	if len(seen) != 1 || len(res.Events) != 1 {
		t.Fatalf("second reading: %d events, %d seen; want exactly one seen", len(res.Events), len(seen))
	}
	d := res.Events[0]
	if seen[0].HookKey != "9114-vpns0" || d.Session == nil || d.Session.Username != "alice" || d.Session.IPRemote != "192.168.250.50" {
		t.Errorf("seen reconcile %+v session %+v: want alice's worker 9114-vpns0", seen[0], d.Session)
	}
	if res.Store["9114-vpns0"] != d.SessionUID || d.SessionUID == "" {
		t.Errorf("store %v: want alice's key recorded with the reconcile's session_uid %s", res.Store, d.SessionUID)
	}
	if seen[0].LogicalSessionUID != d.SessionUID {
		t.Errorf("logical_session_uid %s, want the worker's own %s", seen[0].LogicalSessionUID, d.SessionUID)
	}
	// The hook record now holds the uid (the service wrote it); restart.
	hook["9114-vpns0"] = d.SessionUID
	tb = restart(t, tb)
	for i := range 3 {
		res = tb.Observe(Observation{Time: t0.Add(time.Duration(60+i*30) * time.Second), Users: us, Hook: hook})
		if len(res.Events) != 0 {
			t.Fatalf("reading %d after the restart: %d events re-emitted: %+v", i, len(res.Events), res.Events[0].Payload)
		}
	}
	// Even a table that lost its state derives the same id for the fact.
	fresh := NewTable(testSpool, time.Hour)
	delete(hook, "9114-vpns0")
	fresh.Observe(Observation{Time: t0, Users: us, Hook: hook})
	res = fresh.Observe(Observation{Time: t0.Add(30 * time.Second), Users: us, Hook: hook})
	if len(res.Events) != 1 || res.Events[0].ID != d.ID || res.Events[0].SessionUID != d.SessionUID {
		t.Errorf("a fresh table derived %+v, want the same id %s and uid", res.Events, d.ID)
	}
}

// A worker that vanishes while its hook record stays (no disconnect) is
// lost once, after the grace; one whose record went (disconnect ran) ends
// quietly.
func TestReconcileLost(t *testing.T) {
	us := fixtureUsers(t)
	hook := map[string]string{
		"9114-vpns0": v7At(fixtureConnect.Add(20*time.Second), 1),
		"9113-vpns1": v7At(fixtureConnect.Add(21*time.Second), 2),
	}
	aliceUID := hook["9114-vpns0"]
	tb := NewTable(testSpool, time.Hour)
	t0 := fixtureConnect.Add(2 * time.Minute)
	withRX := withCounters(us, 111, 222)
	tb.Observe(Observation{Time: t0, Users: withRX, Hook: hook})
	// Both workers gone; bob's disconnect ran (record removed), alice's not.
	delete(hook, "9113-vpns1")
	var all []Derived
	var drops []string
	for i := 1; i <= 4; i++ {
		res := tb.Observe(Observation{Time: t0.Add(time.Duration(i) * 3 * time.Second), Users: nil, Hook: hook})
		if i == 1 && len(res.Events) != 0 {
			t.Fatalf("lost after a single reading without the worker")
		}
		all = append(all, res.Events...)
		drops = append(drops, res.Drop...)
		if len(res.Drop) > 0 {
			delete(hook, "9114-vpns0") // the service removes the record
		}
	}
	lost := reconciles(all, ActionLost)
	if len(all) != 1 || len(lost) != 1 {
		t.Fatalf("%d events, %d lost; want exactly one lost (alice)", len(all), len(lost))
	}
	if all[0].SessionUID != aliceUID || lost[0].HookKey != "9114-vpns0" {
		t.Errorf("lost %+v", lost[0])
	}
	if lost[0].BytesIn == nil || *lost[0].BytesIn != 111 || lost[0].LastSeen == "" {
		t.Errorf("lost carries the last counters and sighting: %+v", lost[0])
	}
	if len(drops) != 1 || drops[0] != "9114-vpns0" {
		t.Errorf("drops %v, want alice's record", drops)
	}
	if tb.Workers() != 0 {
		t.Errorf("%d workers still followed", tb.Workers())
	}
}

// A hook record with no worker at all (the session ended while the shipper
// was down, without its disconnect) is lost once the record is old enough.
func TestReconcileOrphanRecord(t *testing.T) {
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	hook := map[string]string{
		"4242-vpns3": v7At(now.Add(-2*time.Hour), 7),
		"4343-vpns4": v7At(now.Add(-5*time.Second), 8), // its connect script may still be running
	}
	tb := NewTable(testSpool, time.Hour)
	var all []Derived
	for i := range 4 {
		all = append(all, tb.Observe(Observation{Time: now.Add(time.Duration(i) * 5 * time.Second), Hook: hook}).Events...)
	}
	lost := reconciles(all, ActionLost)
	if len(lost) != 1 || lost[0].HookKey != "4242-vpns3" {
		t.Fatalf("lost %+v, want only 4242-vpns3", lost)
	}
	if all[0].Session == nil || all[0].Session.ID != 4242 || all[0].Session.Device != "vpns3" {
		t.Errorf("session %+v, want id 4242 device vpns3", all[0].Session)
	}
}

// A roaming client: the first worker's disconnect runs, a new worker with
// the same cookie connects (new hook uid). The new worker is joined to the
// first, once; its accounting carries the logical uid.
func TestRoamJoined(t *testing.T) {
	us := fixtureUsers(t)[:1] // alice
	uidA := v7At(fixtureConnect.Add(20*time.Second), 1)
	hook := map[string]string{"9114-vpns0": uidA}
	tb := NewTable(testSpool, 5*time.Minute)
	t0 := fixtureConnect.Add(time.Minute)
	tb.Observe(Observation{Time: t0, Users: us, Hook: hook})

	roamAt := fixtureConnect.Add(3 * time.Minute)
	b := us[0]
	b.ID, b.Device = 9200, "vpns2"
	b.ConnectedAt = roamAt.Truncate(time.Minute)
	uidB := v7At(roamAt.Add(time.Second), 3)
	hook = map[string]string{"9200-vpns2": uidB}
	var all []Derived
	for i := range 3 {
		all = append(all, tb.Observe(Observation{Time: roamAt.Add(time.Duration(2+i*5) * time.Second), Users: []ocserv.User{b}, Hook: hook}).Events...)
	}
	joined := reconciles(all, ActionJoined)
	if len(all) != 1 || len(joined) != 1 {
		t.Fatalf("%d events, %d joined; want exactly one joined", len(all), len(joined))
	}
	j := joined[0]
	if all[0].SessionUID != uidB || j.LogicalSessionUID != uidA || len(j.JoinedSessionUIDs) != 1 || j.JoinedSessionUIDs[0] != uidA || j.SessionID != "lUuhGo" {
		t.Errorf("joined %+v (session_uid %s): want worker B joined to logical A", j, all[0].SessionUID)
	}
	tb = restart(t, tb)
	res := tb.Observe(Observation{Time: roamAt.Add(6 * time.Minute), Users: []ocserv.User{b}, Hook: hook})
	if len(reconciles(res.Events, ActionJoined)) != 0 {
		t.Error("joined again after a restart")
	}
	acct := ofType(res.Events, events.Accounting)
	if len(acct) != 1 || acct[0].Payload.(*Accounting).LogicalSessionUID != uidA {
		t.Errorf("accounting of the roamed worker: %+v, want logical_session_uid %s", acct, uidA)
	}
}

// A record left by an earlier worker with the same ID and device (PID
// reused, that worker's disconnect missed, this one's connect missed): the
// old session is lost and the new one is seen.
func TestStaleRecordOfReusedPID(t *testing.T) {
	us := fixtureUsers(t)[:1]
	hook := map[string]string{"9114-vpns0": v7At(fixtureConnect.Add(-3*time.Hour), 9)}
	tb := NewTable(testSpool, time.Hour)
	var all []Derived
	for i := range 3 {
		all = append(all, tb.Observe(Observation{Time: fixtureConnect.Add(time.Duration(60+i*10) * time.Second), Users: us, Hook: hook}).Events...)
	}
	if n := len(reconciles(all, ActionLost)); n != 1 {
		t.Errorf("%d lost, want the stale record's session once", n)
	}
	if n := len(reconciles(all, ActionSeen)); n != 1 {
		t.Errorf("%d seen, want the new worker once", n)
	}
}

func TestPlausibleCoarse(t *testing.T) {
	ca := fixtureConnect // printed "05:25": the real time is in [05:25:00, 05:26:00)
	cases := []struct {
		name   string
		uid    time.Time
		coarse bool
		want   bool
	}{
		{"same minute, coarse", ca.Add(59 * time.Second), true, true},
		{"after a long login, coarse", ca.Add(14 * time.Minute), true, true},
		{"hours before", ca.Add(-2 * time.Hour), true, false},
		{"hours after", ca.Add(3 * time.Hour), false, false},
		{"exact, seconds after", ca.Add(3 * time.Second), false, true},
		{"exact, a minute before", ca.Add(-time.Minute), false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := plausible(v7At(c.uid, 1), ca, c.coarse); got != c.want {
				t.Errorf("plausible = %v, want %v", got, c.want)
			}
		})
	}
	if !plausible("not-a-v7-but-accepted", ca, true) {
		t.Error("a uid that is not a UUIDv7 cannot be checked and is accepted")
	}
}

// The events the table derives encode as schema-1 events with the payload
// under its type's field.
func TestDerivedEventShape(t *testing.T) {
	d := Derived{Type: events.Reconcile, ID: derivedID("x"), SessionUID: "u", Payload: &Reconcile{Action: ActionSeen, Reason: "r", ObservedAt: "t"}}
	ev, err := d.Event("srv", fixtureConnect)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	rec, ok := m["reconcile"].(map[string]any)
	if !ok || rec["action"] != "seen" || m["type"] != "reconcile" || m["session_uid"] != "u" || m["accounting"] != nil {
		t.Errorf("encoded %s", b)
	}
	if !strings.HasPrefix(string(b), `{"v":1,`) {
		t.Errorf("not a schema-1 event: %s", b)
	}
}
