package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/bucket"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/webhook"
)

// recorder is an Enforcer that records the commands (the real command
// service's side is tested in cmdsvc and end to end in e2e/).
type recorder struct {
	mu   sync.Mutex
	cmds []string
	fail map[string]bool // server → refuse everything
}

func (r *recorder) add(server, s string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail[server] {
		return fmt.Errorf("%s: no responders", server)
	}
	r.cmds = append(r.cmds, server+" "+s)
	return nil
}

func (r *recorder) Kick(_ context.Context, server, user, reason string, d time.Duration) error {
	return r.add(server, "kick "+user+" for "+d.String())
}
func (r *recorder) Unkick(_ context.Context, server, user string) error {
	return r.add(server, "unkick "+user)
}
func (r *recorder) Disconnect(_ context.Context, server string, id int64, user string) error {
	return r.add(server, fmt.Sprintf("disconnect id %d if_user %s", id, user))
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.cmds)
}

type bed struct {
	t     *testing.T
	st    ledger.Store
	kv    jetstream.KeyValue
	nc    *nats.Conn
	rec   *recorder
	eng   *Engine
	seq   *ledgertest.Seq
	gens  map[string]*ledgertest.Gen
	stop  func()
	opts  Options
	srvJS jetstream.JetStream
}

func newBed(t *testing.T, mod func(*Options)) *bed {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	if _, err := sqlite.Migrate(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := natstest.Run(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	kv, _, err := bucket.Ensure(context.Background(), js, bucket.DefaultName, true)
	if err != nil {
		t.Fatal(err)
	}
	b := &bed{t: t, st: st, kv: kv, nc: nc, rec: &recorder{fail: map[string]bool{}}, seq: &ledgertest.Seq{}, gens: map[string]*ledgertest.Gen{}, srvJS: js}
	b.opts = Options{Store: st, Enforcer: b.rec, NC: nc, Prefix: "ocserv", Heartbeat: 100 * time.Millisecond,
		NewestHold: 5 * time.Minute, Retry: 50 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if mod != nil {
		mod(&b.opts)
	}
	b.start()
	return b
}

func (b *bed) start() {
	o := b.opts
	o.Publisher = &bucket.Publisher{KV: b.kv, Instance: "test"}
	b.eng = New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.eng.Run(ctx); close(done) }()
	b.stop = func() { cancel(); <-done }
	b.t.Cleanup(b.stop)
	b.until("the engine active", func() bool { return b.eng.Stats().Sweeps > 0 })
}

func (b *bed) gen(server string) *ledgertest.Gen {
	g := b.gens[server]
	if g == nil {
		g = ledgertest.NewGen(server, b.seq)
		b.gens[server] = g
	}
	return g
}

// apply applies events as the ledger's consumer does, and touches the
// users the batch changed, as cmd/ledger wires it.
func (b *bed) apply(msgs ...ledger.Message) {
	b.t.Helper()
	r, err := b.st.Apply(context.Background(), msgs)
	if err != nil {
		b.t.Fatal(err)
	}
	b.eng.Touch(r.Users...)
}

func (b *bed) put(p policy.Policy) {
	b.t.Helper()
	if err := b.st.PutPolicy(context.Background(), p, time.Now()); err != nil {
		b.t.Fatal(err)
	}
	if p.Scope == policy.ScopeUser {
		b.eng.Touch(p.Name)
	} else {
		b.eng.SweepSoon()
	}
}

func (b *bed) until(what string, cond func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out waiting for %s (commands %v, stats %+v)", what, b.rec.seen(), b.eng.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// verdict is the user's verdict in the bucket (nil: no key).
func (b *bed) verdict(user string) *policy.Verdict {
	e, err := b.kv.Get(context.Background(), bucket.Key(user))
	if err != nil {
		return nil
	}
	v, err := bucket.Decode(user, e.Value())
	if err != nil {
		b.t.Fatalf("bucket value: %v", err)
	}
	return &v
}

// settle waits until everything touched so far was evaluated.
func (b *bed) settle() {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := b.eng.Settle(ctx); err != nil {
		b.t.Fatalf("settle: %v", err)
	}
}

func (b *bed) has(cmd string) bool { return slices.Contains(b.rec.seen(), cmd) }

func quota(user string, n int64) policy.Policy {
	return policy.Policy{Scope: policy.ScopeUser, Name: user,
		Quota: &policy.Quota{Bytes: n, Direction: policy.DirTotal, Period: policy.Period{Kind: policy.Monthly, Day: 1}}}
}

// A quota crossed by the sum of two servers' traffic denies the user,
// ends their sessions on both servers, and a reset lifts both kicks and
// deletes the verdict.
func TestQuotaAcrossServers(t *testing.T) {
	b := newBed(t, nil)
	b.put(quota("alice", 10_000))
	now := time.Now().UTC()
	ua, ub := ledgertest.UID(), ledgertest.UID()
	b.apply(b.gen("a").Connect(ua, ledgertest.Conn{User: "alice", Worker: 11}, now.Add(-time.Minute)),
		b.gen("b").Connect(ub, ledgertest.Conn{User: "alice", Worker: 22}, now.Add(-time.Minute)))
	b.apply(b.gen("a").Accounting(ua, ledgertest.Acct{Slot: 1, In: 2000, Out: 3000, Connected: now.Add(-time.Minute)}, now))
	b.settle()
	if v := b.verdict("alice"); v != nil || len(b.rec.seen()) > 0 {
		t.Fatalf("at 5000 of 10000 bytes: verdict %+v, commands %v", v, b.rec.seen())
	}
	b.apply(b.gen("b").Accounting(ub, ledgertest.Acct{Slot: 1, In: 1000, Out: 4000, Connected: now.Add(-time.Minute)}, now))
	b.until("the kicks on both servers", func() bool { return b.has("a kick alice for 10m0s") && b.has("b kick alice for 10m0s") })
	b.settle()
	v := b.verdict("alice")
	if v == nil || v.Allowed || v.Reason != policy.ReasonQuota || v.Until == nil {
		t.Fatalf("verdict %+v, want denied for the quota until the month's end", v)
	}
	kicks, _ := b.st.PolicyKicks(context.Background(), "alice")
	if len(kicks) != 2 {
		t.Fatalf("recorded kicks %+v", kicks)
	}
	// The disconnects arrive: no more commands.
	n := len(b.rec.seen())
	b.apply(b.gen("a").Disconnect(ua, 2000, 3000, 60, now.Add(time.Second)), b.gen("b").Disconnect(ub, 1000, 4000, 60, now.Add(time.Second)))
	b.settle()
	if len(b.rec.seen()) != n {
		t.Errorf("commands after the sessions ended: %v", b.rec.seen()[n:])
	}
	// Reset.
	win, _ := policy.Period{Kind: policy.Monthly, Day: 1}.Window(time.Now())
	if _, err := b.st.ResetUsage(context.Background(), ledger.UsageReset{Username: "alice", Kind: policy.KindQuota, WindowStart: win, At: time.Now(), By: "ops"}); err != nil {
		t.Fatal(err)
	}
	b.eng.Touch("alice")
	b.until("the unkicks", func() bool { return b.has("a unkick alice") && b.has("b unkick alice") })
	b.until("the verdict deleted", func() bool { return b.verdict("alice") == nil })
	b.settle()
	if kicks, _ := b.st.PolicyKicks(context.Background(), "alice"); len(kicks) != 0 {
		t.Errorf("kicks left after the lift: %+v", kicks)
	}
	stored, _ := b.st.Verdicts(context.Background())
	if _, ok := stored["alice"]; ok {
		t.Error("the stored verdict must go with the bucket's key")
	}
}

// An expiry that passes while the user is connected ends the session at
// that instant, with no event to trigger it.
func TestExpiryWhileConnected(t *testing.T) {
	b := newBed(t, nil)
	now := time.Now().UTC()
	u := ledgertest.UID()
	b.apply(b.gen("a").Connect(u, ledgertest.Conn{User: "bob", Worker: 33}, now))
	at := time.Now().Add(700 * time.Millisecond)
	b.put(policy.Policy{Scope: policy.ScopeUser, Name: "bob", Expiry: &policy.Expiry{At: at, WarnDays: -1}})
	b.until("the kick at the expiry", func() bool { return b.has("a kick bob for 10m0s") })
	if time.Now().Before(at) {
		t.Fatal("kicked before the expiry")
	}
	if v := b.verdict("bob"); v == nil || v.Reason != policy.ReasonExpired || v.Until != nil {
		t.Fatalf("verdict %+v", v)
	}
}

// Newest wins: a login on b ends the session on a (guarded by the user
// name) and holds a against the old cookie; refuse: the hosts get the
// session counts to refuse at login.
func TestSessionLimits(t *testing.T) {
	b := newBed(t, nil)
	b.put(policy.Policy{Scope: policy.ScopeUser, Name: "carol", Sessions: &policy.SessionLimit{Max: 1, OnExcess: policy.ExcessNewest}})
	now := time.Now().UTC()
	ua, ub := ledgertest.UID(), ledgertest.UID()
	b.apply(b.gen("a").Connect(ua, ledgertest.Conn{User: "carol", Worker: 41}, now.Add(-time.Minute)))
	b.settle()
	if v := b.verdict("carol"); v != nil {
		t.Errorf("newest wins never refuses at login: nothing to publish, got %+v", v)
	}
	b.apply(b.gen("b").Connect(ub, ledgertest.Conn{User: "carol", Worker: 42}, now))
	b.until("the old session ended", func() bool { return b.has("a disconnect id 41 if_user carol") })
	b.until("the hold on a", func() bool { return b.has("a kick carol for 5m0s") })
	b.settle()
	if b.has("b disconnect id 42 if_user carol") {
		t.Fatal("the newest session was ended")
	}
	page, _ := b.st.PolicyNotices(context.Background(), ledger.PolicyNoticeQuery{User: "carol"})
	if len(page.Items) != 1 || page.Items[0].Notice.Kind != policy.NoticeSessionLimit || page.Items[0].Notice.Action != "ended" {
		t.Errorf("notices %+v", page.Items)
	}

	b.put(policy.Policy{Scope: policy.ScopeUser, Name: "dave", Sessions: &policy.SessionLimit{Max: 1, OnExcess: policy.ExcessRefuse}})
	d1, d2 := ledgertest.UID(), ledgertest.UID()
	b.apply(b.gen("a").Connect(d1, ledgertest.Conn{User: "dave", Worker: 51}, now.Add(-time.Minute)))
	b.until("dave's counts", func() bool {
		v := b.verdict("dave")
		return v != nil && v.Sessions.Held["a"] == 1 && v.RefusesSession("b") && !v.RefusesSession("a")
	})
	// Back under the limit: nothing a host could refuse, the key goes.
	b.apply(b.gen("a").Disconnect(d1, 1, 1, 60, now))
	b.until("dave's key deleted", func() bool { return b.verdict("dave") == nil })
	d1 = ledgertest.UID()
	b.apply(b.gen("a").Connect(d1, ledgertest.Conn{User: "dave", Worker: 51}, now.Add(-time.Minute)))
	b.until("dave's counts again", func() bool { v := b.verdict("dave"); return v != nil && v.Sessions.Held["a"] == 1 })
	// A second session on the same server got past the hook: the newest
	// one ends.
	b.apply(b.gen("a").Connect(d2, ledgertest.Conn{User: "dave", Worker: 52}, now))
	b.until("the newest ended", func() bool { return b.has("a disconnect id 52 if_user dave") })
	if b.has("a disconnect id 51 if_user dave") || b.has("a kick dave for 5m0s") {
		t.Errorf("refuse mode ended the older session or held the server: %v", b.rec.seen())
	}
}

// Group policies reach their members; a member's own "none" overrides.
func TestGroupPolicy(t *testing.T) {
	b := newBed(t, nil)
	now := time.Now().UTC()
	for i, u := range []string{"erin", "frank"} {
		uid := ledgertest.UID()
		b.apply(b.gen("a").Connect(uid, ledgertest.Conn{User: u, Group: "guests", Worker: 60 + i}, now),
			b.gen("a").Accounting(uid, ledgertest.Acct{Slot: 1, In: 600, Out: 600, Connected: now}, now.Add(time.Second)))
	}
	b.put(policy.Policy{Scope: policy.ScopeUser, Name: "frank", Quota: &policy.Quota{Off: true}})
	b.put(policy.Policy{Scope: policy.ScopeGroup, Name: "guests",
		Quota: &policy.Quota{Bytes: 1000, Direction: policy.DirTotal, Period: policy.Period{Kind: policy.Daily}}})
	b.until("erin denied by her group's quota", func() bool { v := b.verdict("erin"); return v != nil && !v.Allowed })
	b.until("the round after", func() bool { return b.has("a kick erin for 10m0s") })
	b.settle()
	if v := b.verdict("frank"); v != nil {
		t.Errorf("frank's own quota none must override the group's: %+v", v)
	}
}

// A group's policy covers a member whose name the command service refuses
// ("jörg smith"): the verdict reaches the bucket in a form hosts accept,
// so logins are refused, but no command is sent that could only fail; the
// engine says so once.
func TestGroupMemberTheCommandServiceCannotName(t *testing.T) {
	b := newBed(t, nil)
	now := time.Now().UTC()
	const u = "jörg smith"
	uid := ledgertest.UID()
	b.apply(b.gen("a").Connect(uid, ledgertest.Conn{User: u, Group: "guests", Worker: 61}, now),
		b.gen("a").Accounting(uid, ledgertest.Acct{Slot: 1, In: 600, Out: 600, Connected: now}, now.Add(time.Second)))
	b.put(policy.Policy{Scope: policy.ScopeGroup, Name: "guests",
		Quota: &policy.Quota{Bytes: 1000, Direction: policy.DirTotal, Period: policy.Period{Kind: policy.Daily}}})
	b.until("jörg denied by his group's quota", func() bool { v := b.verdict(u); return v != nil && !v.Allowed })
	b.eng.Touch(u)
	b.settle()
	if cmds := b.rec.seen(); len(cmds) != 0 {
		t.Errorf("commands sent for a name the command service refuses: %v", cmds)
	}
	if n := b.eng.Stats().NoCommand; n != 1 {
		t.Errorf("no_command_users %d, want 1 (counted once however many rounds)", n)
	}
}

// Notices: 80% then 100%, each recorded and published once, however many
// rounds see them.
func TestNoticesOnce(t *testing.T) {
	b := newBed(t, nil)
	sub, err := b.nc.SubscribeSync("ocserv.notices.>")
	if err != nil {
		t.Fatal(err)
	}
	b.put(quota("gina", 1000))
	now := time.Now().UTC()
	u := ledgertest.UID()
	b.apply(b.gen("a").Connect(u, ledgertest.Conn{User: "gina", Worker: 71}, now))
	for i, in := range []uint64{500, 800, 850, 900, 1000, 1100} {
		b.apply(b.gen("a").Accounting(u, ledgertest.Acct{Slot: int64(i + 1), In: in, Connected: now}, now.Add(time.Duration(i+1)*time.Second)))
	}
	b.eng.SweepSoon()
	b.until("both notices", func() bool { return b.eng.Stats().Notices == 2 })
	var got []string
	for {
		m, err := sub.NextMsg(300 * time.Millisecond)
		if err != nil {
			break
		}
		var n policy.Notice
		json.Unmarshal(m.Data, &n)
		if m.Header.Get(nats.MsgIdHdr) != n.ID || !strings.HasSuffix(m.Subject, "."+n.Kind) {
			t.Errorf("notice message %s %v", m.Subject, m.Header)
		}
		got = append(got, fmt.Sprintf("%s %d", n.Kind, n.Percent))
	}
	if !slices.Equal(got, []string{"quota 80", "quota 100"}) {
		t.Fatalf("published notices %v", got)
	}
	// A restarted engine (memory lost) does not send them again.
	b.stop()
	b.start()
	b.eng.SweepSoon()
	b.settle()
	if m, err := sub.NextMsg(300 * time.Millisecond); err == nil {
		t.Fatalf("a notice sent again after a restart: %s", m.Data)
	}
}

// A restarted engine reads the bucket back (no repeated puts) and still
// lifts the kicks its predecessor put.
func TestRestartKeepsState(t *testing.T) {
	b := newBed(t, nil)
	b.put(quota("hank", 100))
	now := time.Now().UTC()
	u := ledgertest.UID()
	b.apply(b.gen("a").Connect(u, ledgertest.Conn{User: "hank", Worker: 81}, now),
		b.gen("a").Accounting(u, ledgertest.Acct{Slot: 1, In: 100, Connected: now}, now))
	b.until("the kick", func() bool { return b.has("a kick hank for 10m0s") })
	b.stop()
	b.start()
	if s := b.eng.Stats(); s.Puts != 0 {
		t.Errorf("the restarted engine put %d verdicts that were already in the bucket", s.Puts)
	}
	b.put(quota("hank", 1<<30))
	b.until("the lift after the restart", func() bool { return b.has("a unkick hank") })
}

// A server that does not answer is sent the command again (paced), and
// the others are not held up by it.
func TestUnreachableServerRetried(t *testing.T) {
	b := newBed(t, nil)
	b.rec.mu.Lock()
	b.rec.fail["b"] = true
	b.rec.mu.Unlock()
	b.put(quota("ivy", 100))
	now := time.Now().UTC()
	ua, ub := ledgertest.UID(), ledgertest.UID()
	b.apply(b.gen("a").Connect(ua, ledgertest.Conn{User: "ivy", Worker: 91}, now),
		b.gen("b").Connect(ub, ledgertest.Conn{User: "ivy", Worker: 92}, now),
		b.gen("a").Accounting(ua, ledgertest.Acct{Slot: 1, In: 100, Connected: now}, now))
	b.until("the kick on a", func() bool { return b.has("a kick ivy for 10m0s") })
	b.until("the failures counted", func() bool { return b.eng.Stats().CommandErrs >= 3 })
	b.rec.mu.Lock()
	b.rec.fail["b"] = false
	b.rec.mu.Unlock()
	b.until("the kick on b once it answers", func() bool { return b.has("b kick ivy for 10m0s") })
}

// The engine's notices reach a real HTTP receiver through the webhook
// sink, signed, each once, after the receiver failed at first.
func TestNoticesToWebhook(t *testing.T) {
	secret := []byte("s3cret")
	var mu sync.Mutex
	got := map[string]int{}
	fails := 2
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(secret, r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, time.Now(), time.Minute); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		var n policy.Notice
		json.Unmarshal(body, &n)
		got[fmt.Sprintf("%s %d", n.Kind, n.Percent)]++
	}))
	defer srv.Close()
	wake := make(chan struct{}, 1)
	b := newBed(t, func(o *Options) {
		o.Webhook = true
		o.OnNotice = func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	})
	sink := &webhook.Sink{URL: srv.URL, Secret: secret, Store: b.st, Log: b.opts.Log, Retry: func() backoff.BackOff {
		bo := backoff.NewExponentialBackOff()
		bo.InitialInterval, bo.MaxElapsedTime = time.Millisecond, 5*time.Second
		return bo
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sink.Run(ctx, wake); close(done) }()
	defer func() { cancel(); <-done }()
	b.put(quota("jo", 1000))
	now := time.Now().UTC()
	u := ledgertest.UID()
	b.apply(b.gen("a").Connect(u, ledgertest.Conn{User: "jo", Worker: 99}, now),
		b.gen("a").Accounting(u, ledgertest.Acct{Slot: 1, In: 850, Connected: now}, now))
	b.apply(b.gen("a").Accounting(u, ledgertest.Acct{Slot: 2, In: 1200, Connected: now}, now.Add(time.Second)))
	b.until("both notices delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got["quota 80"] == 1 && got["quota 100"] == 1
	})
	b.eng.SweepSoon()
	b.settle()
	sink.Pass(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got["quota 80"] != 1 || got["quota 100"] != 1 {
		t.Fatalf("deliveries %v, want each notice once", got)
	}
}

// While evaluations fail (the database is gone), no heartbeat is written:
// the hosts' mirrors go stale and say so instead of looking current.
func TestNoHeartbeatWhileFailing(t *testing.T) {
	b := newBed(t, nil)
	b.until("a heartbeat", func() bool { return b.eng.Stats().Heartbeats > 0 })
	b.st.Close()
	b.eng.Touch("alice")
	b.until("the failure noticed", func() bool { return b.eng.Stats().LastError != "" })
	e, err := b.kv.Get(context.Background(), bucket.HeartbeatKey)
	if err != nil {
		t.Fatal(err)
	}
	skipped := b.eng.Stats().HeartbeatsSkipped
	b.until("three heartbeats skipped", func() bool { return b.eng.Stats().HeartbeatsSkipped >= skipped+3 })
	if e2, _ := b.kv.Get(context.Background(), bucket.HeartbeatKey); e2.Revision() != e.Revision() {
		t.Fatalf("a heartbeat was written while evaluations fail (revision %d → %d)", e.Revision(), e2.Revision())
	}
}

// A user denied again right after a lift is kicked at once: the pause
// between repeated commands is for the same fact, not a new one.
func TestDeniedAgainAfterLiftNotPaused(t *testing.T) {
	b := newBed(t, func(o *Options) { o.Retry = time.Hour })
	b.put(quota("kim", 100))
	now := time.Now().UTC()
	for i := range 3 {
		u := ledgertest.UID()
		b.apply(b.gen("a").Connect(u, ledgertest.Conn{User: "kim", Worker: 200 + i}, now),
			b.gen("a").Accounting(u, ledgertest.Acct{Slot: 1, In: 150, Connected: now}, now))
		b.until(fmt.Sprintf("kick %d", i+1), func() bool { return countOf(b.rec.seen(), "a kick kim for 10m0s") == i+1 })
		b.apply(b.gen("a").Disconnect(u, 150, 0, 1, now))
		win, _ := policy.Period{Kind: policy.Monthly, Day: 1}.Window(time.Now())
		if _, err := b.st.ResetUsage(context.Background(), ledger.UsageReset{Username: "kim", Kind: policy.KindQuota, WindowStart: win, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
		b.eng.Touch("kim")
		b.until(fmt.Sprintf("unkick %d", i+1), func() bool { return countOf(b.rec.seen(), "a unkick kim") == i+1 })
	}
}

func countOf(l []string, s string) int {
	n := 0
	for _, x := range l {
		if x == s {
			n++
		}
	}
	return n
}
