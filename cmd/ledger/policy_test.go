package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/kick"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/api"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/bucket"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/webhook"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// commanderFor runs a command service for server vpn1 that trusts the
// ledger's policy key and answers only under _OPS (CMD_INBOX_PREFIX=_OPS,
// as docs/nats.md sets it up), with an occtl stand-in that records its
// argv (the real occtl is driven in e2e/).
func commanderFor(t *testing.T, b *bed, policyPub string) (spoolDir, argvLog string) {
	t.Helper()
	dir := t.TempDir()
	argvLog = filepath.Join(dir, "argv")
	occtl := filepath.Join(dir, "occtl")
	os.WriteFile(occtl, []byte("#!/bin/sh\n[ \"$1\" = \"-s\" ] && shift 2\n[ \"$1\" = \"-j\" ] && shift\nprintf '%s\\n' \"$*\" >> "+argvLog+"\necho ok\n"), 0o755)
	trusted := filepath.Join(dir, "operators.keys")
	os.WriteFile(trusted, []byte("policy "+policyPub+" ledger-policy\n"), 0o644)
	tr, err := opauth.LoadTrusted(trusted)
	if err != nil {
		t.Fatal(err)
	}
	nonces, err := opauth.OpenNonceCache(filepath.Join(dir, "nonces"), opauth.NonceLimits{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nonces.Close() })
	spoolDir = filepath.Join(dir, "spool")
	sp, err := spool.Open(spoolDir, spool.Options{Create: true, LockWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	xkp, _ := nkeys.CreateCurveKeys()
	svc, err := cmdsvc.Start(cmdsvc.Options{NC: b.nc, Prefix: "ocserv", ServerID: "vpn1",
		Verifier: &opauth.Verifier{Trusted: tr, Nonces: nonces, MaxSkew: 30 * time.Second, MaxValidity: 5 * time.Minute},
		XKey:     xkp, Occtl: &ocserv.Occtl{Path: occtl, Timeout: 5 * time.Second}, Spool: sp, RefusalAuditsPerMinute: 60,
		InboxPrefixes: []string{"_OPS"}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Build: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	return spoolDir, argvLog
}

// bin/ledger serve with LEDGER_POLICY=on: a quota set through the query
// service, crossed by events on the stream, is published to the bucket
// (created by the ledger, with its heartbeat), ends the user's session
// through the command service with the ledger's own key, and is noticed
// to a webhook; a reset lifts the kick and the verdict. The policy
// engine's commands ask for their answers under LEDGER_CONSOLE_INBOX_PREFIX
// (_OPS.console), where the command service may answer: under the ledger's
// own inbox it would drop them, and no session would end.
func TestServePolicy(t *testing.T) {
	var mu sync.Mutex
	notices := map[string]int{}
	secret := "hook-secret"
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify([]byte(secret), r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, time.Now(), time.Minute); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var n policy.Notice
		json.Unmarshal(body, &n)
		mu.Lock()
		notices[n.Kind+" "+itoa(n.Percent)]++
		mu.Unlock()
	}))
	defer hook.Close()
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	dir := t.TempDir()
	seedFile, secretFile := filepath.Join(dir, "policy.nk"), filepath.Join(dir, "webhook.secret")
	os.WriteFile(seedFile, seed, 0o600)
	os.WriteFile(secretFile, []byte(secret+"\n"), 0o600)
	b := newBed(t, "sqlite", map[string]string{"LEDGER_POLICY": "on", "LEDGER_POLICY_KEY": seedFile, "LEDGER_POLICY_HEARTBEAT": "1s",
		"LEDGER_CONSOLE_INBOX_PREFIX": "_OPS.console", "LEDGER_POLICY_WEBHOOK_URL": hook.URL, "LEDGER_POLICY_WEBHOOK_SECRET": secretFile})
	opPub, _ := b.operator.PublicKey()
	os.WriteFile(filepath.Join(b.dir, "operators.keys"), []byte("read-write "+opPub+" test\n"), 0o600)
	spoolDir, argvLog := commanderFor(t, b, pub)
	p := b.serve("")
	defer func() {
		if t.Failed() {
			t.Logf("ledger log:\n%s", p.out.String())
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var kv jetstream.KeyValue
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("the bucket and its heartbeat", func() bool {
		var err error
		if kv, err = b.js.KeyValue(ctx, bucket.DefaultName); err != nil {
			return false
		}
		_, err = kv.Get(ctx, bucket.HeartbeatKey)
		return err == nil
	})
	c := &api.Client{NC: b.nc, Prefix: "ocserv", Key: b.operator}
	rep, err := c.Do(ctx, "policy-set", map[string]string{"scope": "user", "name": "alice", "quota": "1000"})
	if err != nil || !rep.OK {
		t.Fatalf("policy-set: %v %+v", err, rep)
	}
	g := ledgertest.NewGen("vpn1", &ledgertest.Seq{})
	uid := ledgertest.UID()
	now := time.Now().UTC()
	b.publish([]ledger.Message{g.Connect(uid, ledgertest.Conn{User: "alice", Worker: 77}, now),
		g.Accounting(uid, ledgertest.Acct{Slot: 1, In: 850, Connected: now}, now.Add(time.Second)),
		g.Accounting(uid, ledgertest.Acct{Slot: 2, In: 1200, Connected: now}, now.Add(2*time.Second))})
	waitFor("alice's denial in the bucket", func() bool {
		e, err := kv.Get(ctx, bucket.Key("alice"))
		if err != nil {
			return false
		}
		v, err := bucket.Decode("alice", e.Value())
		return err == nil && !v.Allowed && v.Reason == policy.ReasonQuota
	})
	waitFor("the kick through the command service", func() bool {
		k, _ := kick.Check(spoolDir, "alice", time.Now())
		argv, _ := os.ReadFile(argvLog)
		return k != nil && k.Source == kick.SourcePolicy && strings.Contains(string(argv), "disconnect user alice")
	})
	waitFor("both notices at the webhook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return notices["quota 80"] == 1 && notices["quota 100"] == 1
	})
	rep, err = c.Do(ctx, "policy-reset", map[string]string{"user": "alice"})
	if err != nil || !rep.OK {
		t.Fatalf("policy-reset: %v %+v", err, rep)
	}
	waitFor("the kick lifted and the verdict gone", func() bool {
		k, _ := kick.Check(spoolDir, "alice", time.Now())
		_, err := kv.Get(ctx, bucket.Key("alice"))
		return k == nil && err != nil
	})
	var st struct {
		Policy struct {
			Kicks, Unkicks int64
			Active         bool
		} `json:"policy"`
	}
	if _, err := c.Query(ctx, "status", nil, &st); err != nil || !st.Policy.Active || st.Policy.Kicks < 1 || st.Policy.Unkicks < 1 {
		t.Errorf("status: %+v %v", st, err)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
