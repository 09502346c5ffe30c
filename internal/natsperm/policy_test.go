package natsperm

// Fleet policy under docs/nats.md's block (docs/policy.md): the ledger's
// engine creates and writes the verdicts bucket, vpn1's command service
// mirrors it read-only under its own inbox, the engine's kicks reach it,
// the console's policy changes go through the ledger's query service; and
// vpn1's two users cannot touch a verdict, the heartbeat or the bucket.

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/kick"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/api"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
	pbucket "github.com/ocserv-telemetry/ocserv-telemetry/policy/bucket"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/mirror"
)

const policyKV = "KV_" + pbucket.DefaultName

// runPolicy runs the ledger's policy engine until the test ends.
func (l *ledgerSide) runPolicy(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.eng.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// followPolicy runs vpn1's mirror of the verdicts bucket as its command
// service does with POLICY=on: on the command service's own connection.
func followPolicy(t *testing.T, cmdr *client, spoolDir string) *pbucket.Follower {
	t.Helper()
	m, err := mirror.Open(spoolDir)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(cmdr.nc)
	f := &pbucket.Follower{JS: js, Bucket: pbucket.DefaultName, Mirror: m, SpoolDir: spoolDir,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

func fleetPolicy(t *testing.T, s *server.Server, l *ledgerSide, vpn1 *site, csl *consoleSide) {
	t.Helper()
	spoolDir := filepath.Join(vpn1.dir, "spool")
	// occtl's answer to the kick's disconnect (nothing: done).
	if err := os.WriteFile(filepath.Join(filepath.Dir(vpn1.occtl), "disconnect-user-erin.json"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	// The engine creates the bucket (the ledger user may; no host may)
	// and writes its heartbeat; vpn1 mirrors it.
	l.runPolicy(t)
	f := followPolicy(t, csl.cmdr, spoolDir)
	defer func() {
		if t.Failed() {
			t.Logf("vpn1's follower: %+v; its command service's violations: %q; the ledger's log:\n%s", f.Status(), csl.cmdr.violations(), l.log.String())
		}
	}()
	waitFor(t, "vpn1's mirror synced with the ledger's heartbeat", 30*time.Second, func() bool {
		st := f.Status()
		return st.State == pbucket.FollowSynced && !st.LedgerTime.IsZero() && mirror.Lookup(spoolDir, "erin", time.Now(), time.Minute).State == mirror.StateFresh
	})

	// erin is on vpn1 (vpn1's own events, as its shipper would publish
	// them) and has sent 1200 bytes.
	host := connect(t, s, "vpn1", "_INBOX_vpn1")
	hjs, _ := jetstream.New(host.nc)
	g := ledgertest.NewGen("vpn1", &ledgertest.Seq{})
	uid := ledgertest.UID()
	now := time.Now().UTC()
	for _, m := range []ledger.Message{g.Connect(uid, ledgertest.Conn{User: "erin", Worker: 77, IPReal: "203.0.113.77", VPN4: "10.8.0.77"}, now),
		g.Accounting(uid, ledgertest.Acct{Slot: 1, In: 1200, Connected: now}, now.Add(time.Second))} {
		if _, err := hjs.Publish(tctx(t, 5*time.Second), m.Subject, m.Data); err != nil {
			t.Fatalf("vpn1 publishing erin's %s: %v", m.Subject, err)
		}
	}
	l.caughtUp(t, l.conn.JS)

	// The console gives erin a quota of 1000 bytes: signed with its key,
	// sent on the ledger's connection to the ledger's own query service,
	// answered under _OPS.console (cmd/ledger/console.go).
	cons := &api.Client{NC: l.conn.NC, Prefix: "ocserv", Key: csl.key, InboxPrefix: "_OPS.console"}
	if rep, err := cons.DoAs(tctx(t, 15*time.Second), "admin", "policy-set", map[string]string{"scope": "user", "name": "erin", "quota": "1000"}); err != nil || !rep.OK {
		t.Fatalf("the console's policy-set through the ledger: %+v %v", rep, err)
	}
	// The verdict reaches vpn1's mirror; the engine's kick, signed with
	// the policy key and answered under _OPS.console, reaches vpn1's
	// command service, which puts erin on its kick list.
	waitFor(t, "erin's denial in vpn1's mirror and the policy kick on vpn1", 30*time.Second, func() bool {
		r := mirror.Lookup(spoolDir, "erin", time.Now(), time.Minute)
		k, _ := kick.Check(spoolDir, "erin", time.Now())
		return r.State == mirror.StateFresh && r.Verdict != nil && !r.Verdict.Allowed && r.Verdict.Reason == policy.ReasonQuota &&
			k != nil && k.Source == kick.SourcePolicy
	})
	if st := l.eng.Stats(); st.Kicks < 1 || st.CommandErrs != 0 {
		t.Errorf("the engine's kicks: %d sent, %d failed (the answers under _OPS.console must come back)", st.Kicks, st.CommandErrs)
	}

	attackPolicy(t, s, vpn1)
	// The ledger's verdict stands in vpn1's mirror, nothing forged seen.
	stamp := time.Now()
	waitFor(t, "a heartbeat after the attack", 30*time.Second, func() bool { return f.Status().HeartbeatAt.After(stamp) })
	if r := mirror.Lookup(spoolDir, "erin", time.Now(), time.Minute); r.Verdict == nil || r.Verdict.Allowed {
		t.Errorf("erin's verdict in vpn1's mirror after the attack: %+v", r.Verdict)
	}
	if n := f.Status().Rejected; n != 0 {
		t.Errorf("vpn1's mirror saw %d values that are not the ledger's verdicts", n)
	}

	// The console resets erin's quota the same way: the verdict goes, the
	// kick is lifted.
	if rep, err := cons.DoAs(tctx(t, 15*time.Second), "admin", "policy-reset", map[string]string{"user": "erin"}); err != nil || !rep.OK {
		t.Fatalf("the console's policy-reset through the ledger: %+v %v", rep, err)
	}
	waitFor(t, "erin allowed again in vpn1's mirror, the kick lifted", 30*time.Second, func() bool {
		r := mirror.Lookup(spoolDir, "erin", time.Now(), time.Minute)
		k, _ := kick.Check(spoolDir, "erin", time.Now())
		return r.State == mirror.StateFresh && r.Verdict == nil && k == nil
	})
	if st := f.Status(); st.LastError != "" {
		t.Errorf("vpn1's follower: %s", st.LastError)
	}
	if v := host.violations(); len(v) != 0 {
		t.Errorf("vpn1 publishing its own events hit permissions violations: %q", v)
	}
}

// attackPolicy tries, with vpn1's two users, what docs/policy.md says a
// taken-over host cannot do to the verdicts, and the same as users with no
// right on the bucket (the dashboard, an operator); the server refuses
// each.
func attackPolicy(t *testing.T, s *server.Server, vpn1 *site) {
	t.Helper()
	host := connect(t, s, "vpn1", "_INBOX_vpn1")
	cmdr := connect(t, s, "vpn1-commander", "_INBOX_vpn1_cmd")
	forged := []byte(`{"v":1,"user":"erin","allowed":true,"decided":"2026-01-01T00:00:00Z"}`)
	verdictSubj := "$KV." + pbucket.DefaultName + "." + pbucket.Key("erin")
	hbSubj := "$KV." + pbucket.DefaultName + "." + pbucket.HeartbeatKey
	for _, c := range []struct {
		name string
		cl   *client
	}{{"vpn1", host}, {"vpn1-commander", cmdr}, {"dashboard", connect(t, s, "dashboard", "_INBOX_dash")}, {"alice", connect(t, s, "alice", "_OPS.alice")}} {
		// Put, delete, purge (KV-Operation headers on the same subject).
		for _, op := range []string{"", "DEL", "PURGE"} {
			for _, subj := range []string{verdictSubj, hbSubj, "$KV." + pbucket.DefaultName + "." + pbucket.Key("someone")} {
				m := nats.NewMsg(subj)
				m.Reply = c.cl.nc.NewRespInbox()
				m.Data = forged
				if op != "" {
					m.Header.Set("KV-Operation", op)
				}
				if op == "PURGE" {
					m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
				}
				if err := c.cl.nc.PublishMsg(m); err != nil {
					t.Fatal(err)
				}
				c.cl.refused(t, c.name+": write a verdict or the heartbeat ("+op+")", subj)
			}
		}
		for _, subj := range []string{
			"$JS.API.STREAM.DELETE." + policyKV, "$JS.API.STREAM.PURGE." + policyKV,
			"$JS.API.STREAM.UPDATE." + policyKV, "$JS.API.STREAM.MSG.DELETE." + policyKV,
			"$JS.API.STREAM.CREATE." + policyKV,
			"$JS.API.CONSUMER.CREATE." + policyKV + ".spy", // no filter in the subject: any filter in the body
			// The ledger's policy endpoints: nobody but operators and the
			// ledger may even ask (and the ledger checks the signature).
			"ocserv.ledger.policy-set", "ocserv.ledger.policy-reset", "ocserv.ledger.policy-delete",
			// Notices are the ledger's.
			"ocserv.notices.quota",
		} {
			if c.name == "alice" && strings.HasPrefix(subj, "ocserv.ledger.") {
				continue // an operator may ask; the ledger checks her key's role (TestCtlPolicy)
			}
			if err := c.cl.nc.PublishRequest(subj, c.cl.nc.NewRespInbox(), []byte(`{"config":{"name":"`+policyKV+`"}}`)); err != nil {
				t.Fatal(err)
			}
			c.cl.refused(t, c.name+": change the bucket or ask the ledger", subj)
		}
		// Watching the bucket's subjects directly (beside a consumer).
		if _, err := c.cl.nc.SubscribeSync("$KV." + pbucket.DefaultName + ".>"); err != nil {
			t.Fatal(err)
		}
		c.cl.refused(t, c.name+": subscribe to the bucket's subjects", "$KV."+pbucket.DefaultName+".>")
	}

	// The same through nats.go, as the command service (which may read
	// the bucket): every change is an error, nothing is done.
	short := func() context.Context { return tctx(t, 2*time.Second) }
	cjs, _ := jetstream.New(cmdr.nc)
	kv, err := cjs.KeyValue(short(), pbucket.DefaultName)
	if err != nil {
		t.Fatalf("vpn1's command service looking the verdicts bucket up: %v", err)
	}
	if _, err := kv.Put(short(), pbucket.Key("erin"), forged); err == nil {
		t.Error("vpn1's command service wrote erin's verdict")
	}
	if _, err := kv.Put(short(), pbucket.HeartbeatKey, []byte(`{"time":"2030-01-01T00:00:00Z"}`)); err == nil {
		t.Error("vpn1's command service forged the heartbeat")
	}
	if err := kv.Delete(short(), pbucket.Key("erin")); err == nil {
		t.Error("vpn1's command service deleted erin's verdict")
	}
	if err := kv.Purge(short(), pbucket.Key("erin")); err == nil {
		t.Error("vpn1's command service purged erin's verdict")
	}
	if err := cjs.DeleteKeyValue(short(), pbucket.DefaultName); err == nil {
		t.Error("vpn1's command service deleted the verdicts bucket")
	}
	// The shipper's user has no right on the bucket at all.
	hjs, _ := jetstream.New(host.nc)
	if _, err := hjs.KeyValue(short(), pbucket.DefaultName); err == nil {
		t.Error("vpn1's shipper user looked the verdicts bucket up")
	}
	host.refused(t, "vpn1: look the verdicts bucket up", "$JS.API.STREAM.INFO."+policyKV)
}
