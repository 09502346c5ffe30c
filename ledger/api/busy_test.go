package api_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/api"
)

// slowStore answers history for user "slow" only once release is closed
// (a query heavy enough to take the service's whole timeout).
type slowStore struct {
	ledger.Store
	release chan struct{}
	started chan struct{} // one send per slow query begun
}

func (s *slowStore) History(ctx context.Context, q ledger.HistoryQuery) (ledger.Page[ledger.Session], error) {
	if q.User == "slow" {
		s.started <- struct{}{}
		select {
		case <-s.release:
		case <-ctx.Done():
			return ledger.Page[ledger.Session]{}, ctx.Err()
		}
	}
	return s.Store.History(ctx, q)
}

// TestHeavyKeyHoldsItsShareOnly: a read-only key whose queries are slow
// holds at most MaxPerKey of the service's room; its next request is
// refused busy at once (and may be sent again as it was, its nonce not
// used), and another key is answered meanwhile, on the same endpoint.
func TestHeavyKeyHoldsItsShareOnly(t *testing.T) {
	dir := t.TempDir()
	st := &slowStore{Store: openLedger(t, dir), release: make(chan struct{}), started: make(chan struct{}, 8)}
	heavy, _ := nkeys.CreateUser()
	other, _ := nkeys.CreateUser()
	hp, _ := heavy.PublicKey()
	op, _ := other.PublicKey()
	nc := serve(t, dir, "ro "+hp+" heavy\nro "+op+" other\n", api.Options{Store: st, MaxPerKey: 2, MaxInFlight: 8})
	// Registered after serve's clean-ups, so it runs before them: the
	// service stops (waiting for its queries) with the slow ones let go.
	released := false
	t.Cleanup(func() {
		if !released {
			close(st.release)
		}
	})
	hc := &api.Client{NC: nc, Prefix: "ocserv", Key: heavy}
	oc := &api.Client{NC: nc, Prefix: "ocserv", Key: other}

	// The heavy key's two slow queries are under way...
	var wg sync.WaitGroup
	replies := make([]*cmdsvc.Reply, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i], _ = hc.Do(ctx, "history", map[string]string{"user": "slow"})
		}()
	}
	for range 2 {
		select {
		case <-st.started:
		case <-time.After(10 * time.Second):
			t.Fatal("the heavy key's queries did not start")
		}
	}
	// ...its third is refused at once...
	begin := time.Now()
	rep, err := hc.Do(ctx, "history", map[string]string{"user": "slow"})
	if err != nil || rep.OK || rep.Error == nil || rep.Error.Code != api.CodeBusy {
		t.Fatalf("the heavy key's third request: %+v, %v; want refused %s", rep, err, api.CodeBusy)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("the refusal took %s: it waited for the slow queries", d)
	}
	// ...and another key is answered, on the same endpoint.
	var h api.HistoryResult
	if rep, err := oc.Query(ctx, "history", map[string]string{"user": "alice"}, &h); err != nil || !rep.OK {
		t.Fatalf("another key while the heavy one's queries run: %+v, %v", rep, err)
	}
	close(st.release)
	released = true
	wg.Wait()
	for i, r := range replies {
		if r == nil || !r.OK {
			t.Errorf("the heavy key's slow query %d: %+v", i, r)
		}
	}
	// Its room is given back: the key is answered again.
	if rep, err := hc.Query(ctx, "history", map[string]string{"user": "alice"}, &h); err != nil || !rep.OK {
		t.Fatalf("the heavy key after its queries were answered: %+v, %v", rep, err)
	}
}
