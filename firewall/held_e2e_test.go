//go:build e2e

package firewall

import (
	"io"
	"strings"
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

// TestHeldBackend: a backend from OpenHeld (the hook's) changes the rules
// exactly when Open's does. Only the sockets stay open until Close: a
// disconnect's rules are gone before Close, a held backend keeps working
// after Close, and Close lets go of every socket it held.
func TestHeldBackend(t *testing.T) {
	requireRoot(t)
	p := &events.Policy{RestrictToRoutes: true, Routes: []string{"10.1.0.0/16"}}
	for _, kind := range []string{KindNftables, KindIptables, KindAuto} {
		t.Run(kind, func(t *testing.T) {
			ns := newNetns(t, "held")
			var b Backend
			var err error
			ns.do(func() error { b, err = OpenHeld(kind); return nil })
			if err != nil {
				t.Fatal(err)
			}
			c, ok := b.(io.Closer)
			if !ok {
				t.Fatalf("OpenHeld(%q) gave a %T, not an io.Closer", kind, b)
			}
			nb := &nsBackend{t, ns, b}
			for round := 0; round < 2; round++ { // the second after a Close
				if o := nb.connect("vpns5", ownerA, p); o.Action != ActionApplied {
					t.Fatalf("round %d: connect: %+v", round, o)
				}
				if got := listOurs(t, ns); !strings.Contains(got, "vpns5") {
					t.Fatalf("round %d: connect left no rules for vpns5:\n%s", round, got)
				}
				if o := nb.disconnect("vpns5", ownerA); o.Action != ActionRemoved {
					t.Fatalf("round %d: disconnect: %+v", round, o)
				}
				if got := listOurs(t, ns); strings.Contains(got, "vpns5") {
					t.Errorf("round %d: rules still there after the disconnect returned, before Close:\n%s", round, got)
				}
				if n, isNft := b.(*nftBackend); isNft && len(n.held) == 0 {
					t.Errorf("round %d: the nftables backend held no socket", round)
				}
				if err := c.Close(); err != nil {
					t.Errorf("round %d: Close: %v", round, err)
				}
				if n, isNft := b.(*nftBackend); isNft && len(n.held) != 0 {
					t.Errorf("round %d: %d sockets still held after Close", round, len(n.held))
				}
			}
		})
	}
}
