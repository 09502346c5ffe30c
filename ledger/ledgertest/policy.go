package ledgertest

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
)

// RunPolicy is the conformance suite of the policy store: every engine
// passes it.
func RunPolicy(t *testing.T, open Opener) {
	tests := []struct {
		name string
		f    func(*testing.T, Opener)
	}{
		{"Policies", testPolicies},
		{"PolicyUsers", testPolicyUsers},
		{"UsageExactlyOnce", testPolicyUsage},
		{"OpenSessionsAndRefusals", testPolicyOpen},
		{"ResetBaseline", testPolicyReset},
		{"Verdicts", testPolicyVerdicts},
		{"Notices", testPolicyNotices},
		{"Kicks", testPolicyKicks},
		{"ReplayKeepsPolicies", testPolicyReplay},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, open) })
	}
}

func rev(t *testing.T, s ledger.Store) int64 {
	t.Helper()
	n, err := s.PolicyRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func testPolicies(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	r0 := rev(t, s)
	alice := policy.Policy{Scope: policy.ScopeUser, Name: "alice", UpdatedBy: "ops",
		Quota:  &policy.Quota{Bytes: 5 << 30, Direction: policy.DirTotal, Period: policy.Period{Kind: policy.Monthly, Day: 15}},
		Expiry: &policy.Expiry{At: t0.AddDate(0, 1, 0)}}
	if err := s.PutPolicy(ctx, alice, t0); err != nil {
		t.Fatal(err)
	}
	got, err := s.Policy(ctx, policy.ScopeUser, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got.Quota.Bytes != 5<<30 || got.Quota.Period.Day != 15 || !got.Expiry.At.Equal(alice.Expiry.At) || !got.UpdatedAt.Equal(t0) || got.UpdatedBy != "ops" {
		t.Errorf("stored policy %+v, want what was put, updated at %s by ops", got, t0)
	}
	if r := rev(t, s); r <= r0 {
		t.Errorf("revision %d did not move after a put (was %d)", r, r0)
	}
	// Replace.
	alice.Quota = nil
	alice.Sessions = &policy.SessionLimit{Max: 1, OnExcess: policy.ExcessNewest}
	if err := s.PutPolicy(ctx, alice, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _ = s.Policy(ctx, policy.ScopeUser, "alice"); got.Quota != nil || got.Sessions.Max != 1 {
		t.Errorf("replaced policy %+v", got)
	}
	// Invalid ones are refused with a code.
	bad := policy.Policy{Scope: policy.ScopeUser, Name: "../etc", Quota: &policy.Quota{Bytes: 1, Direction: "total", Period: policy.Period{Kind: "daily"}}}
	if err := s.PutPolicy(ctx, bad, t0); ledger.ErrorCode(err) != ledger.ECodeInvalid {
		t.Errorf("an invalid policy: %v, want invalid_argument", err)
	}
	if _, err := s.Policy(ctx, policy.ScopeGroup, "nobody"); ledger.ErrorCode(err) != ledger.ECodeNotFound {
		t.Errorf("a missing policy: %v, want not_found", err)
	}
	// Paging over 7 policies, 3 at a time, in (scope, name) byte order.
	var want []string
	for i := range 6 {
		name := fmt.Sprintf("G%d", 5-i)
		if i%2 == 0 {
			name = fmt.Sprintf("g%d", 5-i)
		}
		p := policy.Policy{Scope: policy.ScopeGroup, Name: name, Sessions: &policy.SessionLimit{Max: i + 1, OnExcess: policy.ExcessRefuse}}
		if err := s.PutPolicy(ctx, p, t0); err != nil {
			t.Fatal(err)
		}
		want = append(want, "group/"+name)
	}
	slices.Sort(want)
	want = append(want, "user/alice")
	var seen []string
	cursor := ""
	for range 5 {
		page, err := s.Policies(ctx, ledger.PolicyQuery{Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page.Items {
			seen = append(seen, string(p.Scope)+"/"+p.Name)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if !slices.Equal(seen, want) {
		t.Errorf("paged policies %v, want %v", seen, want)
	}
	if page, _ := s.Policies(ctx, ledger.PolicyQuery{Scope: policy.ScopeUser}); len(page.Items) != 1 {
		t.Errorf("scope filter: %d policies, want 1", len(page.Items))
	}
	if _, err := s.Policies(ctx, ledger.PolicyQuery{Cursor: "%%%"}); ledger.ErrorCode(err) != ledger.ECodeInvalid {
		t.Errorf("a bad cursor: %v, want invalid_argument", err)
	}
	// Delete.
	r1 := rev(t, s)
	if ok, err := s.DeletePolicy(ctx, policy.ScopeUser, "alice"); !ok || err != nil {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if ok, _ := s.DeletePolicy(ctx, policy.ScopeUser, "alice"); ok {
		t.Error("deleting twice must report nothing deleted")
	}
	if rev(t, s) <= r1 {
		t.Error("revision did not move after a delete")
	}
	// A policy emptied of every kind is gone.
	if err := s.PutPolicy(ctx, policy.Policy{Scope: policy.ScopeGroup, Name: "g5"}, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Policy(ctx, policy.ScopeGroup, "g5"); ledger.ErrorCode(err) != ledger.ECodeNotFound {
		t.Errorf("an empty policy must be deleted: %v", err)
	}
}

func testPolicyUsers(t *testing.T, open Opener) {
	now := t0.Add(500 * 24 * time.Hour)
	s := open(t, ledger.ApplyOptions{Retention: ledger.DefaultRetention, Now: func() time.Time { return now }})
	a, b := NewGen("a", &Seq{}), NewGen("b", &Seq{})
	first := now.Add(-399 * 24 * time.Hour)
	u1, u2, u3, u4 := UID(), UID(), UID(), UID()
	apply(t, s,
		a.Connect(u1, Conn{User: "alice", Group: "staff"}, first),
		a.Disconnect(u1, 1, 1, 60, first.Add(time.Minute)),
		b.Connect(u2, Conn{User: "alice", Group: "ops"}, now.Add(-time.Hour)),
		// A refused login is no use, and its group does not count.
		b.Connect(u3, Conn{User: "alice", Group: "guests", Refused: "kicked by an operator"}, now),
		b.Connect(u4, Conn{User: "bob", Group: "ops", Refused: "kicked by an operator"}, now),
	)
	if err := s.RefreshPolicyUsers(ctx, nil); err != nil {
		t.Fatal(err)
	}
	us, err := s.PolicyUsers(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 1 || us[0].Username != "alice" || us[0].Groupname != "ops" || !us[0].FirstUse.Equal(first) || !us[0].LastConnect.Equal(now.Add(-time.Hour)) {
		t.Fatalf("policy users %+v: want alice only (bob was only refused), group ops (the latest admitted), first use %s", us, first)
	}
	// Retention removes the first session; the first use stays.
	if _, err := s.Prune(ctx, ledger.DefaultRetention, now.Add(2*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.RefreshPolicyUsers(ctx, []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	if us, _ := s.PolicyUsers(ctx, []string{"alice"}); len(us) != 1 || !us[0].FirstUse.Equal(first) {
		t.Errorf("after retention: %+v, want the first use kept at %s", us, first)
	}
	m, err := s.GroupMembers(ctx, []string{"ops", "staff"})
	if err != nil || !slices.Equal(m, []string{"alice"}) {
		t.Errorf("members of ops, staff: %v %v", m, err)
	}
	if us, _ := s.PolicyUsers(ctx, []string{"nobody"}); len(us) != 0 {
		t.Errorf("unknown user: %+v", us)
	}
}

// Usage the policy engine reads is exactly what ocserv counted, whatever
// order, lateness and duplication the events arrive in, across servers.
func testPolicyUsage(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	r := rand.New(rand.NewPCG(15, 15))
	var all []ledger.Message
	seq := &Seq{}
	wantIn, wantOut := int64(0), int64(0)
	for i, srv := range []string{"a", "b", "c"} {
		g := NewGen(srv, seq)
		uid := UID()
		conn := t0.Add(time.Duration(i) * time.Minute)
		in, out := uint64(10_000*(i+1)), uint64(20_000*(i+1))
		lostIn, lostOut := in-100, out-100
		all = append(all,
			g.Connect(uid, Conn{User: "alice", Group: "staff"}, conn),
			g.Accounting(uid, Acct{Slot: 1, In: in / 4, Out: out / 4, Connected: conn}, conn.Add(time.Minute)),
			g.Accounting(uid, Acct{Slot: 2, In: in / 2, Out: out / 2, Connected: conn}, conn.Add(2*time.Minute)),
			g.Reconcile(uid, Rec{Action: "lost", LastSeen: conn.Add(3 * time.Minute), In: &lostIn, Out: &lostOut}, conn.Add(4*time.Minute)),
			g.Disconnect(uid, in, out, 240, conn.Add(4*time.Minute)),
		)
		wantIn, wantOut = wantIn+int64(in), wantOut+int64(out)
	}
	r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for range 5 {
		all = append(all, all[r.IntN(len(all))])
	}
	for i := 0; i < len(all); {
		n := 1 + r.IntN(4)
		apply(t, s, all[i:min(i+n, len(all))]...)
		i += n
	}
	u, err := s.UsageSince(ctx, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := u["alice"]; got.In != wantIn || got.Out != wantOut || got.Seconds != 3*240 {
		t.Errorf("alice's usage %+v, want exactly the disconnects' %d/%d/720s", got, wantIn, wantOut)
	}
	if u, _ := s.UsageSince(ctx, t0.AddDate(0, 0, 1), []string{"alice"}); u["alice"] != (policy.Usage{}) {
		t.Errorf("from the next day: %+v, want nothing", u["alice"])
	}
	if u, _ := s.UsageSince(ctx, time.Time{}, []string{"alice", "bob"}); u["alice"].In != wantIn || len(u) != 1 {
		t.Errorf("lifetime: %+v", u)
	}
	days, err := s.UsageDays(ctx, t0.AddDate(0, 0, -1), nil)
	if err != nil {
		t.Fatal(err)
	}
	var sum policy.Usage
	for i, d := range days["alice"] {
		if i > 0 && !d.Day.After(days["alice"][i-1].Day) || d.Day.Hour() != 0 || d.Day.Location() != time.UTC {
			t.Errorf("days out of order or not UTC midnights: %+v", days["alice"])
		}
		sum.In, sum.Out, sum.Seconds = sum.In+d.Usage.In, sum.Out+d.Usage.Out, sum.Seconds+d.Usage.Seconds
	}
	if sum.In != wantIn || sum.Out != wantOut || sum.Seconds != 720 || len(days) != 1 {
		t.Errorf("usage by day sums to %+v, want the same as UsageSince", sum)
	}
	if d, _ := s.UsageDays(ctx, t0.AddDate(0, 0, 1), []string{"alice"}); len(d["alice"]) != 0 {
		t.Errorf("by day from the next day: %+v", d)
	}
}

func testPolicyOpen(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	seq := &Seq{}
	a, b := NewGen("a", seq), NewGen("b", seq)
	u1, u2, u3, u4 := UID(), UID(), UID(), UID()
	apply(t, s,
		a.Connect(u1, Conn{User: "alice", Worker: 101}, t0),
		b.Connect(u2, Conn{User: "alice", Worker: 202}, t0.Add(time.Minute)),
		a.Connect(u3, Conn{User: "bob", Worker: 303}, t0),
		a.Disconnect(u3, 1, 1, 60, t0.Add(time.Minute)),
		b.Connect(u4, Conn{User: "alice", Worker: 404, Refused: policy.RefusalSessionLimit + ": 1 held elsewhere"}, t0.Add(2*time.Minute)),
	)
	// A roamed worker joined to u1.
	u5 := UID()
	apply(t, s, a.Connect(u5, Conn{User: "alice", Worker: 505}, t0.Add(3*time.Minute)),
		a.Reconcile(u5, Rec{Action: "joined", Logical: u1, Joined: []string{u5}}, t0.Add(3*time.Minute)))
	open2, err := s.OpenSessions(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	al := open2["alice"]
	if len(al) != 3 || len(open2["bob"]) != 0 {
		t.Fatalf("open sessions %+v: want alice's three (bob disconnected, the refusal never opened)", open2)
	}
	if al[0].SessionUID != u1 || al[0].WorkerID != 101 || al[0].ServerID != "a" || !al[0].ConnectedAt.Equal(t0) {
		t.Errorf("first open session %+v", al[0])
	}
	// By user list (the console's user page, a policy check): the same
	// rows as the sweep's for those users, and no one else's.
	for _, users := range [][]string{{"alice"}, {"bob"}, {"alice", "bob", "carol"}} {
		got, err := s.OpenSessions(ctx, users)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]policy.OpenSession{}
		for _, u := range users {
			if len(open2[u]) > 0 {
				want[u] = open2[u]
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("open sessions of %v: %+v, want the sweep's rows for them %+v", users, got, want)
		}
	}
	var u5row policy.OpenSession
	for _, o := range al {
		if o.SessionUID == u5 {
			u5row = o
		}
	}
	if u5row.LogicalUID != u1 {
		t.Errorf("the roamed worker's logical uid %q, want %s", u5row.LogicalUID, u1)
	}
	ref, err := s.RefusedSince(ctx, t0, []string{"alice"})
	if err != nil || len(ref["alice"]) != 1 || ref["alice"][0].SessionUID != u4 || ref["alice"][0].ServerID != "b" {
		t.Errorf("session-limit refusals %+v %v", ref, err)
	}
	if ref, _ := s.RefusedSince(ctx, t0.Add(time.Hour), nil); len(ref) != 0 {
		t.Errorf("refusals since later: %+v", ref)
	}
}

func testPolicyReset(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	g := NewGen("a", &Seq{})
	uid := UID()
	win := time.Date(t0.Year(), t0.Month(), 1, 0, 0, 0, 0, time.UTC)
	apply(t, s, g.Connect(uid, Conn{User: "alice"}, t0),
		g.Accounting(uid, Acct{Slot: 1, In: 1000, Out: 3000, Connected: t0}, t0.Add(time.Minute)))
	r0 := rev(t, s)
	r, err := s.ResetUsage(ctx, ledger.UsageReset{Username: "alice", Kind: policy.KindQuota, WindowStart: win, At: t0.Add(2 * time.Minute), By: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Base.In != 1000 || r.Base.Out != 3000 {
		t.Fatalf("reset baseline %+v, want what was counted: 1000/3000", r.Base)
	}
	if rev(t, s) <= r0 {
		t.Error("a reset must move the revision")
	}
	apply(t, s, g.Accounting(uid, Acct{Slot: 2, In: 1500, Out: 3500, Connected: t0}, t0.Add(3*time.Minute)))
	u, _ := s.UsageSince(ctx, win, []string{"alice"})
	rs, err := s.Resets(ctx, []string{"alice"})
	if err != nil || len(rs["alice"]) != 1 {
		t.Fatalf("resets %+v %v", rs, err)
	}
	got := rs["alice"][0]
	if !got.WindowStart.Equal(win) || !got.At.Equal(t0.Add(2*time.Minute)) || got.By != "ops" || got.Kind != policy.KindQuota {
		t.Errorf("stored reset %+v", got)
	}
	if since := u["alice"].Minus(got.Base); since.In != 500 || since.Out != 500 {
		t.Errorf("usage since the reset %+v, want 500/500", since)
	}
	if _, err := s.ResetUsage(ctx, ledger.UsageReset{Username: "alice", Kind: "bandwidth", At: t0}); ledger.ErrorCode(err) != ledger.ECodeInvalid {
		t.Errorf("a bad kind: %v", err)
	}
	// Lifetime (zero window start) counts every day.
	r, _ = s.ResetUsage(ctx, ledger.UsageReset{Username: "alice", Kind: policy.KindTime, At: t0.Add(4 * time.Minute)})
	if r.Base.In != 1500 || !r.WindowStart.IsZero() {
		t.Errorf("lifetime reset %+v", r)
	}
}

func testPolicyVerdicts(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	until := t0.AddDate(0, 0, 7)
	vs := []policy.Verdict{
		{V: 1, User: "alice", Reason: policy.ReasonQuota, Message: "used", Until: &until, Decided: t0},
		{V: 1, User: "bob", Allowed: true, Decided: t0, Sessions: &policy.SessionsVerdict{Max: 1, OnExcess: "refuse", Held: map[string]int{"a": 1}}},
	}
	if err := s.SaveVerdicts(ctx, vs, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.Verdicts(ctx)
	if err != nil || len(got) != 2 {
		t.Fatalf("verdicts %v %v", got, err)
	}
	if a := got["alice"]; !a.Equal(&vs[0]) || !a.Decided.Equal(t0) {
		t.Errorf("alice %+v", a)
	}
	if b := got["bob"]; !b.Equal(&vs[1]) {
		t.Errorf("bob %+v", b)
	}
	vs[0].Allowed, vs[0].Reason, vs[0].Until = true, "", nil
	if err := s.SaveVerdicts(ctx, vs[:1], []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Verdicts(ctx)
	if len(got) != 1 || !got["alice"].Allowed {
		t.Errorf("after an update and a delete: %+v", got)
	}
}

func noticeID(key string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(key)).String()
}

func testPolicyNotices(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	var ns []policy.Notice
	for i := range 5 {
		k := fmt.Sprintf("quota|alice|%d", i)
		ns = append(ns, policy.Notice{ID: noticeID(k), Kind: policy.NoticeQuota, User: "alice", Time: t0.Add(time.Duration(i) * time.Second), Percent: 80, Key: k})
	}
	fresh, err := s.AddPolicyNotices(ctx, ns[:3], true)
	if err != nil || len(fresh) != 3 {
		t.Fatalf("first add: %d new, %v", len(fresh), err)
	}
	fresh, err = s.AddPolicyNotices(ctx, ns, true)
	if err != nil || len(fresh) != 2 || fresh[0].ID != ns[3].ID {
		t.Fatalf("second add: %d new (want only the 2 not seen), %v", len(fresh), err)
	}
	due, err := s.PendingPolicyNotices(ctx, t0.Add(2*time.Second), 10)
	if err != nil || len(due) != 3 || due[0].ID != ns[0].ID {
		t.Fatalf("due at t0+2s: %d, %v", len(due), err)
	}
	if err := s.MarkPolicyNotice(ctx, ns[0].ID, true, "", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkPolicyNotice(ctx, ns[1].ID, false, "500 Internal Server Error", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkPolicyNotice(ctx, ns[2].ID, false, "gave up", time.Time{}); err != nil {
		t.Fatal(err)
	}
	due, _ = s.PendingPolicyNotices(ctx, t0.Add(time.Minute), 10)
	if len(due) != 2 || due[0].ID != ns[3].ID {
		t.Errorf("due after marking: %d (want the 2 never tried; the failed one waits an hour)", len(due))
	}
	var rows []ledger.PolicyNoticeRow
	cursor := ""
	for range 4 {
		page, err := s.PolicyNotices(ctx, ledger.PolicyNoticeQuery{User: "alice", Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, page.Items...)
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if len(rows) != 5 || rows[0].Notice.ID != ns[4].ID {
		t.Fatalf("paged notices: %d, want 5 newest first", len(rows))
	}
	byID := map[string]ledger.PolicyNoticeRow{}
	for _, r := range rows {
		byID[r.Notice.ID] = r
	}
	if r := byID[ns[0].ID]; r.Webhook != ledger.WebhookDelivered || r.Attempts != 1 || r.DeliveredAt.IsZero() {
		t.Errorf("delivered: %+v", r)
	}
	if r := byID[ns[1].ID]; r.Webhook != ledger.WebhookPending || r.LastError != "500 Internal Server Error" {
		t.Errorf("retrying: %+v", r)
	}
	if r := byID[ns[2].ID]; r.Webhook != ledger.WebhookFailed {
		t.Errorf("given up: %+v", r)
	}
	// Without a webhook: recorded, never pending.
	n := policy.Notice{ID: noticeID("x"), Kind: policy.NoticeExpired, User: "bob", Time: t0}
	if fresh, _ := s.AddPolicyNotices(ctx, []policy.Notice{n}, false); len(fresh) != 1 {
		t.Error("a notice without a webhook must still be recorded once")
	}
	if due, _ := s.PendingPolicyNotices(ctx, t0.Add(48*time.Hour), 10); len(due) != 3 {
		t.Errorf("pending with no webhook: %d, want 3 (the retrying one and the two never tried)", len(due))
	}
}

func testPolicyKicks(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	for _, k := range []ledger.PolicyKick{{Username: "alice", ServerID: "b", At: t0, Reason: "quota"},
		{Username: "alice", ServerID: "a", At: t0, Reason: "quota"}, {Username: "bob", ServerID: "a", At: t0, Reason: "expired"}} {
		if err := s.PutPolicyKick(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	ks, err := s.PolicyKicks(ctx, "alice")
	if err != nil || len(ks) != 2 || ks[0].ServerID != "a" || !ks[0].At.Equal(t0) {
		t.Fatalf("alice's kicks %+v %v", ks, err)
	}
	if err := s.DeletePolicyKick(ctx, "alice", "a"); err != nil {
		t.Fatal(err)
	}
	if ks, _ := s.PolicyKicks(ctx, ""); len(ks) != 2 {
		t.Errorf("all kicks after one delete: %+v", ks)
	}
}

// The policy tables are not a projection: emptying the projection for a
// replay keeps them, and the checksum of the projection ignores them.
func testPolicyReplay(t *testing.T, open Opener) {
	s := open(t, ledger.ApplyOptions{})
	p := policy.Policy{Scope: policy.ScopeGroup, Name: "staff", Sessions: &policy.SessionLimit{Max: 2, OnExcess: policy.ExcessRefuse}}
	if err := s.PutPolicy(ctx, p, t0); err != nil {
		t.Fatal(err)
	}
	before := Checksum(t, s)
	if err := s.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Policy(ctx, policy.ScopeGroup, "staff"); err != nil {
		t.Errorf("a replay's reset must keep the policies: %v", err)
	}
	if after := Checksum(t, s); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the projection's checksum must not see policies: %v != %v", after, before)
	}
}
