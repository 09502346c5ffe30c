package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/api"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/bucket"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/engine"
)

// policyBed: an embedded NATS, a ledger (SQLite) with its query service
// and policy engine in-process, and two ctl configurations: an operator
// with a read-write key and an auditor with a read-only one.
type policyBed struct {
	op, ro *ctlBed
	st     ledger.Store
	kv     jetstream.KeyValue
	eng    *engine.Engine
	g      *ledgertest.Gen
}

func newPolicyBed(t *testing.T) *policyBed {
	t.Helper()
	srv := natstest.Run(t)
	dir := t.TempDir()
	var trusted strings.Builder
	mk := func(name, role string) *ctlBed {
		d := filepath.Join(dir, name)
		os.Mkdir(d, 0o700)
		b := &ctlBed{t: t, cfg: filepath.Join(d, "ctl.env"), keyOut: filepath.Join(d, "op.nk")}
		os.WriteFile(b.cfg, []byte("NATS_URL="+srv.ClientURL()+"\nOPERATOR_KEY="+b.keyOut+"\nCTL_TIMEOUT=10s\n"), 0o600)
		out, errs, code := b.run("", "keygen", "--name", name, "--role", role)
		if code != 0 {
			t.Fatalf("keygen: %d %s", code, errs)
		}
		trusted.WriteString(out)
		return b
	}
	pb := &policyBed{op: mk("ops", "read-write"), ro: mk("auditor", "read-only")}
	tpath := filepath.Join(dir, "trusted")
	os.WriteFile(tpath, []byte(trusted.String()), 0o600)
	tr, err := opauth.LoadTrusted(tpath)
	if err != nil {
		t.Fatal(err)
	}
	nonces, _ := opauth.OpenNonceCache(filepath.Join(dir, "nonces"), opauth.NonceLimits{}, time.Now())
	t.Cleanup(func() { nonces.Close() })
	ctx := context.Background()
	path := filepath.Join(dir, "ledger.db")
	if _, err := sqlite.Migrate(ctx, path); err != nil {
		t.Fatal(err)
	}
	if pb.st, err = sqlite.Open(ctx, path, sqlite.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pb.st.Close() })
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	if pb.kv, _, err = bucket.Ensure(ctx, js, bucket.DefaultName, true); err != nil {
		t.Fatal(err)
	}
	pb.eng = engine.New(engine.Options{Store: pb.st, Publisher: &bucket.Publisher{KV: pb.kv}, NC: nc, Prefix: "ocserv",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ectx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { pb.eng.Run(ectx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	svc, err := api.Start(api.Options{NC: nc, Prefix: "ocserv", Store: pb.st,
		Verifier: &opauth.Verifier{Trusted: tr, Nonces: nonces, MaxSkew: time.Second, MaxValidity: time.Minute},
		Policy:   &api.PolicyHooks{Touch: pb.eng.Touch, SweepSoon: pb.eng.SweepSoon, Settle: pb.eng.Settle},
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	pb.g = ledgertest.NewGen("vpn1", &ledgertest.Seq{})
	return pb
}

func (pb *policyBed) apply(t *testing.T, msgs ...ledger.Message) {
	t.Helper()
	r, err := pb.st.Apply(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	pb.eng.Touch(r.Users...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pb.eng.Settle(ctx)
}

func (pb *policyBed) inBucket(user string) bool {
	_, err := pb.kv.Get(context.Background(), bucket.Key(user))
	return err == nil
}

func TestCtlPolicy(t *testing.T) {
	pb := newPolicyBed(t)
	now := time.Now().UTC()
	uid := ledgertest.UID()
	pb.apply(t, pb.g.Connect(uid, ledgertest.Conn{User: "alice", Group: "staff"}, now.Add(-time.Minute)))

	out, errs, code := pb.op.run("", "quota", "alice", "5MiB", "--period", "monthly:1")
	if code != 0 || !strings.Contains(out, "quota: 5.0 MiB total per monthly:1") || !strings.Contains(out, "5.0 MiB left") {
		t.Fatalf("quota: %d\n%s%s", code, out, errs)
	}
	// The traffic crosses it: usage shows the standing, the bucket the denial.
	pb.apply(t, pb.g.Accounting(uid, ledgertest.Acct{Slot: 1, In: 1 << 20, Out: 5 << 20, Connected: now.Add(-time.Minute)}, now))
	out, _, code = pb.op.run("", "usage", "--user", "alice")
	if code != 0 || !strings.Contains(out, "QUOTA LEFT") || !strings.Contains(out, "denied (quota)") {
		t.Fatalf("usage: %d\n%s", code, out)
	}
	out, _, code = pb.op.run("", "usage", "--user", "alice", "--json")
	var u api.UsageResult
	if code != 0 || json.Unmarshal([]byte(out), &u) != nil || u.Limits["alice"].QuotaRemaining == nil || *u.Limits["alice"].QuotaRemaining != 0 || u.Limits["alice"].Allowed {
		t.Fatalf("usage --json: %d %s", code, out)
	}
	if !pb.inBucket("alice") {
		t.Fatal("alice's denial is not in the bucket")
	}
	// A read-only key reads, and cannot set or reset.
	if out, _, code := pb.ro.run("", "policy", "get", "user", "alice"); code != 0 || !strings.Contains(out, "DENIED") {
		t.Fatalf("read-only get: %d %s", code, out)
	}
	for _, args := range [][]string{{"quota", "alice", "1TiB"}, {"quota", "reset", "alice"}, {"policy", "delete", "user", "alice"}, {"limit", "bob", "3"}} {
		if _, errs, code := pb.ro.run("", args...); code != exitRefused || !strings.Contains(errs, "forbidden") {
			t.Errorf("read-only %v: %d %s", args, code, errs)
		}
	}
	if _, err := pb.st.Policy(context.Background(), policy.ScopeUser, "bob"); ledger.ErrorCode(err) != ledger.ECodeNotFound {
		t.Errorf("a refused limit was stored: %v", err)
	}
	if !pb.inBucket("alice") {
		t.Fatal("a read-only key's refused quota or reset lifted alice's denial")
	}
	// Reset lets her back in: the verdict is gone from the bucket by the
	// time ctl answers.
	out, errs, code = pb.op.run("", "quota", "reset", "alice")
	if code != 0 || !strings.Contains(out, "now: allowed") || !strings.Contains(out, "(6.0 MiB and 1m0s were counted") {
		t.Fatalf("reset: %d\n%s%s", code, out, errs)
	}
	if pb.inBucket("alice") {
		t.Fatal("the bucket still denies alice after the reset")
	}
	// Group expiry, a session limit, the list.
	if _, errs, code := pb.op.run("", "expire", "--group", "staff", "2030-12-31"); code != 0 {
		t.Fatalf("expire --group: %d %s", code, errs)
	}
	if _, errs, code := pb.op.run("", "limit", "carol", "1", "--newest-wins"); code != 0 {
		t.Fatalf("limit: %d %s", code, errs)
	}
	out, _, code = pb.op.run("", "policy", "list")
	if code != 0 || !strings.Contains(out, "expiry: 2031-01-01T00:00:00Z") || !strings.Contains(out, "at most 1, past it the newest wins") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	out, _, _ = pb.op.run("", "policy", "get", "user", "alice")
	if !strings.Contains(out, "expiry: 2031-01-01T00:00:00Z [group]") || !strings.Contains(out, "[user]") {
		t.Errorf("alice's effective policy must show the group's expiry and her own quota:\n%s", out)
	}
	// Bad input: a clear error naming the argument, exit 2, nothing stored.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"quota", "alice", "lots"}, "quota:"},
		{[]string{"limit", "carol", "0"}, "sessions:"},
		{[]string{"expire", "dave", "next week"}, "expire:"},
		{[]string{"policy", "set", "user", "alice"}, "nothing to change"},
		{[]string{"policy", "set", "team", "x", "--quota", "1GiB"}, "user or group"},
		{[]string{"quota", "../root", "1GiB"}, "name:"},
		{[]string{"quota", "reset", "nobody"}, "no quota"},
	} {
		if _, errs, code := pb.op.run("", c.args...); code != exitUsage || !strings.Contains(errs, c.want) {
			t.Errorf("%v: %d %q, want exit 2 naming %q", c.args, code, errs, c.want)
		}
	}
	if _, err := pb.st.Policy(context.Background(), policy.ScopeUser, "dave"); ledger.ErrorCode(err) != ledger.ECodeNotFound {
		t.Errorf("a refused expiry was stored: %v", err)
	}
}
