package console

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/engine"
)

// aliceQuota is under what alice used in seedFleet (135 MB in all), so
// she is denied for the quota.
const aliceQuota = 100_000_000

// seedPolicies is seedFleet plus policies: alice has her own lifetime
// quota (used up) and an expiry at the end of the 10th day from today;
// the group staff (bob, carol) has a session limit; the group guests a
// quota, which binds "jörg smith", a name the ledger's policy commands
// cannot take. It returns alice's expiry.
func (b *bench) seedPolicies() time.Time {
	b.t.Helper()
	b.seedFleet()
	uid, at := ledgertest.UID(), time.Now().UTC().Add(-2*time.Hour)
	g := b.gen("vpn2")
	b.feed(g.Connect(uid, ledgertest.Conn{User: "jörg smith", Group: "guests", IPReal: "203.0.113.44", VPN4: "192.168.251.44", Worker: 4400, Device: "vpns4"}, at),
		g.Disconnect(uid, 1000, 2000, 600, at.Add(10*time.Minute)))
	ctx := context.Background()
	now := time.Now().UTC()
	exp := time.Date(now.Year(), now.Month(), now.Day()+11, 0, 0, 0, 0, time.UTC)
	for _, p := range []policy.Policy{
		{Scope: policy.ScopeUser, Name: "alice", Quota: &policy.Quota{Bytes: aliceQuota, Direction: policy.DirTotal, Period: policy.Period{Kind: policy.Lifetime}},
			Expiry: &policy.Expiry{At: exp}, UpdatedBy: "test"},
		{Scope: policy.ScopeGroup, Name: "staff", Sessions: &policy.SessionLimit{Max: 2, OnExcess: policy.ExcessRefuse}, UpdatedBy: "test"},
		// carol's own policy turns her group's session limit off and
		// limits her connected time.
		{Scope: policy.ScopeUser, Name: "carol", Sessions: &policy.SessionLimit{Off: true},
			Time: &policy.TimeLimit{Seconds: 36000, Period: policy.Period{Kind: policy.Lifetime}}, UpdatedBy: "test"},
		{Scope: policy.ScopeGroup, Name: "guests", Quota: &policy.Quota{Bytes: 1 << 30, Direction: policy.DirTotal, Period: policy.Period{Kind: policy.Lifetime}}, UpdatedBy: "test"},
	} {
		if err := b.store.PutPolicy(ctx, p, now); err != nil {
			b.t.Fatal(err)
		}
	}
	if err := b.store.RefreshPolicyUsers(ctx, nil); err != nil {
		b.t.Fatal(err)
	}
	return exp
}

func (b *bench) standingOf(user string) engine.Standing {
	b.t.Helper()
	m, err := engine.Explain(context.Background(), b.store, []string{user}, time.Now())
	if err != nil {
		b.t.Fatal(err)
	}
	return m[user]
}

func (b *bench) resets(user string) []ledger.UsageReset {
	b.t.Helper()
	m, err := b.store.Resets(context.Background(), []string{user})
	if err != nil {
		b.t.Fatal(err)
	}
	return m[user]
}

var reFlash = regexp.MustCompile(`id="flash">([^<]*)<`)

// follow gets the page a redirect points to and returns its flash.
func (c *client) follow(resp *http.Response) (string, string) {
	c.t.Helper()
	if resp.StatusCode != http.StatusSeeOther {
		c.t.Fatalf("want a redirect, got %d", resp.StatusCode)
	}
	_, page := c.get(resp.Header.Get("Location"))
	m := reFlash.FindStringSubmatch(page)
	if m == nil {
		return "", page
	}
	return htmlUnescape(m[1]), page
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&#39;", "'", "&#34;", `"`, "&quot;", `"`, "&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
}

// confirmForm reads the hidden fields of a confirmation page's form.
func confirmForm(t *testing.T, page string) url.Values {
	t.Helper()
	form := url.Values{}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="([a-z]+)" value="([^"]*)">`).FindAllStringSubmatch(page, -1) {
		form.Set(m[1], htmlUnescape(m[2]))
	}
	if form.Get("csrf") == "" {
		t.Fatalf("no confirmation form:\n%s", page)
	}
	return form
}

// An operator sees where alice stands, resets her quota and extends her
// expiry through the confirmation pages; each change is made by the
// ledger's policy endpoint for the console's key and the web user, and
// audited by the console with the web user's name.
func TestPolicyResetAndExtend(t *testing.T) {
	b := newBench(t, benchOpts{policies: true})
	exp := b.seedPolicies()
	if x := b.standingOf("alice"); x.Verdict.Allowed || x.Verdict.Reason != policy.ReasonQuota {
		t.Fatalf("seed: alice %+v, want denied for the quota", x.Verdict)
	}
	c := b.client()
	c.mustLogin(opUser, opPass)

	_, page := c.get("/users/alice")
	for _, want := range []string{`id="policy-verdict" class="verdict bad" data-allowed="false"`, `<span id="quota-remaining">0 B</span>`,
		"lifetime", `id="quota-reset"`, `id="expiry-extend"`, "works until the end of " + exp.AddDate(0, 0, -1).Format(time.DateOnly)} {
		if !strings.Contains(page, want) {
			t.Errorf("alice's page lacks %q", want)
		}
	}
	if strings.Contains(page, "lifts by itself") {
		t.Error("a lifetime quota's denial says it lifts by itself")
	}
	// bob's limit comes from his group; he has no quota to reset.
	_, page = c.get("/users/bob")
	if !strings.Contains(page, `data-kind="sessions"`) || !strings.Contains(page, "at most 2 across the fleet") || strings.Contains(page, `id="quota-reset"`) {
		t.Errorf("bob's page: want the group's session limit and no quota reset\n%s", page)
	}
	_, page = c.get("/users/carol")
	if !strings.Contains(page, `<tr data-kind="sessions" class="off"><td>sessions</td><td>none: no limit of this kind</td><td>—</td><td>user</td></tr>`) {
		t.Errorf("carol's page: want her own \"no session limit\" over her group's\n%s", page)
	}
	if !strings.Contains(page, `<tr data-kind="time">`) || !strings.Contains(page, `id="time-reset"`) {
		t.Errorf("carol's page: want her connected-time limit and its reset\n%s", page)
	}
	// jörg's group binds him; the ledger's commands cannot name him, and
	// the page says so instead of offering what would be refused.
	_, page = c.get("/users/j%C3%B6rg%20smith")
	if !strings.Contains(page, `data-kind="quota"`) || !strings.Contains(page, `id="policy-no-actions"`) || strings.Contains(page, `id="quota-reset"`) {
		t.Errorf("jörg's page: want the group's quota, the note and no reset\n%s", page)
	}
	// dave has no policy: no section at all.
	if _, page = c.get("/users/dave"); strings.Contains(page, `id="policy"`) {
		t.Error("a user without a policy has a policy section")
	}

	// The quota reset.
	resp, page := c.get("/confirm/policy/reset?user=alice&kind=quota&return=/users/alice")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Reset the quota count of alice?") {
		t.Fatalf("reset confirmation: %d\n%s", resp.StatusCode, page)
	}
	if len(b.resets("alice")) != 0 {
		t.Fatal("the confirmation page reset the quota")
	}
	resp, _ = c.do("POST", "/actions/policy/reset", confirmForm(t, page), nil)
	flash, page := c.follow(resp)
	if want := "alice: quota count reset for this period. Now allowed. Quota: 95.4 MiB of 95.4 MiB left."; flash != want {
		t.Errorf("flash %q, want %q", flash, want)
	}
	if !strings.Contains(page, `data-allowed="true"`) || !strings.Contains(page, `<span id="quota-remaining">95.4 MiB</span>`) {
		t.Errorf("alice's page after the reset:\n%s", page)
	}
	if x := b.standingOf("alice"); !x.Verdict.Allowed {
		t.Errorf("after the reset alice is %+v", x.Verdict)
	}
	rs := b.resets("alice")
	if len(rs) != 1 || rs[0].Kind != policy.KindQuota || !strings.HasPrefix(rs[0].By, "console (U") || !strings.HasSuffix(rs[0].By, ") for "+opUser) {
		t.Errorf("the ledger's reset record %+v: want kind quota by the console key for %s", rs, opUser)
	}

	// carol's connected-time reset.
	_, page = c.get("/confirm/policy/reset?user=carol&kind=time")
	if !strings.Contains(page, "Reset the connected-time count of carol?") {
		t.Fatalf("time reset confirmation:\n%s", page)
	}
	resp, _ = c.do("POST", "/actions/policy/reset", confirmForm(t, page), nil)
	if flash, _ := c.follow(resp); !strings.HasPrefix(flash, "carol: connected-time count reset for this period. Now allowed.") {
		t.Errorf("flash %q", flash)
	}
	if rs := b.resets("carol"); len(rs) != 1 || rs[0].Kind != policy.KindTime {
		t.Errorf("carol's resets %+v, want one of kind time", rs)
	}

	// The expiry extension: 30 days from the current expiry.
	resp, page = c.get("/confirm/policy/extend?user=alice&days=30&until=&return=/users/alice")
	want := exp.AddDate(0, 0, 30)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `<b id="expiry-new">`+expiryText(want)+`</b>`) {
		t.Fatalf("extend confirmation: %d, want the new expiry %s\n%s", resp.StatusCode, expiryText(want), page)
	}
	form := confirmForm(t, page)
	resp, _ = c.do("POST", "/actions/policy/extend", form, nil)
	flash, page = c.follow(resp)
	if !strings.HasPrefix(flash, "alice: expiry extended to "+expiryText(want)+".") {
		t.Errorf("flash %q", flash)
	}
	if !strings.Contains(page, `data-at="`+want.Format(time.RFC3339)+`"`) {
		t.Errorf("alice's page does not show the new expiry %s", want)
	}
	p, err := b.store.Policy(context.Background(), policy.ScopeUser, "alice")
	if err != nil || p.Expiry == nil || !p.Expiry.At.Equal(want) || p.Quota == nil || p.Quota.Bytes != aliceQuota || !strings.HasSuffix(p.UpdatedBy, " for "+opUser) {
		t.Errorf("alice's policy after the extension: %+v (%v); want expiry %s, the quota kept, by the console for %s", p, err, want, opUser)
	}
	// The same confirmation posted again (a second tab, a double
	// submit) is refused: the expiry it was made for has changed.
	resp, page = c.do("POST", "/actions/policy/extend", form, nil)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(page, "expiry changed since the confirmation") {
		t.Errorf("a stale extension: %d\n%s", resp.StatusCode, page)
	}
	if p2, _ := b.store.Policy(context.Background(), policy.ScopeUser, "alice"); !p2.Expiry.At.Equal(want) {
		t.Errorf("the stale extension changed the expiry to %s", p2.Expiry.At)
	}
	// until a date: the account works through it.
	until := want.AddDate(0, 0, 5).Format(time.DateOnly)
	_, page = c.get("/confirm/policy/extend?user=alice&until=" + until)
	resp, _ = c.do("POST", "/actions/policy/extend", confirmForm(t, page), nil)
	if flash, _ := c.follow(resp); !strings.HasPrefix(flash, "alice: expiry extended to the end of "+until+" (UTC).") {
		t.Errorf("flash %q", flash)
	}

	audits := b.consoleAudits(func(l []cmdsvc.Audit) bool {
		return countAudits(l, "policy-reset", cmdsvc.PhaseDone, opUser) == 2 && countAudits(l, "policy-set", cmdsvc.PhaseDone, opUser) == 2
	})
	for _, a := range audits {
		if a.Action != "policy-reset" && a.Action != "policy-set" {
			continue
		}
		if a.Args["user"] == "carol" && a.Args["kind"] != policy.KindTime {
			t.Errorf("carol's reset audited as %+v", a)
		}
		if !a.OK || (a.Args["user"] != "alice" && a.Args["user"] != "carol") || a.Args["remote"] != "127.0.0.1" || a.Subject != "ocserv.ledger."+a.Action {
			t.Errorf("audit %+v", a)
		}
		if a.Action == "policy-set" && (a.Args["expire"] == "" || a.Args["previous"] == "") {
			t.Errorf("an extension's audit without the old and new expiry: %+v", a)
		}
	}
}

// Bad input gets a page naming what was wrong, and changes nothing.
func TestPolicyBadInput(t *testing.T) {
	b := newBench(t, benchOpts{policies: true})
	exp := b.seedPolicies()
	c := b.client()
	c.mustLogin(opUser, opPass)
	tok := c.csrf()
	for _, tc := range []struct {
		method, path string
		form         url.Values
		status       int
		msg          string
	}{
		{"GET", "/confirm/policy/extend?user=alice&days=-5", nil, 400, `days: &#34;-5&#34; is not a whole number of days from 1 to 3660`},
		{"GET", "/confirm/policy/extend?user=alice&days=0", nil, 400, "is not a whole number of days"},
		{"GET", "/confirm/policy/extend?user=alice&days=1.5", nil, 400, "is not a whole number of days"},
		{"GET", "/confirm/policy/extend?user=alice&until=2026-13-45", nil, 400, `until: &#34;2026-13-45&#34; is not a date like 2026-12-31`},
		{"GET", "/confirm/policy/extend?user=alice&until=31.12.2030", nil, 400, "is not a date like 2026-12-31"},
		{"GET", "/confirm/policy/extend?user=alice&until=2001-01-01", nil, 400, "until: 2001-01-01 is in the past"},
		{"GET", "/confirm/policy/extend?user=alice&until=" + exp.AddDate(0, 0, -2).Format(time.DateOnly), nil, 400, "a later date extends it"},
		{"GET", "/confirm/policy/extend?user=alice&days=3&until=2030-01-01", nil, 400, "not both"},
		{"GET", "/confirm/policy/extend?user=alice", nil, 400, "give a number of days"},
		{"GET", "/confirm/policy/extend?user=bob&days=3", nil, 400, "bob has no expiry to extend"},
		{"GET", "/confirm/policy/reset?user=alice&kind=bytes", nil, 400, "kind: &#34;bytes&#34; is not quota or time"},
		{"GET", "/confirm/policy/reset?user=bob&kind=quota", nil, 400, "bob has no quota limit to reset"},
		{"GET", "/confirm/policy/reset?user=dave", nil, 404, "No policy applies to dave"},
		{"GET", "/confirm/policy/reset?user=..%2Fetc", nil, 400, "Bad input: user:"},
		{"GET", "/confirm/policy/reset?user=j%C3%B6rg%20smith&kind=quota", nil, 400, "Bad input: user:"},
		{"GET", "/confirm/policy/grant?user=alice", nil, 404, "Unknown policy action"},
		{"POST", "/actions/policy/reset", url.Values{"csrf": {tok}, "user": {"alice"}, "kind": {"all"}}, 400, "is not quota or time"},
		{"POST", "/actions/policy/reset", url.Values{"csrf": {tok}, "user": {"al ice"}, "kind": {"quota"}}, 400, "Bad input: user:"},
		{"POST", "/actions/policy/extend", url.Values{"csrf": {tok}, "user": {"alice"}, "current": {exp.Format(time.RFC3339)}, "expire": {"tomorrow"}}, 400, "must be RFC 3339 instants"},
		// A forged form that would shorten the account.
		{"POST", "/actions/policy/extend", url.Values{"csrf": {tok}, "user": {"alice"}, "current": {exp.Format(time.RFC3339)},
			"expire": {exp.AddDate(0, 0, -3).Format(time.RFC3339)}}, 400, "is not later than the current expiry"},
		// One made for an expiry that is not alice's.
		{"POST", "/actions/policy/extend", url.Values{"csrf": {tok}, "user": {"alice"}, "current": {exp.AddDate(0, 0, -1).Format(time.RFC3339)},
			"expire": {exp.AddDate(0, 0, 9).Format(time.RFC3339)}}, 409, "expiry changed since the confirmation"},
	} {
		resp, page := c.do(tc.method, tc.path, tc.form, nil)
		if resp.StatusCode != tc.status || !strings.Contains(page, tc.msg) {
			t.Errorf("%s %s %v: %d, want %d with %q\n%s", tc.method, tc.path, tc.form, resp.StatusCode, tc.status, tc.msg, page)
		}
		if strings.Contains(page, "goroutine") || strings.Contains(page, ".go:") {
			t.Errorf("%s %s: a stack trace on the page", tc.method, tc.path)
		}
	}
	p, _ := b.store.Policy(context.Background(), policy.ScopeUser, "alice")
	if !p.Expiry.At.Equal(exp) || p.UpdatedBy != "test" || len(b.resets("alice")) != 0 {
		t.Errorf("bad input changed alice's policy: %+v, resets %+v", p, b.resets("alice"))
	}
}

// A viewer sees where alice stands but no policy action; a forged
// request (with the viewer's own valid CSRF token) is refused by the
// console and audited as refused; requests without a valid token or
// without a session are refused before any handler. Nothing changes.
func TestPolicyActionsRefused(t *testing.T) {
	b := newBench(t, benchOpts{policies: true})
	exp := b.seedPolicies()
	v := b.client()
	v.mustLogin(viewerUser, viewerPass)
	_, page := v.get("/users/alice")
	if !strings.Contains(page, `id="policy-verdict"`) {
		t.Error("the viewer does not see alice's policy")
	}
	for _, button := range []string{`id="quota-reset"`, `id="time-reset"`, `id="expiry-extend"`, `action="/confirm/`} {
		if strings.Contains(page, button) {
			t.Errorf("the viewer's page has %s", button)
		}
	}
	if resp, _ := v.get("/confirm/policy/reset?user=alice&kind=quota"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("viewer confirmation page: %d", resp.StatusCode)
	}
	vtok := v.csrf()
	for _, f := range []url.Values{
		{"csrf": {vtok}, "user": {"alice"}, "kind": {"quota"}},
		{"csrf": {vtok}, "user": {"alice"}, "current": {exp.Format(time.RFC3339)}, "expire": {exp.AddDate(1, 0, 0).Format(time.RFC3339)}},
	} {
		action := "reset"
		if f.Has("expire") {
			action = "extend"
		}
		resp, body := v.do("POST", "/actions/policy/"+action, f, nil)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "viewer") {
			t.Errorf("viewer's forged %s: %d\n%s", action, resp.StatusCode, body)
		}
	}
	b.consoleAudits(func(l []cmdsvc.Audit) bool {
		return countAudits(l, "policy-reset", cmdsvc.PhaseRefused, viewerUser) == 1 && countAudits(l, "policy-set", cmdsvc.PhaseRefused, viewerUser) == 1
	})

	op := b.client()
	op.mustLogin(opUser, opPass)
	tok := op.csrf()
	reset := url.Values{"user": {"alice"}, "kind": {"quota"}, "return": {"/users/alice"}}
	for name, tc := range map[string]struct {
		form url.Values
		hdr  map[string]string
		want int
	}{
		"no token":    {reset, nil, http.StatusForbidden},
		"wrong token": {withCSRF(reset, tok[:len(tok)-2]+"xx"), nil, http.StatusForbidden},
		"viewer's":    {withCSRF(reset, vtok), nil, http.StatusForbidden},
		"cross-site":  {withCSRF(reset, tok), map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
	} {
		if resp, body := op.do("POST", "/actions/policy/reset", tc.form, tc.hdr); resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d\n%s", name, resp.StatusCode, tc.want, body)
		}
	}
	if resp, _ := b.client().do("POST", "/actions/policy/reset", withCSRF(reset, tok), nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("cookie-less: %d", resp.StatusCode)
	}
	p, _ := b.store.Policy(context.Background(), policy.ScopeUser, "alice")
	if len(b.resets("alice")) != 0 || !p.Expiry.At.Equal(exp) {
		t.Fatalf("a refused request changed alice's policy: resets %+v, expiry %s", b.resets("alice"), p.Expiry.At)
	}
}

// The ledger checks the console key's role itself: a console key the
// ledger trusts only read-only gets its reset refused there, and the
// operator sees the ledger's reason; the console audits the refusal.
func TestPolicyLedgerRefusesReadOnlyKey(t *testing.T) {
	b := newBench(t, benchOpts{policies: true, ledgerRole: opauth.ReadOnly})
	b.seedPolicies()
	c := b.client()
	c.mustLogin(opUser, opPass)
	_, page := c.get("/confirm/policy/reset?user=alice&kind=quota")
	resp, _ := c.do("POST", "/actions/policy/reset", confirmForm(t, page), nil)
	flash, _ := c.follow(resp)
	if !strings.HasPrefix(flash, "The ledger refused policy-reset of alice:") || !strings.Contains(flash, "read-write") {
		t.Errorf("flash %q", flash)
	}
	if len(b.resets("alice")) != 0 {
		t.Fatal("the ledger reset the quota for a read-only key")
	}
	b.consoleAudits(func(l []cmdsvc.Audit) bool {
		for _, a := range l {
			if a.Action == "policy-reset" && a.Phase == cmdsvc.PhaseDone && !a.OK && a.Code != "" && a.Actor == opUser {
				return true
			}
		}
		return false
	})
}

// The policies list shows every policy, users linked to their page; with
// policies off the console has no policy view at all.
func TestPoliciesList(t *testing.T) {
	b := newBench(t, benchOpts{policies: true})
	b.seedPolicies()
	c := b.client()
	c.mustLogin(viewerUser, viewerPass)
	resp, page := c.get("/policies")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/policies: %d\n%s", resp.StatusCode, page)
	}
	for _, want := range []string{`data-scope="user" data-name="alice"`, `<a href="/users/alice">alice</a>`, "quota: 95.4 MiB total per lifetime",
		`data-scope="group" data-name="staff"`, "sessions: at most 2 (past it a new login is refused)", `href="/policies"`} {
		if !strings.Contains(page, want) {
			t.Errorf("/policies lacks %q", want)
		}
	}
	if _, page := c.get("/policies?scope=group"); strings.Contains(page, `data-name="alice"`) || !strings.Contains(page, `data-name="staff"`) {
		t.Error("/policies?scope=group: want staff only")
	}
	if resp, page := c.get("/policies?scope=everyone"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "is not user or group") {
		t.Errorf("bad scope: %d", resp.StatusCode)
	}

	off := newBench(t, benchOpts{noCommands: true})
	off.seedFleet()
	oc := off.client()
	oc.mustLogin(opUser, opPass)
	if resp, page := oc.get("/policies"); resp.StatusCode != http.StatusNotFound || !strings.Contains(page, "LEDGER_POLICY=off") {
		t.Errorf("/policies with policies off: %d", resp.StatusCode)
	}
	if _, page := oc.get("/users/alice"); strings.Contains(page, `id="policy"`) || strings.Contains(page, `href="/policies"`) {
		t.Error("with policies off the user page has a policy section or the nav a policies link")
	}
}

func TestExtendExpiry(t *testing.T) {
	now := time.Date(2026, 11, 24, 14, 5, 0, 0, time.UTC)
	cur := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC) // through 2026-12-31
	for _, tc := range []struct {
		cur         time.Time
		days, until string
		want        time.Time
		bad         string
	}{
		{cur, "30", "", time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC), ""},
		// expired: from the end of today
		{time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), "7", "", time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC), ""},
		{cur, "", "2027-03-31", time.Date(2027, 4, 1, 0, 0, 0, 0, time.UTC), ""},
		{cur, "-1", "", time.Time{}, "is not a whole number of days"},
		{cur, "3661", "", time.Time{}, "from 1 to 3660"},
		{cur, "", "2026-12-31", time.Time{}, "a later date extends it"},
		{cur, "", "2026-02-30", time.Time{}, "is not a date"},
		{cur, "", "2040-01-01", time.Time{}, "more than 3660 days ahead"},
		{time.Time{}, "3", "", time.Time{}, "no expiry date yet"},
	} {
		got, bad := extendExpiry(tc.cur, now, tc.days, tc.until)
		if !got.Equal(tc.want) || (tc.bad == "") != (bad == "") || !strings.Contains(bad, tc.bad) {
			t.Errorf("extend %s by %q/%q: %s %q, want %s %q", tc.cur, tc.days, tc.until, got, bad, tc.want, tc.bad)
		}
	}
	if throughDay(cur) != "2026-12-31" || throughDay(now) != "" {
		t.Error("throughDay")
	}
}
