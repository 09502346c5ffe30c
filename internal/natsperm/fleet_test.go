package natsperm

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/console"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/syncbuf"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/api"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ingest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
	"github.com/ocserv-telemetry/ocserv-telemetry/livestate"
	"github.com/ocserv-telemetry/ocserv-telemetry/natsjs"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
	pbucket "github.com/ocserv-telemetry/ocserv-telemetry/policy/bucket"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/engine"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

const (
	stream   = "OCSERV_EVENTS"
	bucket   = "ocserv_state"
	kvStream = "KV_" + bucket
	durable  = "ocserv_ledger"
)

// ledgerSide is the ledger as the documented "ledger" user: the real
// consumer into SQLite and the real query service.
type ledgerSide struct {
	store *sqlite.Store
	cons  *ingest.Consumer
	conn  *natsjs.Conn
	log   *syncbuf.Buffer
	// eng is the policy engine (LEDGER_POLICY=on), run by runPolicy; the
	// query service's policy endpoints are wired to it from the start.
	eng *engine.Engine
}

// startLedger starts the ledger's consumer and query service as the
// ledger user; policyKey is its LEDGER_POLICY_KEY, whose commands to hosts
// are answered under the console's inbox prefix, as cmd/ledger sets it up.
func startLedger(t *testing.T, url, keysFile string, policyKey nkeys.KeyPair) *ledgerSide {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger.db")
	if _, err := sqlite.Migrate(ctx, path); err != nil {
		t.Fatal(err)
	}
	store, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	l := &ledgerSide{store: store, log: &syncbuf.Buffer{}}
	log := slog.New(slog.NewTextHandler(l.log, nil))
	l.conn, err = natsjs.Connect(config.NATS{URLs: []string{url}, User: "ledger", Password: "ledger-secret", InboxPrefix: "_INBOX_ledger"},
		natsjs.Options{Name: "ledger"}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.conn.Close)
	l.cons = ingest.New(ingest.Options{JS: l.conn.JS, Stream: stream, Prefix: "ocserv", Durable: durable, Store: store, Log: log})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); l.cons.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })

	trusted, err := opauth.LoadTrusted(keysFile)
	if err != nil {
		t.Fatal(err)
	}
	nonces, err := opauth.OpenNonceCache(filepath.Join(dir, "nonces"), opauth.NonceLimits{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nonces.Close() })
	l.eng = engine.New(engine.Options{
		Store: store,
		Bucket: func(ctx context.Context) (*pbucket.Publisher, error) {
			kv, _, err := pbucket.Ensure(ctx, l.conn.JS, pbucket.DefaultName, true)
			if err != nil {
				return nil, err
			}
			return &pbucket.Publisher{KV: kv, Instance: "ledger-1"}, nil
		},
		Enforcer: &engine.CommandEnforcer{Client: &cmdsvc.Client{NC: l.conn.NC, Prefix: "ocserv", Key: policyKey, TTL: 15 * time.Second,
			InboxPrefix: "_OPS.console"}},
		NC: l.conn.NC, Prefix: "ocserv", Heartbeat: 200 * time.Millisecond, Log: log.With("part", "policy"),
	})
	svc, err := api.Start(api.Options{NC: l.conn.NC, Prefix: "ocserv", Store: store, InboxPrefixes: []string{"_OPS"},
		Policy:   &api.PolicyHooks{Touch: l.eng.Touch, SweepSoon: l.eng.SweepSoon, Settle: l.eng.Settle},
		Verifier: &opauth.Verifier{Trusted: trusted, Nonces: nonces, MaxSkew: 30 * time.Second, MaxValidity: 5 * time.Minute}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	return l
}

func (l *ledgerSide) checksum(t *testing.T) map[string]string {
	t.Helper()
	sum, err := l.store.Checksum(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// caughtUp waits until the ledger has committed the stream's last message.
func (l *ledgerSide) caughtUp(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	var last uint64
	waitFor(t, "the ledger to commit the stream's last message", 30*time.Second, func() bool {
		st, err := js.Stream(context.Background(), stream)
		if err != nil {
			return false
		}
		last = st.CachedInfo().State.LastSeq
		return l.cons.Status().Position.StreamSeq == last
	})
	return last
}

// consoleSide is what the ledger's web console does on NATS, on the
// ledger's connection: the live view, its audit spool shipped, commands.
type consoleSide struct {
	key   nkeys.KeyPair
	cmdr  *client // vpn1's command service's connection (CMD_NATS_USER, CMD_NATS_INBOX_PREFIX)
	live  *console.Live
	audit *console.SpoolAuditor
}

func (c *consoleSide) seesServers(ids ...string) bool {
	v := c.live.Servers()
	for _, id := range ids {
		if !slices.ContainsFunc(v, func(s console.ServerLive) bool { return s.ServerID == id && len(s.Sessions) > 0 && s.Claim != nil }) {
			return false
		}
	}
	return true
}

// startConsole starts vpn1's command service as vpn1-commander (the
// operator's and the console's keys trusted read-write, the ledger's
// policy key with the role policy), and the console's live view and
// audit delivery as the ledger.
func startConsole(t *testing.T, l *ledgerSide, vpn1 *site, key nkeys.KeyPair, policyPub string) *consoleSide {
	t.Helper()
	c := &consoleSide{key: key}
	cpub, _ := c.key.PublicKey()
	dir := t.TempDir()
	trusted := filepath.Join(dir, "operators.keys")
	if err := os.WriteFile(trusted, []byte("read-write "+vpn1.opPub+" alice\nread-write "+cpub+" console\npolicy "+policyPub+" ledger-policy\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tr, err := opauth.LoadTrusted(trusted)
	if err != nil {
		t.Fatal(err)
	}
	nonces, err := opauth.OpenNonceCache(filepath.Join(dir, "nonces"), opauth.NonceLimits{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nonces.Close() })
	sp, err := spool.Open(filepath.Join(vpn1.dir, "spool"), spool.Options{LockWait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	xk, _ := nkeys.CreateCurveKeys()
	cmdr := connect(t, vpn1.srv, "vpn1-commander", "_INBOX_vpn1_cmd")
	c.cmdr = cmdr
	svc, err := cmdsvc.Start(cmdsvc.Options{NC: cmdr.nc, Prefix: "ocserv", ServerID: "vpn1", XKey: xk, Spool: sp,
		Verifier:      &opauth.Verifier{Trusted: tr, Nonces: nonces, MaxSkew: 30 * time.Second, MaxValidity: 5 * time.Minute},
		Occtl:         &ocserv.Occtl{Path: vpn1.occtl, Timeout: 10 * time.Second},
		InboxPrefixes: []string{"_OPS"}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Build: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		svc.Stop()
		if v := cmdr.violations(); len(v) != 0 {
			t.Errorf("vpn1's command service hit permissions violations: %q", v)
		}
	})

	log := slog.New(slog.NewTextHandler(l.log, nil))
	c.live = console.NewLive(log, nil)
	if c.audit, err = console.OpenSpoolAuditor(filepath.Join(dir, "audit-spool"), "console"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { c.live.Run(ctx, l.conn.NC, l.conn.JS, "ocserv", bucket); done <- struct{}{} }()
	go func() { c.audit.Ship(ctx, l.conn, "ocserv", log); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done; c.audit.Close() })
	return c
}

// TestDocumentedFleetPermissions runs the fleet of docs/nats.md under its
// own permissions block: every part works with the rights it is given,
// and vpn1's credentials, taken over, are refused every forbidden action
// by the server itself while the ledger's tables stay as they were.
func TestDocumentedFleetPermissions(t *testing.T) {
	s := startServer(t)

	// Setup, once: a shipper with the setup user's credentials, a
	// throwaway spool and NATS_CREATE_STREAMS=on creates the streams and
	// the bucket, as the page says; then it is stopped.
	setup := newSite(t, s, "setup", "setup", "NATS_CREATE_STREAMS=on", "CMD_OCCTL=/nonexistent/occtl")
	sp := setup.ship()
	sc := connect(t, s, "setup", "_INBOX_setup")
	sjs, _ := jetstream.New(sc.nc)
	waitFor(t, "the setup shipper to create both streams and the bucket", 30*time.Second, func() bool {
		for _, name := range []string{stream, "OCSERV_SNAPSHOTS", kvStream} {
			if _, err := sjs.Stream(context.Background(), name); err != nil {
				return false
			}
		}
		return true
	})
	sp.stop(t)
	for _, want := range []string{"stream created", "bucket created"} {
		if !strings.Contains(sp.out.String(), want) {
			t.Errorf("the setup shipper's log does not say %q:\n%s", want, sp.out.String())
		}
	}
	if kst, err := sjs.Stream(context.Background(), kvStream); err != nil || kst.CachedInfo().Config.AllowRollup {
		t.Errorf("the bucket the shipper created allows rollups (or: %v): any host could wipe it", err)
	}

	// The operator's key, read-only, and the console's, read-write (its
	// policy changes), trusted by the ledger; the ledger's policy key.
	opKey, _ := nkeys.CreateUser()
	opPub, _ := opKey.PublicKey()
	consoleKey, _ := nkeys.CreateUser()
	consolePub, _ := consoleKey.PublicKey()
	policyKey, _ := nkeys.CreateUser()
	policyPub, _ := policyKey.PublicKey()
	keys := filepath.Join(t.TempDir(), "operators.keys")
	if err := os.WriteFile(keys, []byte("ro "+opPub+" alice\nread-write "+consolePub+" console\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := startLedger(t, s.ClientURL(), keys, policyKey)

	// Two hosts: a session each through the real hook, delivered by the
	// real shipper with its own user; occtl's workers become snapshots,
	// the latest state in the bucket and reconcile events.
	vpn1, vpn2 := newSite(t, s, "vpn1", "vpn1"), newSite(t, s, "vpn2", "vpn2")
	vpn1.opPub = opPub
	vpn1.hook("connect", "carol", 101)
	vpn1.hook("disconnect", "carol", 101)
	vpn2.hook("connect", "dave", 202)
	vpn2.hook("disconnect", "dave", 202)
	p1, p2 := vpn1.ship(), vpn2.ship()

	dash := connect(t, s, "dashboard", "_INBOX_dash")
	djs, _ := jetstream.New(dash.nc)
	live := make(chan *nats.Msg, 1024)
	if _, err := dash.nc.ChanSubscribe("ocserv.events.>", live); err != nil {
		t.Fatal(err)
	}
	var dkv jetstream.KeyValue
	waitFor(t, "both servers' latest users and claims in the bucket, read by the dashboard", 30*time.Second, func() bool {
		var err error
		if dkv == nil {
			if dkv, err = djs.KeyValue(context.Background(), bucket); err != nil {
				return false
			}
		}
		for _, id := range []string{"vpn1", "vpn2"} {
			if snap, err := livestate.ReadLatest(context.Background(), dkv, id, "users"); err != nil || snap.Count != 2 {
				return false
			}
			if _, err := dkv.Get(context.Background(), livestate.ClaimKey(id)); err != nil {
				return false
			}
		}
		return true
	})

	// alice asks the ledger, signed, under her own inbox prefix.
	alice := connect(t, s, "alice", "_OPS.alice")
	q := &api.Client{NC: alice.nc, Prefix: "ocserv", Key: opKey}
	waitFor(t, "both hook sessions in the ledger, answered to alice", 30*time.Second, func() bool {
		for _, c := range []struct{ user, server string }{{"carol", "vpn1"}, {"dave", "vpn2"}} {
			var h api.HistoryResult
			rep, err := q.Query(context.Background(), "history", map[string]string{"user": c.user}, &h)
			if err != nil || !rep.OK || len(h.Sessions) != 1 || h.Sessions[0].ServerID != c.server || h.Sessions[0].BytesOut != 2000 {
				return false
			}
		}
		return true
	})
	select {
	case <-live:
	case <-time.After(10 * time.Second):
		t.Error("the dashboard received no live event")
	}

	// vpn1's command service as its own user answers alice and the
	// console (on the ledger's connection, answers under _OPS.console);
	// the console's live view and audit delivery run as the ledger.
	csl := startConsole(t, l, vpn1, consoleKey, policyPub)
	for name, c := range map[string]*cmdsvc.Client{
		"alice":       {NC: alice.nc, Prefix: "ocserv", Key: opKey},
		"the console": {NC: l.conn.NC, Prefix: "ocserv", Key: csl.key, InboxPrefix: "_OPS.console"},
	} {
		rep, err := c.DoAs(tctx(t, 10*time.Second), "admin", "vpn1", "users", nil)
		if err != nil || !rep.OK {
			t.Fatalf("%s's command to vpn1: %+v %v", name, rep, err)
		}
	}
	// The same with the real ctl, as alice on her laptop: discovery of the
	// command services, a ledger query, a tail of the stream.
	seed, _ := opKey.Seed()
	dir := t.TempDir()
	ctlEnv := filepath.Join(dir, "ctl.env")
	if err := os.WriteFile(filepath.Join(dir, "alice.nk"), seed, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ctlEnv, []byte("NATS_URL="+s.ClientURL()+"\nNATS_USER=alice\nNATS_PASSWORD=alice-secret\n"+
		"CTL_INBOX_PREFIX=_OPS.alice\nOPERATOR_KEY="+filepath.Join(dir, "alice.nk")+"\nCTL_TIMEOUT=10s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := ctl(t, ctlEnv, "servers", "--json"); !strings.Contains(out, `"vpn1"`) {
		t.Errorf("ctl servers as alice does not list vpn1:\n%s", out)
	}
	var hist api.HistoryResult
	if out := ctl(t, ctlEnv, "history", "--user", "carol", "--json"); json.Unmarshal([]byte(out), &hist) != nil ||
		len(hist.Sessions) != 1 || hist.Sessions[0].ServerID != "vpn1" {
		t.Errorf("ctl history as alice:\n%s", out)
	}
	if out := ctl(t, ctlEnv, "tail", "-n", "1", "--since", "1h", "--json"); !strings.Contains(out, `"event_id"`) {
		t.Errorf("ctl tail as alice:\n%s", out)
	}

	if err := csl.audit.Audit(cmdsvc.Audit{Phase: cmdsvc.PhaseDone, Action: "login", Actor: "admin", OK: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the console's live view of both servers and its audit in the ledger", 30*time.Second, func() bool {
		page, err := l.store.Audit(context.Background(), ledger.AuditQuery{Server: "console"})
		return err == nil && len(page.Items) == 1 && csl.live.Problem() == "" && csl.seesServers("vpn1", "vpn2")
	})

	// Quiet: the shippers stop (releasing their claims), the ledger
	// commits everything; what follows is the attacker's traffic alone.
	p1.stop(t)
	p2.stop(t)
	ljs := l.conn.JS
	lastSeq := l.caughtUp(t, ljs)
	before := l.checksum(t)
	consBefore, err := ljs.Consumer(context.Background(), stream, durable)
	if err != nil {
		t.Fatalf("the ledger's consumer: %v", err)
	}
	created := consBefore.CachedInfo().Created

	// Every part had the rights it needed.
	for name, out := range map[string]string{"vpn1's shipper": p1.out.String(), "vpn2's shipper": p2.out.String(), "the ledger": l.log.String()} {
		if strings.Contains(out, "Permissions Violation") {
			t.Errorf("%s hit a permissions violation: the documented rights are short:\n%s", name, out)
		}
	}
	for name, c := range map[string]*client{"alice": alice, "the dashboard": dash} {
		if v := c.violations(); len(v) != 0 {
			t.Errorf("%s hit permissions violations: %q", name, v)
		}
	}

	attack(t, s)
	// alice cannot reach the ledger's discovery handlers, which would
	// answer with the ledger's rights wherever she pointed them.
	for _, subj := range []string{"$SRV.INFO", "$SRV.PING", "$SRV.INFO.ocserv-ledger", "$SRV.STATS.ocserv-ledger"} {
		if err := alice.nc.PublishRequest(subj, "ocserv.events.console.audit", nil); err != nil {
			t.Fatal(err)
		}
		alice.refused(t, "alice aiming the ledger's discovery", subj)
	}
	// The dashboard reads; it changes nothing and asks no service.
	for _, subj := range []string{"ocserv.events.vpn1.connect", "$KV.ocserv_state.vpn1.claim", "ocserv.cmd.vpn1.kick",
		"ocserv.ledger.history", "$JS.API.STREAM.DELETE.OCSERV_EVENTS", "$JS.API.STREAM.PURGE.KV_ocserv_state"} {
		if err := dash.nc.PublishRequest(subj, dash.nc.NewRespInbox(), []byte("{}")); err != nil {
			t.Fatal(err)
		}
		dash.refused(t, "the dashboard", subj)
	}

	// Stored, but rejected by the ledger: an event under vpn1's own
	// subject whose body says vpn2 (the product's check on top).
	host := connect(t, s, "vpn1", "_INBOX_vpn1")
	hjs, _ := jetstream.New(host.nc)
	forged := ledgertest.NewGen("vpn2", &ledgertest.Seq{}).Connect(ledgertest.UID(), ledgertest.Conn{User: "dave", IPReal: "203.0.113.66", VPN4: "10.8.0.66"}, time.Now())
	if _, err := hjs.Publish(tctx(t, 5*time.Second), "ocserv.events.vpn1.connect", forged.Data); err != nil {
		t.Fatalf("vpn1 publishing under its own subject: %v", err)
	}
	if got := l.caughtUp(t, ljs); got != lastSeq+1 {
		t.Errorf("the stream grew by %d messages during the attack, want 1 (the forged body under vpn1's own subject)", got-lastSeq)
	}
	if r := l.cons.Status().Rejected; r != 1 {
		t.Errorf("the ledger rejected %d events, want 1 (subject vpn1, body vpn2)", r)
	}
	after := l.checksum(t)
	for _, table := range slices.Sorted(maps.Keys(before)) {
		if table == "rejected_events" {
			if before[table] == after[table] {
				t.Error("rejected_events unchanged: the forged body was not kept as a rejected row")
			}
			continue
		}
		if before[table] != after[table] {
			t.Errorf("ledger table %s changed during the attack", table)
		}
	}
	var h api.HistoryResult
	if rep, err := q.Query(context.Background(), "history", map[string]string{"user": "dave"}, &h); err != nil || !rep.OK || len(h.Sessions) != 1 {
		t.Errorf("dave's sessions after the attack: %+v %v", h.Sessions, err)
	}

	// An operator's user (read-only operators' too: ctl tail needs
	// consumer rights on the events stream, by any name) against the
	// ledger's durable: deleting it, pulling its messages (each held
	// for the ack wait, so a loop stalls ingest and policy), or
	// re-creating it with a narrower filter (the ledger would skip,
	// and commit past, every event outside it: the audit trail, say).
	ledgerConsumer := map[string]string{
		"$JS.API.CONSUMER.DELETE.OCSERV_EVENTS.ocserv_ledger":   "",
		"$JS.API.CONSUMER.MSG.NEXT.OCSERV_EVENTS.ocserv_ledger": `{"batch":1000,"expires":1000000000}`,
		"$JS.API.CONSUMER.CREATE.OCSERV_EVENTS.ocserv_ledger.ocserv.events.*.connect": `{"stream_name":"OCSERV_EVENTS","config":{"name":"ocserv_ledger","durable_name":"ocserv_ledger",` +
			`"filter_subject":"ocserv.events.*.connect","ack_policy":"explicit","deliver_policy":"all","max_deliver":-1}}`,
		"$JS.API.CONSUMER.CREATE.OCSERV_EVENTS.ocserv_ledger": `{"stream_name":"OCSERV_EVENTS","config":{"name":"ocserv_ledger","durable_name":"ocserv_ledger",` +
			`"filter_subjects":["ocserv.events.*.connect"],"ack_policy":"explicit","deliver_policy":"all","max_deliver":-1}}`,
	}
	for _, subj := range slices.Sorted(maps.Keys(ledgerConsumer)) {
		if err := alice.nc.PublishRequest(subj, alice.nc.NewRespInbox(), []byte(ledgerConsumer[subj])); err != nil {
			t.Fatal(err)
		}
		alice.refused(t, "an operator's user aiming at the ledger's consumer", subj)
	}
	if info, err := ljs.Consumer(context.Background(), stream, durable); err != nil || info.CachedInfo().Config.FilterSubject != "ocserv.events.>" {
		t.Errorf("the ledger's consumer after the operator's attempts: %v %+v", err, info)
	}

	// The stream, the bucket and the ledger's consumer are as they were.
	cons, err := ljs.Consumer(context.Background(), stream, durable)
	if err != nil || !cons.CachedInfo().Created.Equal(created) {
		t.Errorf("the ledger's consumer was deleted or recreated: %v", err)
	}
	for _, id := range []string{"vpn1", "vpn2"} {
		if snap, err := livestate.ReadLatest(context.Background(), dkv, id, "users"); err != nil || snap.ServerID != id || snap.Count != 2 {
			t.Errorf("%s's latest users after the attack: %+v %v", id, snap, err)
		}
	}

	// alice tails the stream as ctl tail does (an ordered consumer).
	ajs, _ := jetstream.New(alice.nc)
	tail, err := ajs.OrderedConsumer(tctx(t, 10*time.Second), stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		t.Fatalf("alice's tail: %v", err)
	}
	b, err := tail.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatalf("alice's tail: %v", err)
	}
	got := 0
	for range b.Messages() {
		got++
	}
	if got != 1 {
		t.Errorf("alice's tail fetched %d messages, want 1", got)
	}

	// What the ledger's consumer rights allow beyond its durable, since
	// the name cannot be narrowed: a replay (an ordered consumer nats.go
	// names) rebuilds the same tables; it may also delete another
	// consumer on the events stream (an operator's), as the page says.
	rpath := filepath.Join(t.TempDir(), "replay.db")
	if _, err := sqlite.Migrate(context.Background(), rpath); err != nil {
		t.Fatal(err)
	}
	rstore, err := sqlite.Open(context.Background(), rpath, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rstore.Close()
	if _, err := ingest.Replay(tctx(t, 30*time.Second), ingest.ReplayOptions{JS: ljs, Stream: stream, Prefix: "ocserv", Store: rstore}); err != nil {
		t.Fatalf("ledger replay as the ledger user: %v", err)
	}
	if rsum, err := rstore.Checksum(context.Background()); err != nil || !maps.Equal(rsum, l.checksum(t)) {
		t.Errorf("the replayed ledger differs from the live one: %v", err)
	}
	other, err := ajs.CreateConsumer(tctx(t, 5*time.Second), stream, jetstream.ConsumerConfig{InactiveThreshold: time.Minute})
	if err != nil {
		t.Fatalf("alice's consumer: %v", err)
	}
	if err := ljs.DeleteConsumer(tctx(t, 5*time.Second), stream, other.CachedInfo().Name); err != nil {
		t.Errorf("the ledger deleting an operator's consumer on the events stream (the page says it can): %v", err)
	}

	// Fleet policy (LEDGER_POLICY=on, vpn1 with POLICY=on) under the same
	// block: docs/policy.md's bucket, kicks and console actions.
	fleetPolicy(t, s, l, vpn1, csl)

	if v := l.log.String(); strings.Contains(v, "Permissions Violation") {
		t.Errorf("the ledger hit a permissions violation:\n%s", v)
	}
	for _, v := range alice.violations() {
		if !strings.Contains(v, "$SRV.") && !strings.Contains(v, ".OCSERV_EVENTS.ocserv_ledger") {
			t.Errorf("alice hit a permissions violation: %q", v)
		}
	}
}

// attack tries, with vpn1's two users, everything docs/nats.md says a
// taken-over host cannot do; the server must refuse each one itself.
func attack(t *testing.T, s *server.Server) {
	host := connect(t, s, "vpn1", "_INBOX_vpn1")
	cmdr := connect(t, s, "vpn1-commander", "_OPS.vpn1")
	hjs, _ := jetstream.New(host.nc)
	victim := ledgertest.NewGen("vpn2", &ledgertest.Seq{}).Connect(ledgertest.UID(), ledgertest.Conn{User: "dave", IPReal: "203.0.113.7", VPN4: "10.8.0.7"}, time.Now())

	subscribe := map[string][]string{
		"read other servers' events":                  {"ocserv.events.>", "ocserv.events.vpn2.>", "ocserv.snapshots.>", "ocserv.snapshots.vpn2.>"},
		"read others' answers and the ledger's pulls": {"_INBOX.>", "_INBOX_ledger.>", "_INBOX_vpn2.>", "_OPS.>", "_OPS.alice.>"},
		"read the bucket's changes":                   {"$KV.ocserv_state.>", "$KV.ocserv_state.vpn2.>"},
		"receive operators' queries":                  {"ocserv.ledger.>", "ocserv.ledger.history"},
		"receive another host's commands":             {"ocserv.cmd.vpn2.>", "ocserv.cmd.>"},
	}
	publish := map[string][]string{
		"publish events as another server": {"ocserv.events.vpn2.connect", "ocserv.events.vpn2.audit", "ocserv.snapshots.vpn2.users"},
		"read other servers' events through the stream": {
			"$JS.API.CONSUMER.CREATE.OCSERV_EVENTS.spy.ocserv.events.vpn2.>",
			"$JS.API.CONSUMER.CREATE.OCSERV_EVENTS.spy",
			"$JS.API.CONSUMER.DURABLE.CREATE.OCSERV_EVENTS.spy",
			"$JS.API.STREAM.MSG.GET.OCSERV_EVENTS",
			"$JS.API.DIRECT.GET.OCSERV_EVENTS",
			"$JS.API.CONSUMER.MSG.NEXT.OCSERV_EVENTS.ocserv_ledger",
		},
		"write, delete or purge another server's keys or claim": {"$KV.ocserv_state.vpn2.claim", "$KV.ocserv_state.vpn2.users", "$KV.ocserv_state.setup.claim"},
		"read another server's keys": {
			"$JS.API.DIRECT.GET.KV_ocserv_state.$KV.ocserv_state.vpn2.users",
			"$JS.API.DIRECT.GET.KV_ocserv_state",
			"$JS.API.STREAM.MSG.GET.KV_ocserv_state",
			"$JS.API.CONSUMER.CREATE.KV_ocserv_state.spy.$KV.ocserv_state.>",
		},
		"delete, purge or change the stream or the bucket": {
			"$JS.API.STREAM.DELETE.OCSERV_EVENTS", "$JS.API.STREAM.PURGE.OCSERV_EVENTS",
			"$JS.API.STREAM.MSG.DELETE.OCSERV_EVENTS", "$JS.API.STREAM.UPDATE.OCSERV_EVENTS",
			"$JS.API.STREAM.DELETE.KV_ocserv_state", "$JS.API.STREAM.PURGE.KV_ocserv_state",
			"$JS.API.STREAM.UPDATE.KV_ocserv_state",
		},
		"create a stream": {"$JS.API.STREAM.CREATE.OCSERV_EVENTS", "$JS.API.STREAM.CREATE.SPY"},
		"delete or recreate the ledger's consumer, or ack for it": {
			"$JS.API.CONSUMER.DELETE.OCSERV_EVENTS.ocserv_ledger",
			"$JS.API.CONSUMER.CREATE.OCSERV_EVENTS.ocserv_ledger.ocserv.events.>",
			"$JS.ACK.OCSERV_EVENTS.ocserv_ledger.1.1.1.1.0",
		},
		"answer operators with forged data":        {"_OPS.alice.forged", "_OPS.alice"},
		"query the ledger or command another host": {"ocserv.ledger.history", "ocserv.cmd.vpn2.kick", "$SRV.INFO"},
	}
	for _, c := range []struct {
		name string
		cl   *client
	}{{"vpn1", host}, {"vpn1-commander", cmdr}} {
		for what, subjects := range subscribe {
			for _, subj := range subjects {
				if _, err := c.cl.nc.SubscribeSync(subj); err != nil {
					t.Fatal(err)
				}
				c.cl.refused(t, c.name+": "+what, subj)
			}
		}
		for what, subjects := range publish {
			if c.name == "vpn1-commander" && what == "answer operators with forged data" {
				continue // its answers go there: see the page
			}
			for _, subj := range subjects {
				m := nats.NewMsg(subj)
				m.Reply = c.cl.nc.NewRespInbox()
				m.Data = victim.Data
				if strings.HasPrefix(subj, "$KV.") {
					m.Header.Set("KV-Operation", "DEL")
				}
				if err := c.cl.nc.PublishMsg(m); err != nil {
					t.Fatal(err)
				}
				c.cl.refused(t, c.name+": "+what, subj)
			}
		}
	}

	// The same through nats.go's own calls: errors, and nothing done.
	short := func() context.Context { return tctx(t, 2*time.Second) }
	if _, err := hjs.Publish(short(), "ocserv.events.vpn2.connect", victim.Data); err == nil {
		t.Error("vpn1 published an event as vpn2")
	}
	if err := hjs.DeleteStream(short(), stream); err == nil {
		t.Error("vpn1 deleted the events stream")
	}
	if err := hjs.DeleteConsumer(short(), stream, durable); err == nil {
		t.Error("vpn1 deleted the ledger's consumer")
	}
	if _, err := hjs.CreateConsumer(short(), stream, jetstream.ConsumerConfig{FilterSubject: "ocserv.events.vpn2.>"}); err == nil {
		t.Error("vpn1 made a consumer on the events stream")
	}
	hkv, err := hjs.KeyValue(short(), bucket)
	if err != nil {
		t.Fatalf("vpn1 looking its bucket up: %v", err)
	}
	if _, err := hkv.Get(short(), "vpn2.users"); err == nil {
		t.Error("vpn1 read vpn2's users from the bucket")
	}
	if _, err := hkv.Put(short(), "vpn2.claim", []byte(`{"server_id":"vpn2","instance":"evil"}`)); err == nil {
		t.Error("vpn1 wrote vpn2's claim")
	}
	if err := hkv.Delete(short(), "vpn2.users"); err == nil {
		t.Error("vpn1 deleted vpn2's users")
	}
	if err := hkv.Purge(short(), "vpn2.users"); err == nil {
		t.Error("vpn1 purged vpn2's users")
	}
	// Its own key and subjects it may write, but a rollup there is
	// refused by each stream (rollups off), not by a permission.
	for _, subj := range []string{"$KV.ocserv_state.vpn1.users", "ocserv.events.vpn1.connect", "ocserv.snapshots.vpn1.users"} {
		m := nats.NewMsg(subj)
		m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupAll)
		m.Data = []byte("{}")
		if _, err := hjs.PublishMsg(short(), m); err == nil || !strings.Contains(strings.ToLower(err.Error()), "rollup") {
			t.Errorf("vpn1's rollup on %s: %v, want refused for rollups", subj, err)
		}
	}
}
