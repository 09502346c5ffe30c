package ledger_test

import (
	"maps"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
)

// A session's own uid as its logical session is what no row in
// session_links means, so only a roamed worker's link is written: the
// accounting of an ordinary session (which names its own uid) writes none,
// a join writes the joined worker's, and a worker linked elsewhere that
// is named its own logical session again gets a row saying so.
func TestProjectStoresRoamedLinksAlone(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	g := ledgertest.NewGen("vpn1", &ledgertest.Seq{})
	a, b := ledgertest.UID(), ledgertest.UID()
	decode := func(msgs ...ledger.Message) []*ledger.Event {
		var out []*ledger.Event
		for _, m := range msgs {
			ev, err := ledger.Decode(m)
			if err != nil {
				t.Fatalf("the test's event does not decode: %v", err)
			}
			out = append(out, ev)
		}
		return out
	}
	c := ledger.Project(nil, nil, decode(
		g.Connect(a, ledgertest.Conn{User: "erin"}, t0),
		g.Accounting(a, ledgertest.Acct{Slot: 1, Logical: a, In: 10, Out: 20, Connected: t0}, t0.Add(5*time.Minute)),
	))
	if len(c.Links) != 0 {
		t.Errorf("an ordinary session's accounting wrote links %v, want none", c.Links)
	}
	c = ledger.Project(nil, nil, decode(
		g.Connect(b, ledgertest.Conn{User: "erin"}, t0.Add(time.Minute)),
		g.Reconcile(b, ledgertest.Rec{Action: "joined", Logical: a, Joined: []string{a}, Connected: t0.Add(time.Minute)}, t0.Add(2*time.Minute)),
	))
	if want := map[string]string{b: a}; !maps.Equal(c.Links, want) {
		t.Errorf("a join wrote links %v, want %v (the joined worker's alone)", c.Links, want)
	}
	// b is stored linked to a; an event naming b its own logical session
	// must replace that row, not leave it.
	stored := map[string]*ledger.Session{b: {UID: b, LogicalUID: a, ServerID: "vpn1", Username: "erin", State: ledger.StateOpen, ConnectedAt: t0.Add(time.Minute)}}
	c = ledger.Project(stored, map[string]string{b: a}, decode(
		g.Accounting(b, ledgertest.Acct{Slot: 1, Logical: b, In: 1, Out: 1, Connected: t0.Add(time.Minute)}, t0.Add(6*time.Minute)),
	))
	if want := map[string]string{b: b}; !maps.Equal(c.Links, want) {
		t.Errorf("relinking a worker to itself wrote links %v, want %v", c.Links, want)
	}
	if len(c.Sessions) != 1 || c.Sessions[0].LogicalUID != b {
		t.Errorf("relinked row %+v, want logical_uid %s", c.Sessions, b)
	}
}
