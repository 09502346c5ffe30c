package console

import (
	"flag"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/browsertest"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
)

// -screenshots DIR writes the main pages as PNG files (make screenshots
// puts them in docs/console/; the README links them).
var screenshots = flag.String("screenshots", "", "directory to write console screenshots into")

// login logs in through the form and waits for the overview.
func login(br *browsertest.Browser, base, user, pw string) {
	br.Do("log in as "+user,
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), pw),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("total-online")),
	)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBrowserConsole drives the console in a real headless Chromium
// against the real stack of the bench: login, the overview, a connect
// appearing on the open online page without a reload, the user page with
// its history and chart, search and audit pages, and a viewer without
// action buttons; the browser must report no console error and every page
// must carry the CSP header.
func TestBrowserConsole(t *testing.T) {
	b := newBench(t, benchOpts{})
	b.seedFleet()
	br := browsertest.New(t)
	login(br, b.url, opUser, opPass)

	br.Do("overview", chromedp.WaitVisible(chromedp.CSS(`tr[data-server="vpn2"]`)))
	if servers, total := br.Text("#total-servers"), br.Text("#total-online"); servers != "2" || total != "3" {
		t.Fatalf("overview: %s servers, %s online; want 2 and 3", servers, total)
	}
	br.Shot(*screenshots, "overview")

	// The online list; a new connect must appear within 2s, the page not
	// reloaded (a marker set in the page survives).
	br.Do("online list",
		chromedp.Navigate(b.url+"/online"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-user="alice"]`)),
	)
	browsertest.Get(br, "mark the page", chromedp.Evaluate[int](`window.__notReloaded = 42`))
	// The page's stream is subscribed to the live state before the
	// connect is published (the server counts its subscribers).
	waitFor(t, "the page's live stream", func() bool { return b.live.subscribers() >= 1 })
	start := time.Now()
	g := b.gen("vpn2")
	b.feed(g.Connect(ledgertest.UID(), ledgertest.Conn{User: "dave", IPReal: "198.51.100.99", VPN4: "192.168.251.77", Worker: 4100, Device: "vpns3"}, time.Now().UTC()))
	if err := br.Within(2*time.Second, chromedp.WaitVisible(chromedp.CSS(`tr[data-user="dave"]`))); err != nil {
		t.Fatalf("a new connect did not appear on the open page within 2s: %v", err)
	}
	t.Logf("connect → row on the open page: %s", time.Since(start).Round(time.Millisecond))
	if marker := browsertest.Get(br, "read the mark", chromedp.Evaluate[int](`window.__notReloaded || 0`)); marker != 42 {
		t.Fatal("the page was reloaded")
	}
	if kicks := br.Count(`a[data-action="kick"]`); kicks != 4 {
		t.Errorf("%d kick buttons for 4 sessions", kicks)
	}
	br.Shot(*screenshots, "online")

	// The user page: three sessions of alice and a drawn chart.
	br.Do("user page",
		chromedp.Navigate(b.url+"/users/alice"),
		chromedp.WaitVisible(chromedp.CSS(`#usage-chart canvas`)),
	)
	if rows := br.Count(`#history tr[data-session]`); rows != 3 {
		t.Errorf("alice's history shows %d sessions, want 3", rows)
	}
	br.Shot(*screenshots, "user")

	// Search: who had alice's address a minute ago.
	at := time.Now().UTC().Add(-time.Minute).Format("2006-01-02T15:04:05")
	br.Do("search",
		chromedp.Navigate(b.url+"/search"),
		chromedp.WaitVisible(chromedp.CSS(`#who-form`)),
		chromedp.SendKeys(chromedp.CSS(`#who-form input[name="ip"]`), "192.168.250.50"),
		chromedp.SendKeys(chromedp.CSS(`#who-form input[name="at"]`), at),
		chromedp.Submit(chromedp.CSS(`#who-form`)),
		chromedp.WaitVisible(chromedp.CSS(`#results tr[data-session]`)),
	)
	br.Shot(*screenshots, "search")
	br.Do("audit", chromedp.Navigate(b.url+"/audit"), chromedp.WaitVisible(chromedp.ID("audit")))
	br.Shot(*screenshots, "audit")

	// A kick through the confirmation page.
	br.Do("kick",
		chromedp.Navigate(b.url+"/online?user=bob"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-user="bob"] a[data-action="kick"]`)),
		chromedp.Click(chromedp.CSS(`tr[data-user="bob"] a[data-action="kick"]`)),
		chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.SendKeys(chromedp.CSS(`input[name="reason"]`), "browser test"),
		chromedp.Click(chromedp.ID("confirm")),
		chromedp.WaitVisible(chromedp.ID("flash")),
	)
	if flash := br.Text("#flash"); flash != "bob: kick done on vpn1." {
		t.Errorf("flash after the kick: %q", flash)
	}

	// A viewer: the same list without any action.
	br.Do("log out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("username")))
	login(br, b.url, viewerUser, viewerPass)
	br.Do("viewer online list", chromedp.Navigate(b.url+"/online"), chromedp.WaitVisible(chromedp.CSS(`tr[data-user="alice"]`)))
	if kicks := br.Count(`a[data-action="kick"]`); kicks != 0 {
		t.Errorf("the viewer sees %d kick buttons", kicks)
	}
	br.CheckClean(CSP)
}

// TestBrowserPolicy drives the policy views in a real headless Chromium:
// an operator sees alice denied for her quota, resets it through the
// confirmation and sees her allowed with the whole quota left, extends
// her expiry by 30 days and sees the new date, and gets a clear message
// for a negative extension; a viewer sees her standing without any action
// button, and a form the viewer forges in the page (with their own valid
// CSRF token) is refused by the server and audited.
func TestBrowserPolicy(t *testing.T) {
	b := newBench(t, benchOpts{policies: true})
	exp := b.seedPolicies()
	br := browsertest.New(t)
	login(br, b.url, opUser, opPass)

	br.Do("alice's page", chromedp.Navigate(b.url+"/users/alice"), chromedp.WaitVisible(chromedp.ID("policy-verdict")))
	if got := attr(br, "#policy-verdict", "data-allowed"); got != "false" {
		t.Fatalf("alice's verdict: data-allowed=%q, want false (quota used up)", got)
	}
	br.Shot(*screenshots, "policy")
	br.Do("reset the quota",
		chromedp.Click(chromedp.ID("quota-reset")),
		chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.Click(chromedp.ID("confirm")),
		chromedp.WaitVisible(chromedp.ID("flash")),
	)
	if flash := br.Text("#flash"); flash != "alice: quota count reset for this period. Now allowed. Quota: 95.4 MiB of 95.4 MiB left." {
		t.Errorf("flash after the reset: %q", flash)
	}
	if got, left := attr(br, "#policy-verdict", "data-allowed"), br.Text("#quota-remaining"); got != "true" || left != "95.4 MiB" {
		t.Errorf("after the reset: data-allowed=%q, %q left; want true and the whole quota", got, left)
	}

	want := exp.AddDate(0, 0, 30)
	br.Do("extend the expiry",
		chromedp.SendKeys(chromedp.CSS(`#extend-form input[name="days"]`), "30"),
		chromedp.Click(chromedp.ID("expiry-extend")),
		chromedp.WaitVisible(chromedp.ID("expiry-new")),
	)
	if got := br.Text("#expiry-new"); got != expiryText(want) {
		t.Errorf("the confirmation says the new expiry is %q, want %q", got, expiryText(want))
	}
	br.Do("confirm the extension", chromedp.Click(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.ID("flash")))
	if got := attr(br, "#expiry-at", "data-at"); got != want.Format(time.RFC3339) {
		t.Errorf("alice's page shows the expiry %q, want %s", got, want.Format(time.RFC3339))
	}
	br.Do("a negative extension",
		chromedp.SendKeys(chromedp.CSS(`#extend-form input[name="days"]`), "-3"),
		chromedp.Click(chromedp.ID("expiry-extend")),
		chromedp.WaitVisible(chromedp.ID("error-message")),
	)
	if msg := br.Text("#error-message"); msg != `Bad extension: days: "-3" is not a whole number of days from 1 to 3660 (an extension cannot shorten the account; ctl expire sets any date).` {
		t.Errorf("message for a negative extension: %q", msg)
	}

	br.Do("log out", chromedp.Navigate(b.url+"/"), chromedp.WaitVisible(chromedp.ID("logout")), chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("username")))
	login(br, b.url, viewerUser, viewerPass)
	br.Do("viewer: alice's page", chromedp.Navigate(b.url+"/users/alice"), chromedp.WaitVisible(chromedp.ID("policy-verdict")))
	if n := br.Count(`#quota-reset, #time-reset, #expiry-extend, #extend-form`); n != 0 {
		t.Errorf("the viewer sees %d policy action controls", n)
	}
	// The viewer builds the operator's form in the page and posts it.
	browsertest.Get(br, "forge a reset form", chromedp.Evaluate[bool](`(() => {
		const f = document.createElement("form");
		f.method = "post"; f.action = "/actions/policy/reset";
		for (const [k, v] of [["csrf", document.querySelector('meta[name="csrf-token"]').content], ["user", "alice"], ["kind", "quota"], ["return", "/users/alice"]]) {
			const i = document.createElement("input"); i.type = "hidden"; i.name = k; i.value = v; f.appendChild(i);
		}
		document.body.appendChild(f); f.submit(); return true;
	})()`))
	br.Do("the refusal", chromedp.WaitVisible(chromedp.ID("error-message")))
	if msg := br.Text("#error-message"); msg != "Your account is a viewer: actions need an operator account." {
		t.Errorf("the viewer's forged reset: %q", msg)
	}
	if rs := b.resets("alice"); len(rs) != 1 {
		t.Errorf("alice has %d resets, want the operator's one", len(rs))
	}
	b.consoleAudits(func(l []cmdsvc.Audit) bool {
		return countAudits(l, "policy-reset", cmdsvc.PhaseDone, opUser) == 1 && countAudits(l, "policy-set", cmdsvc.PhaseDone, opUser) == 1 &&
			countAudits(l, "policy-reset", cmdsvc.PhaseRefused, viewerUser) == 1
	})
	// The two refusals the test caused are the browser's only complaints.
	br.CheckClean(CSP, "status of 400 (Bad Request) (network "+b.url+"/confirm/policy/extend?",
		"status of 403 (Forbidden) (network "+b.url+"/actions/policy/reset:")
}

// attr is an attribute of the first element sel matches.
func attr(br *browsertest.Browser, sel, name string) string {
	return browsertest.Get(br, "attribute "+name+" of "+sel, chromedp.AttributeValue(chromedp.CSS(sel), name)).Value
}
