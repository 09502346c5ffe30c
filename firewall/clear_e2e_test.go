//go:build e2e

package firewall

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

// TestNftClearChangesNothingWhenNothingIsThere: the nftables Clear (an
// unrestricted user's connect) sends no batch when the device has no table
// of ours: a deletion costs an RCU grace period even when there was nothing
// to delete, and the login waits for it. A kernel monitor sees every table
// change in the namespace; a sentinel table made after Clear marks the end
// of what Clear could have done. With a leftover there, Clear removes it.
func TestNftClearChangesNothingWhenNothingIsThere(t *testing.T) {
	requireRoot(t)
	ns := newNetns(t, "clear")
	b := openIn(t, ns, KindNftables)
	mon := nftables.NewMonitor(nftables.WithMonitorObject(nftables.MonitorObjectTables))
	defer mon.Close()
	var changes chan *nftables.MonitorEvent
	if err := ns.do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		changes, err = c.AddMonitor(mon)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.call(func(ctx context.Context, b Backend) error { return b.Clear(ctx, "vpns6") }); err != nil {
		t.Fatalf("Clear with nothing there: %v", err)
	}
	ns.must(t, "nft", "add", "table", "inet", "sentinel")
	timeout := time.After(10 * time.Second)
	for seen := false; !seen; {
		select {
		case ev, ok := <-changes:
			if !ok {
				t.Fatal("the monitor ended before the sentinel table was seen")
			}
			if ev.Error != nil {
				t.Fatalf("monitor: %v", ev.Error)
			}
			if tbl, _ := ev.Data.(*nftables.Table); tbl != nil && tbl.Name == "sentinel" {
				seen = true
				continue
			}
			t.Errorf("Clear with nothing there changed the ruleset: event type %d, %+v", ev.Type, ev.Data)
		case <-timeout:
			t.Fatal("no monitor event for the sentinel table within 10 s")
		}
	}

	p := &events.Policy{RestrictToRoutes: true, Routes: []string{"10.1.0.0/16"}}
	if o := b.connect("vpns6", ownerA, p); o.Action != ActionApplied {
		t.Fatalf("connect: %+v", o)
	}
	if err := b.call(func(ctx context.Context, b Backend) error { return b.Clear(ctx, "vpns6") }); err != nil {
		t.Fatalf("Clear with a leftover: %v", err)
	}
	if got := listOurs(t, ns); strings.Contains(got, "vpns6") {
		t.Errorf("Clear left the leftover table:\n%s", got)
	}
}
