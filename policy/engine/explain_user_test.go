package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
)

// ExplainUser, reading two policies, must say exactly what Explain says
// reading them all: for a user with their own policy, one with their
// group's, one whose own policy turns a group's kind off, one with no
// policy, one with a policy and no session yet, a member the command
// service cannot name, and among policies of many other users and groups.
func TestExplainUserAgreesWithExplain(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	if _, err := sqlite.Migrate(ctx, path); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC()
	g := ledgertest.NewGen("vpn1", &ledgertest.Seq{})
	var msgs []ledger.Message
	for i, u := range []struct{ user, group string }{{"alice", ""}, {"bob", "staff"}, {"carol", "staff"}, {"dave", "guests"}, {"jörg smith", "staff"}, {"frank", ""}} {
		uid := ledgertest.UID()
		at := now.Add(-time.Duration(i+2) * time.Hour)
		msgs = append(msgs, g.Connect(uid, ledgertest.Conn{User: u.user, Group: u.group, Worker: 100 + i}, at),
			g.Disconnect(uid, uint64(1000*(i+1)), uint64(5000*(i+1)), 600, at.Add(10*time.Minute)))
	}
	if _, err := st.Apply(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if err := st.RefreshPolicyUsers(ctx, nil); err != nil {
		t.Fatal(err)
	}
	life := policy.Period{Kind: policy.Lifetime}
	pols := []policy.Policy{
		{Scope: policy.ScopeUser, Name: "alice", Quota: &policy.Quota{Bytes: 3000, Direction: policy.DirTotal, Period: life}, Expiry: &policy.Expiry{At: now.AddDate(0, 0, 3)}},
		{Scope: policy.ScopeGroup, Name: "staff", Quota: &policy.Quota{Bytes: 1 << 20, Direction: policy.DirIn, Period: policy.Period{Kind: policy.Monthly, Day: 1}},
			Sessions: &policy.SessionLimit{Max: 1, OnExcess: policy.ExcessRefuse}, Expiry: &policy.Expiry{DaysAfterFirstUse: 30}},
		{Scope: policy.ScopeUser, Name: "carol", Sessions: &policy.SessionLimit{Off: true}, Time: &policy.TimeLimit{Seconds: 300, Period: life}},
		{Scope: policy.ScopeUser, Name: "erin", Quota: &policy.Quota{Bytes: 10, Direction: policy.DirOut, Period: life}},
	}
	for i := 0; i < 300; i++ {
		pols = append(pols, policy.Policy{Scope: policy.ScopeUser, Name: fmt.Sprintf("other%03d", i), Quota: &policy.Quota{Bytes: 1, Direction: policy.DirTotal, Period: life}},
			policy.Policy{Scope: policy.ScopeGroup, Name: fmt.Sprintf("group%03d", i), Expiry: &policy.Expiry{At: now.AddDate(0, 0, -1)}})
	}
	for _, p := range pols {
		if err := st.PutPolicy(ctx, p, now); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{"alice", "bob", "carol", "dave", "jörg smith", "erin", "frank", "nobody"} {
		all, err := Explain(ctx, st, []string{u}, now)
		if err != nil {
			t.Fatal(err)
		}
		want, wantOK := all[u]
		got, ok, err := ExplainUser(ctx, st, u, now)
		if err != nil {
			t.Fatal(err)
		}
		wj, _ := json.Marshal(want)
		gj, _ := json.Marshal(got)
		if ok != wantOK || string(wj) != string(gj) {
			t.Errorf("%s: ExplainUser %v %s\nExplain %v %s", u, ok, gj, wantOK, wj)
		}
	}
	// The cases are what they claim to be.
	for u, limited := range map[string]bool{"alice": true, "bob": true, "carol": true, "jörg smith": true, "erin": true, "dave": false, "frank": false, "nobody": false} {
		if _, ok, _ := ExplainUser(ctx, st, u, now); ok != limited {
			t.Errorf("%s: limited %v, want %v", u, ok, limited)
		}
	}
	if x, _, _ := ExplainUser(ctx, st, "alice", now); x.Verdict.Allowed || x.Verdict.Reason != policy.ReasonQuota {
		t.Errorf("alice (6000 bytes of 3000): %+v", x.Verdict)
	}
	if x, _, _ := ExplainUser(ctx, st, "carol", now); x.Sessions != nil || x.From[policy.KindSessions] != policy.ScopeUser || x.From[policy.KindQuota] != policy.ScopeGroup {
		t.Errorf("carol: her own sessions none over the group's limit, the group's quota: %+v", x)
	}
}
