package livestate

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The bucket the shipper creates refuses rollups: one message with
// Nats-Rollup: all, which any user allowed to write one key could send
// (permissions cannot see headers), would otherwise remove every
// server's state and claim. Before the fix the rollup was stored and
// vpn1's claim was gone.
func TestCreatedBucketRefusesRollups(t *testing.T) {
	srv := runNATS(t, 0)
	nc, js := connect(t, srv)
	occtl, _ := fakeOcctl(t, nil)
	start(t, t.TempDir(), occtl, "vpn1", nc, "host-a")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var kv jetstream.KeyValue
	waitUntil(t, "vpn1's claim in the bucket", 15*time.Second, func() bool {
		var err error
		if kv, err = js.KeyValue(ctx, "ocserv_state"); err != nil {
			return false
		}
		_, err = kv.Get(ctx, ClaimKey("vpn1"))
		return err == nil
	})
	st, err := js.Stream(ctx, "KV_ocserv_state")
	if err != nil {
		t.Fatal(err)
	}
	if st.CachedInfo().Config.AllowRollup {
		t.Fatal("the created bucket allows rollups")
	}
	m := nats.NewMsg("$KV.ocserv_state.vpn2.users")
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupAll)
	m.Data = []byte("{}")
	if _, err := js.PublishMsg(ctx, m); err == nil || !strings.Contains(strings.ToLower(err.Error()), "rollup") {
		t.Fatalf("a rollup-all message: %v, want refused for rollups", err)
	}
	if _, err := kv.Get(ctx, ClaimKey("vpn1")); err != nil {
		t.Fatalf("vpn1's claim after the rollup: %v", err)
	}
}

// An existing bucket that allows rollups (nats.go's CreateKeyValue, or
// nats kv add) is warned about, with the fix.
func TestCompareBucketWarnsAboutRollups(t *testing.T) {
	srv := runNATS(t, 0)
	_, js := connect(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, BucketConfig("ocserv_state"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := CompareBucket(st, 30*time.Second)
	if len(d) != 1 || !strings.Contains(d[0], "rollups are allowed") || !strings.Contains(d[0], "--no-allow-rollup") {
		t.Fatalf("differences %q", d)
	}
	if err := denyRollups(ctx, js, "ocserv_state"); err != nil {
		t.Fatal(err)
	}
	if st, err = kv.Status(ctx); err != nil {
		t.Fatal(err)
	}
	if d := CompareBucket(st, 30*time.Second); len(d) != 0 {
		t.Fatalf("after denyRollups: %q", d)
	}
	// Puts, compare-and-set updates and deletes, all the shipper does,
	// still work.
	rev, err := kv.Create(ctx, "vpn1.claim", []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Update(ctx, "vpn1.claim", []byte("b"), rev); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "vpn1.claim"); err != nil {
		t.Fatal(err)
	}
}

// An existing snapshots stream that allows rollups is warned about too:
// one message from any host would empty every server's history.
func TestCompareStreamWarnsAboutRollups(t *testing.T) {
	cfg := StreamConfig("OCSERV_SNAPSHOTS", "ocserv", 100)
	if d := CompareStream(cfg, "ocserv"); len(d) != 0 {
		t.Fatalf("the stream the shipper creates: %q", d)
	}
	cfg.AllowRollup = true
	if d := CompareStream(cfg, "ocserv"); len(d) != 1 || !strings.Contains(d[0], "rollups are allowed") {
		t.Fatalf("differences %q", d)
	}
}
