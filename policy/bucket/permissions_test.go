package bucket

import (
	"context"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/policy/mirror"
)

// permissionsConf is the nats-server configuration docs/policy.md gives
// for the bucket, between its permissions markers: the test runs exactly
// what the documentation tells operators to write.
func permissionsConf(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- permissions:begin -->\\s*```[a-z]*\\n(.*?)```\\s*<!-- permissions:end -->").FindSubmatch(b)
	if m == nil {
		t.Fatal("docs/policy.md has no permissions block between its markers")
	}
	return string(m[1])
}

func permServer(t *testing.T) *server.Server {
	t.Helper()
	conf := "listen: 127.0.0.1:-1\njetstream: {store_dir: \"" + t.TempDir() + "\"}\n" + permissionsConf(t)
	opts, err := server.ProcessConfigFile(writeConf(t, conf))
	if err != nil {
		t.Fatalf("the documented configuration does not load: %v", err)
	}
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// userJS connects as a documented user and collects permission violations.
func userJS(t *testing.T, s *server.Server, user string) (jetstream.JetStream, *[]string) {
	t.Helper()
	var violations []string
	j := js(t, s.ClientURL(), nats.UserInfo(user, user+"-secret"), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		violations = append(violations, err.Error())
	}))
	return j, &violations
}

// With the documented permissions, the ledger creates and writes the
// bucket, a host reads and follows it but cannot write, delete or purge a
// verdict, and a user without rights in the account cannot even read it;
// an outsider in another account making a bucket of the same name reaches
// no host.
func TestDocumentedPermissions(t *testing.T) {
	s := permServer(t)
	ctx := tctx(t)
	lj, lv := userJS(t, s, "ledger")
	kv, created, err := Ensure(ctx, lj, DefaultName, true)
	if err != nil || !created {
		t.Fatalf("the ledger must create the bucket: %v (violations %v)", err, *lv)
	}
	pub := &Publisher{KV: kv, Instance: "ledger-1"}
	if err := pub.Put(ctx, verdict("alice", false)); err != nil {
		t.Fatalf("the ledger must write verdicts: %v (violations %v)", err, *lv)
	}
	if err := pub.Heartbeat(ctx, time.Now(), 1); err != nil {
		t.Fatal(err)
	}
	if err := pub.Delete(ctx, "nobody"); err != nil {
		t.Fatalf("the ledger must delete verdicts: %v", err)
	}
	if _, err := pub.Published(ctx); err != nil {
		t.Fatalf("the ledger must read the bucket back: %v (violations %v)", err, *lv)
	}

	hj, hv := userJS(t, s, "host")
	spool := t.TempDir()
	f := startFollower(t, hj, spool)
	waitFor(t, "the host's sync", func() bool {
		return f.Status().State == FollowSynced && mirror.Lookup(spool, "alice", time.Now(), time.Minute).Verdict != nil
	})
	if len(*hv) != 0 {
		t.Errorf("following the bucket hit permission violations: the documented host rights are short: %v", *hv)
	}
	hkv, err := hj.KeyValue(ctx, DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	// A request the server refuses gets no answer: short deadlines.
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, time.Second)
		t.Cleanup(cancel)
		return c
	}
	forged := []byte(`{"v":1,"user":"alice","allowed":true,"decided":"2026-01-01T00:00:00Z"}`)
	attempts := map[string]func() error{
		"put a verdict":    func() error { _, err := hkv.Put(short(), Key("alice"), forged); return err },
		"delete a verdict": func() error { return hkv.Delete(short(), Key("alice")) },
		"purge a verdict":  func() error { return hkv.Purge(short(), Key("alice")) },
		"forge a heartbeat": func() error {
			_, err := hkv.Put(short(), HeartbeatKey, []byte(`{"time":"2030-01-01T00:00:00Z"}`))
			return err
		},
		"delete the bucket": func() error { return hj.DeleteKeyValue(short(), DefaultName) },
		"purge the stream": func() error {
			st, err := hj.Stream(short(), "KV_"+DefaultName)
			if err != nil {
				return err
			}
			return st.Purge(short())
		},
	}
	for name, try := range attempts {
		if err := try(); err == nil {
			t.Errorf("the host could %s", name)
		}
	}
	sj, _ := userJS(t, s, "stranger")
	if _, err := sj.KeyValue(short(), DefaultName); err == nil {
		t.Error("a user without rights could look the bucket up")
	}
	if _, err := sj.Publish(short(), "$KV."+DefaultName+"."+Key("alice"), forged); err == nil {
		t.Error("a user without rights could write a verdict")
	}
	oj, _ := userJS(t, s, "outsider")
	okv, _, err := Ensure(ctx, oj, DefaultName, true)
	if err != nil {
		t.Fatalf("the outsider's own account: %v", err)
	}
	okv.Put(ctx, Key("alice"), forged)
	okv.Put(ctx, HeartbeatKey, []byte(`{"time":"2030-01-01T00:00:00Z"}`))
	// Nothing reaches the host's mirror: the ledger's verdict stands.
	pub.Heartbeat(ctx, time.Now(), 1)
	stamp := time.Now()
	waitFor(t, "the ledger's next heartbeat", func() bool { return f.Status().HeartbeatAt.After(stamp.Add(-time.Second)) })
	r := mirror.Lookup(spool, "alice", time.Now(), time.Minute)
	if r.Verdict == nil || r.Verdict.Allowed {
		t.Fatalf("alice's mirrored verdict %+v: forged", r.Verdict)
	}
	if f.Status().Rejected != 0 {
		t.Errorf("the host saw %d forged values", f.Status().Rejected)
	}
	if len(*lv) != 0 {
		t.Errorf("the ledger hit permission violations: the documented ledger rights are short: %v", *lv)
	}
}
