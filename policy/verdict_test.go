package policy

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

func eff(p *Policy) *Effective {
	e := Merge("alice", "staff", p, nil)
	return &e
}

func uids(ss []OpenSession) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.SessionUID)
	}
	slices.Sort(out)
	return out
}

func TestEvaluateQuota(t *testing.T) {
	now := day("2026-11-24T12:00:00Z")
	p := &Policy{Quota: &Quota{Bytes: 1000, Direction: DirTotal, Period: Period{Monthly, 1}}}
	open := []OpenSession{{ServerID: "a", SessionUID: "s1", LogicalUID: "s1", ConnectedAt: now.Add(-time.Hour)},
		{ServerID: "b", SessionUID: "s2", LogicalUID: "s2", ConnectedAt: now.Add(-time.Minute)}}

	ev := Evaluate(eff(p), Inputs{QuotaUsed: Usage{In: 300, Out: 699}, Open: open}, now)
	if !ev.Verdict.Allowed || ev.Quota.Remaining != 1 || len(ev.End) != 0 {
		t.Fatalf("999 of 1000: want allowed with 1 left, got %+v (end %v)", ev.Verdict, ev.End)
	}
	if !ev.Next.Equal(day("2026-12-01")) {
		t.Errorf("next = %s, want the period's end", ev.Next)
	}

	ev = Evaluate(eff(p), Inputs{QuotaUsed: Usage{In: 300, Out: 700}, Open: open}, now)
	v := ev.Verdict
	if v.Allowed || v.Reason != ReasonQuota || v.Until == nil || !v.Until.Equal(day("2026-12-01")) {
		t.Fatalf("1000 of 1000: want denied for quota until 2026-12-01, got %+v", v)
	}
	if !v.Denies(now) || v.Denies(day("2026-12-01")) {
		t.Error("the denial must hold until the period ends and lift at its end by itself")
	}
	if got := uids(ev.End); !slices.Equal(got, []string{"s1", "s2"}) {
		t.Errorf("a denied user's every open session must end, on every server: %v", got)
	}

	// Direction: only uploads count for an "in" quota.
	p.Quota.Direction = DirIn
	if ev := Evaluate(eff(p), Inputs{QuotaUsed: Usage{In: 999, Out: 1 << 40}}, now); !ev.Verdict.Allowed {
		t.Error("an in-quota must not count downloads")
	}
	// Lifetime: no end, no until.
	p.Quota = &Quota{Bytes: 10, Direction: DirTotal, Period: Period{Kind: Lifetime}}
	ev = Evaluate(eff(p), Inputs{QuotaUsed: Usage{Out: 10}}, now)
	if ev.Verdict.Allowed || ev.Verdict.Until != nil || !ev.Next.IsZero() {
		t.Errorf("lifetime quota: want denied with no until and no next, got %+v next %v", ev.Verdict, ev.Next)
	}
}

func TestEvaluateExpiry(t *testing.T) {
	now := day("2026-11-24T12:00:00Z")
	at := day("2026-11-24T12:00:01Z")
	p := &Policy{Expiry: &Expiry{At: at}}
	ev := Evaluate(eff(p), Inputs{}, now)
	if !ev.Verdict.Allowed || !ev.Next.Equal(at) {
		t.Fatalf("one second before: want allowed with next = the expiry, got %+v next %s", ev.Verdict, ev.Next)
	}
	ev = Evaluate(eff(p), Inputs{}, at)
	if ev.Verdict.Allowed || ev.Verdict.Reason != ReasonExpired || ev.Verdict.Until != nil {
		t.Fatalf("at the expiry: want denied for good, got %+v", ev.Verdict)
	}
	// N days after the first use: nothing before the first use.
	p = &Policy{Expiry: &Expiry{DaysAfterFirstUse: 30}}
	if ev := Evaluate(eff(p), Inputs{}, now); !ev.Verdict.Allowed || !ev.Expires.IsZero() {
		t.Errorf("never used: the clock has not started, got %+v", ev)
	}
	first := day("2026-10-25T08:00:00Z")
	ev = Evaluate(eff(p), Inputs{FirstUse: first}, now)
	if !ev.Expires.Equal(day("2026-11-24T08:00:00Z")) || ev.Verdict.Allowed {
		t.Errorf("30 days after %s: want expired at 2026-11-24T08:00Z, got %+v", first, ev)
	}
	// Expiry takes precedence over a quota.
	p = &Policy{Expiry: &Expiry{At: now}, Quota: &Quota{Bytes: 1, Direction: DirTotal, Period: Period{Kind: Daily}}}
	if ev := Evaluate(eff(p), Inputs{QuotaUsed: Usage{In: 5}}, now); ev.Verdict.Reason != ReasonExpired {
		t.Errorf("precedence: want expired first, got %s", ev.Verdict.Reason)
	}
}

func TestEvaluateTime(t *testing.T) {
	now := day("2026-11-24T12:00:00Z")
	p := &Policy{Time: &TimeLimit{Seconds: 3600, Period: Period{Kind: Daily}}}
	if ev := Evaluate(eff(p), Inputs{TimeUsed: Usage{Seconds: 3599}}, now); !ev.Verdict.Allowed {
		t.Fatal("3599 of 3600 s must be allowed")
	}
	ev := Evaluate(eff(p), Inputs{TimeUsed: Usage{Seconds: 3600}}, now)
	if ev.Verdict.Allowed || ev.Verdict.Reason != ReasonTime || !ev.Verdict.Until.Equal(day("2026-11-25")) {
		t.Fatalf("3600 of 3600 s: %+v", ev.Verdict)
	}
}

func TestEvaluateSessions(t *testing.T) {
	now := day("2026-11-24T12:00:00Z")
	at := func(m int) time.Time { return now.Add(time.Duration(m) * time.Minute) }
	open := []OpenSession{
		{ServerID: "a", SessionUID: "a1", LogicalUID: "L1", ConnectedAt: at(-60)},
		// A roamed worker of the same logical session on the same server: one session.
		{ServerID: "a", SessionUID: "a2", LogicalUID: "L1", ConnectedAt: at(-5)},
		{ServerID: "b", SessionUID: "b1", LogicalUID: "L2", ConnectedAt: at(-30)},
		{ServerID: "c", SessionUID: "c1", ConnectedAt: at(-1)}, // no logical uid known yet
	}
	p := &Policy{Sessions: &SessionLimit{Max: 2, OnExcess: ExcessRefuse}}
	ev := Evaluate(eff(p), Inputs{Open: open}, now)
	if !ev.Verdict.Allowed || !ev.Excess {
		t.Fatalf("a session limit does not deny the user: %+v", ev.Verdict)
	}
	if got := uids(ev.End); !slices.Equal(got, []string{"c1"}) {
		t.Errorf("refuse: the newest logical session is the excess, got %v", got)
	}
	held := ev.Verdict.Sessions.Held
	if held["a"] != 1 || held["b"] != 1 || held["c"] != 1 {
		t.Errorf("held = %v, want one logical session on each server", held)
	}
	p.Sessions.OnExcess = ExcessNewest
	ev = Evaluate(eff(p), Inputs{Open: open}, now)
	if got := uids(ev.End); !slices.Equal(got, []string{"a1", "a2"}) {
		t.Errorf("newest wins: the oldest logical session (both its workers) ends, got %v", got)
	}
	p.Sessions.Max = 3
	if ev := Evaluate(eff(p), Inputs{Open: open}, now); len(ev.End) != 0 {
		t.Errorf("within the limit nothing ends: %v", ev.End)
	}
}

func TestRefusesSession(t *testing.T) {
	v := &Verdict{Allowed: true, Sessions: &SessionsVerdict{Max: 1, OnExcess: ExcessRefuse, Held: map[string]int{"a": 1}}}
	if !v.RefusesSession("b") {
		t.Error("limit 1 held on a: a login on b must be refused")
	}
	if v.RefusesSession("a") {
		t.Error("a login on a may be the held session's own cookie resumption: left to ocserv and the ledger")
	}
	v.Sessions.OnExcess = ExcessNewest
	if v.RefusesSession("b") {
		t.Error("newest wins never refuses at login")
	}
	v.Sessions = &SessionsVerdict{Max: 2, OnExcess: ExcessRefuse, Held: map[string]int{"a": 1}}
	if v.RefusesSession("b") {
		t.Error("limit 2 with one held elsewhere: admit")
	}
	var nilV *Verdict
	if nilV.RefusesSession("a") || nilV.Denies(time.Now()) {
		t.Error("no verdict refuses nothing")
	}
}

func TestVerdictJSONRoundTrip(t *testing.T) {
	until := day("2026-12-01")
	v := Verdict{V: 1, User: "alice", Reason: ReasonQuota, Message: "m", Until: &until, Decided: day("2026-11-24T12:00:00Z"),
		Sessions: &SessionsVerdict{Max: 1, OnExcess: ExcessRefuse, Held: map[string]int{"a": 1}}}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var w Verdict
	if err := json.Unmarshal(b, &w); err != nil {
		t.Fatal(err)
	}
	if !v.Equal(&w) {
		t.Fatalf("round trip changed the verdict: %s", b)
	}
	w.Sessions.Held["a"] = 2
	if v.Equal(&w) {
		t.Fatal("Equal must see a change in the sessions held")
	}
}

func TestNotices(t *testing.T) {
	now := day("2026-11-24T12:00:00Z")
	p := &Policy{Quota: &Quota{Bytes: 100, Direction: DirTotal, Period: Period{Monthly, 1}},
		Expiry: &Expiry{At: day("2026-11-28T00:00:00Z"), WarnDays: 7}}
	e := eff(p)
	keys := func(ns []Notice) []string {
		var out []string
		for _, n := range ns {
			out = append(out, n.Kind+"/"+n.Key)
		}
		return out
	}
	ev := Evaluate(e, Inputs{QuotaUsed: Usage{In: 79}}, now)
	ns := Notices(e, &ev, Resets{}, now)
	if len(ns) != 1 || ns[0].Kind != NoticeExpirySoon {
		t.Fatalf("79%% and expiry in 4 days: want only expiry_soon, got %v", keys(ns))
	}
	ev = Evaluate(e, Inputs{QuotaUsed: Usage{In: 80}}, now)
	n80 := Notices(e, &ev, Resets{}, now)
	if len(n80) != 2 || n80[0].Percent != 80 {
		t.Fatalf("80%%: %v", keys(n80))
	}
	ev = Evaluate(e, Inputs{QuotaUsed: Usage{In: 100}}, now)
	n100 := Notices(e, &ev, Resets{}, now)
	if len(n100) != 3 || n100[0].Key != n80[0].Key || n100[1].Percent != 100 {
		t.Fatalf("100%%: the 80%% notice keeps its key and a 100%% one joins: %v", keys(n100))
	}
	// After a reset the same thresholds are new facts.
	ev = Evaluate(e, Inputs{QuotaUsed: Usage{In: 80}}, now)
	again := Notices(e, &ev, Resets{Quota: now.Add(-time.Minute)}, now)
	if again[0].Key == n80[0].Key {
		t.Error("a threshold reached again after a reset must have a new key")
	}
	// A new period: new keys.
	next := day("2026-12-02T00:00:00Z")
	ev = Evaluate(e, Inputs{QuotaUsed: Usage{In: 80}}, next)
	if nn := Notices(e, &ev, Resets{}, next); nn[0].Key == n80[0].Key {
		t.Error("the next period's 80% must have a new key")
	}
	// Expired replaces expiring soon.
	ev = Evaluate(e, Inputs{}, day("2026-11-28T00:00:00Z"))
	if nn := Notices(e, &ev, Resets{}, day("2026-11-28T00:00:00Z")); len(nn) != 1 || nn[0].Kind != NoticeExpired {
		t.Errorf("at expiry: %v", keys(nn))
	}
}
