package bucket

import (
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/mirror"
)

// permServer runs nats-server with exactly the block docs/policy.md gives.
func permServer(t *testing.T) *server.Server {
	t.Helper()
	return natstest.RunDocumented(t, "../../docs/policy.md")
}

// userJS connects as a documented user, with its documented inbox
// prefix, and collects permission violations.
func userJS(t *testing.T, s *server.Server, user, inbox string) (jetstream.JetStream, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var violations []string
	j := js(t, s.ClientURL(), nats.UserInfo(user, user+"-secret"), nats.CustomInboxPrefix(inbox),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			violations = append(violations, err.Error())
			mu.Unlock()
		}))
	return j, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), violations...)
	}
}

// With docs/policy.md's block (the fleet block's rights on the bucket,
// docs/nats.md), the ledger creates and writes the bucket and a host
// follows it under its own inbox; an outsider in another account making a
// bucket of the same name, with a forged verdict and heartbeat, reaches no
// host. What a taken-over host or a user without rights on the bucket
// cannot do is TestDocumentedFleetPermissions' (internal/natsperm), under
// the fleet's whole block.
func TestDocumentedPermissions(t *testing.T) {
	s := permServer(t)
	ctx := tctx(t)
	lj, lv := userJS(t, s, "ledger", "_INBOX_ledger")
	kv, created, err := Ensure(ctx, lj, DefaultName, true)
	if err != nil || !created {
		t.Fatalf("the ledger must create the bucket: %v (violations %v)", err, lv())
	}
	pub := &Publisher{KV: kv, Instance: "ledger-1"}
	if err := pub.Put(ctx, verdict("alice", false)); err != nil {
		t.Fatalf("the ledger must write verdicts: %v (violations %v)", err, lv())
	}
	if err := pub.Heartbeat(ctx, time.Now(), 1); err != nil {
		t.Fatal(err)
	}
	if err := pub.Delete(ctx, "nobody"); err != nil {
		t.Fatalf("the ledger must delete verdicts: %v", err)
	}
	if _, err := pub.Published(ctx); err != nil {
		t.Fatalf("the ledger must read the bucket back: %v (violations %v)", err, lv())
	}

	hj, hv := userJS(t, s, "vpn1-commander", "_INBOX_vpn1_cmd")
	spool := t.TempDir()
	f := startFollower(t, hj, spool)
	waitFor(t, "the host's sync", func() bool {
		return f.Status().State == FollowSynced && mirror.Lookup(spool, "alice", time.Now(), time.Minute).Verdict != nil
	})

	forged := []byte(`{"v":1,"user":"alice","allowed":true,"decided":"2026-01-01T00:00:00Z"}`)
	oj, _ := userJS(t, s, "outsider", "_INBOX")
	okv, created, err := Ensure(ctx, oj, DefaultName, true)
	if err != nil || !created {
		t.Fatalf("the outsider's own account: %v (created %v: a bucket of that name already there?)", err, created)
	}
	if _, err := okv.Put(ctx, Key("alice"), forged); err != nil {
		t.Fatal(err)
	}
	if _, err := okv.Put(ctx, HeartbeatKey, []byte(`{"time":"2030-01-01T00:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	// Nothing reaches the host's mirror: the ledger's next heartbeat
	// arrives, the ledger's verdict stands, no forged value was seen.
	stamp := time.Now()
	if err := pub.Heartbeat(ctx, stamp, 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the ledger's next heartbeat", func() bool { return !f.Status().HeartbeatAt.Before(stamp) })
	if lt := f.Status().LedgerTime; !lt.Equal(stamp.UTC()) {
		t.Errorf("the host's newest heartbeat is %v, want the ledger's %v", lt, stamp.UTC())
	}
	r := mirror.Lookup(spool, "alice", time.Now(), time.Minute)
	if r.Verdict == nil || r.Verdict.Allowed {
		t.Fatalf("alice's mirrored verdict %+v: forged", r.Verdict)
	}
	if f.Status().Rejected != 0 {
		t.Errorf("the host saw %d forged values", f.Status().Rejected)
	}
	for name, v := range map[string]func() []string{"the ledger": lv, "the host": hv} {
		if got := v(); len(got) != 0 {
			t.Errorf("%s hit permission violations: the documented rights are short: %v", name, got)
		}
	}
}
