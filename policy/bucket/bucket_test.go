package bucket

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/mirror"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func tctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func js(t *testing.T, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	j, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func verdict(user string, allowed bool) policy.Verdict {
	v := policy.Verdict{V: policy.VerdictVersion, User: user, Allowed: allowed, Decided: time.Now().UTC().Truncate(time.Millisecond)}
	if !allowed {
		v.Reason, v.Message = policy.ReasonQuota, "quota used"
	}
	return v
}

// waitFor polls cond (a reading of files, never a sleep for nothing).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startFollower(t *testing.T, j jetstream.JetStream, spool string) *Follower {
	t.Helper()
	m, err := mirror.Open(spool)
	if err != nil {
		t.Fatal(err)
	}
	f := &Follower{JS: j, Bucket: DefaultName, Mirror: m, SpoolDir: spool, Log: quiet}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

// The follower makes the mirror equal to the bucket: current values at
// start (and verdicts deleted while it was away are removed), then every
// put and delete; the stamp follows the heartbeat.
func TestFollowerMirrorsTheBucket(t *testing.T) {
	srv := natstest.Run(t)
	j := js(t, srv.ClientURL())
	ctx := tctx(t)
	kv, created, err := Ensure(ctx, j, DefaultName, true)
	if err != nil || !created {
		t.Fatalf("ensure: %v created=%v", err, created)
	}
	if _, created, err := Ensure(ctx, j, DefaultName, true); err != nil || created {
		t.Fatalf("ensure again: %v created=%v", err, created)
	}
	pub := &Publisher{KV: kv, Instance: "test"}
	for _, v := range []policy.Verdict{verdict("alice", false), verdict("bob", true)} {
		if err := pub.Put(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	hbTime := time.Now().Add(-3 * time.Second).UTC()
	if err := pub.Heartbeat(ctx, hbTime, 2); err != nil {
		t.Fatal(err)
	}
	spool := t.TempDir()
	// A verdict left from before, deleted from the bucket meanwhile.
	m, _ := mirror.Open(spool)
	m.Put(verdict("carol", false))
	f := startFollower(t, j, spool)
	waitFor(t, "the initial sync", func() bool { return f.Status().State == FollowSynced })
	if r := mirror.Lookup(spool, "alice", time.Now(), time.Minute); r.State != mirror.StateFresh || r.Verdict == nil || r.Verdict.Allowed {
		t.Fatalf("alice after sync: %+v", r)
	}
	if r := mirror.Lookup(spool, "carol", time.Now(), time.Minute); r.Verdict != nil {
		t.Fatal("carol's verdict, gone from the bucket, is still mirrored")
	}
	if st := m.Stamp(); st.Sub(hbTime).Abs() > time.Second {
		t.Errorf("stamp %s, want the heartbeat's %s", st, hbTime)
	}
	// Live changes.
	if err := pub.Delete(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := pub.Put(ctx, verdict("dave", false)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice deleted and dave put", func() bool {
		return mirror.Lookup(spool, "alice", time.Now(), time.Minute).Verdict == nil &&
			mirror.Lookup(spool, "dave", time.Now(), time.Minute).Verdict != nil
	})
	hb2 := time.Now().UTC()
	pub.Heartbeat(ctx, hb2, 2)
	waitFor(t, "the second heartbeat", func() bool { return m.Stamp().Sub(hb2).Abs() < time.Second })
	// A value that is not its key's user's verdict is refused.
	kv.Put(ctx, Key("erin"), []byte(`{"v":1,"user":"mallory","allowed":true}`))
	pub.Heartbeat(ctx, time.Now(), 2)
	waitFor(t, "the rejection counted", func() bool { return f.Status().Rejected == 1 })
	if mirror.Lookup(spool, "erin", time.Now(), time.Minute).Verdict != nil {
		t.Error("a mismatched value was mirrored")
	}
	st, err := ReadStatus(spool)
	if err != nil || st.State != FollowSynced || st.Entries != 2 || st.LedgerTime.IsZero() {
		t.Errorf("status file %+v %v: want synced with bob and dave", st, err)
	}
	got, err := pub.Published(ctx)
	if err != nil || len(got) != 3 || got["erin"].Message == "" || !got["bob"].Allowed {
		t.Errorf("published %+v %v: want bob, dave and erin's unreadable value", got, err)
	}
}

// With the bucket missing the follower says so in its status, and syncs
// as soon as the ledger makes it.
func TestFollowerWaitsForTheBucket(t *testing.T) {
	srv := natstest.Run(t)
	j := js(t, srv.ClientURL())
	spool := t.TempDir()
	f := startFollower(t, j, spool)
	waitFor(t, "the error state", func() bool { return f.Status().State == FollowError })
	if st, err := ReadStatus(spool); err != nil || st.State != FollowError || st.LastError == "" {
		t.Fatalf("status file %+v %v", st, err)
	}
	if _, _, err := Ensure(tctx(t), j, DefaultName, false); err == nil {
		t.Fatal("Ensure without create must not make the bucket")
	}
	kv, _, err := Ensure(tctx(t), j, DefaultName, true)
	if err != nil {
		t.Fatal(err)
	}
	pub := &Publisher{KV: kv}
	pub.Put(tctx(t), verdict("alice", false))
	pub.Heartbeat(tctx(t), time.Now(), 1)
	waitFor(t, "the sync", func() bool {
		return f.Status().State == FollowSynced && mirror.Lookup(spool, "alice", time.Now(), time.Hour).Verdict != nil
	})
}

func TestKeys(t *testing.T) {
	for _, u := range []string{"alice", "a.b@c", "x-_+"} {
		if got, ok := UserOf(Key(u)); !ok || got != u {
			t.Errorf("UserOf(Key(%q)) = %q, %v", u, got, ok)
		}
	}
	for _, k := range []string{HeartbeatKey, "u.", "u.zz", "v.616c696365"} {
		if _, ok := UserOf(k); ok {
			t.Errorf("UserOf(%q) accepted", k)
		}
	}
	if _, err := Decode("alice", []byte(`{"v":2,"user":"alice"}`)); err == nil {
		t.Error("a verdict of another version must be refused")
	}
	if _, err := Decode("alice", make([]byte, MaxValue+1)); err == nil {
		t.Error("an oversized value must be refused")
	}
	// A group member's name the command service refuses still has a
	// verdict a host reads; a control character never does.
	for _, u := range []string{"jörg", "john smith"} {
		b, _ := json.Marshal(policy.Verdict{V: policy.VerdictVersion, User: u, Reason: policy.ReasonQuota})
		if v, err := Decode(u, b); err != nil || v.User != u {
			t.Errorf("Decode(%q): %+v %v", u, v, err)
		}
	}
	if _, err := Decode("a\nb", []byte(`{"v":1,"user":"a\nb"}`)); err == nil {
		t.Error("a user name with a newline must be refused")
	}
}
