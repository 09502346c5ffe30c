package console

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
)

func TestLoginSetsHardenedCookieAndRotatesSession(t *testing.T) {
	b := newBench(t, benchOpts{noCommands: true})
	c := b.client()
	resp, _ := c.login(opUser, opPass)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("login: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var sc *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			sc = ck
		}
	}
	if sc == nil || !sc.HttpOnly || !sc.Secure || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/" || sc.Expires.IsZero() {
		t.Fatalf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/, an expiry", sc)
	}
	if !strings.HasPrefix(sc.Name, "__Host-") {
		t.Errorf("cookie %s lacks the __Host- prefix", sc.Name)
	}
	first := sc.Value
	// The file holds only a hash of the secret.
	raw, _ := os.ReadFile(filepath.Join(b.dir, "sessions.json"))
	_, secret, _ := strings.Cut(first, ".")
	if strings.Contains(string(raw), secret) {
		t.Fatal("the sessions file holds the cookie's secret")
	}
	// A second login from the same browser gets a new session; the old
	// cookie value no longer works.
	c.mustLogin(opUser, opPass)
	old := b.client()
	u, _ := url.Parse(b.url)
	old.jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: first}})
	if resp, _ := old.get("/online"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Fatalf("the session from before the second login still works: %d", resp.StatusCode)
	}
	// A tampered secret is refused.
	forged := b.client()
	id, _, _ := strings.Cut(first, ".")
	forged.jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: id + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}})
	if resp, _ := forged.get("/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("forged secret: %d", resp.StatusCode)
	}
	// Logout ends it.
	resp, _ = c.do("POST", "/logout", url.Values{"csrf": {c.csrf()}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if resp, _ := c.get("/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after logout: %d", resp.StatusCode)
	}
	b.consoleAudits(func(l []cmdsvc.Audit) bool {
		return countAudits(l, AuditLogin, "done", opUser) == 2 && countAudits(l, AuditLogout, "done", opUser) == 1
	})
}

func TestLoginFailuresAuditedAndRateLimited(t *testing.T) {
	b := newBench(t, benchOpts{noCommands: true, loginBurst: 3})
	c := b.client()
	for i := 0; i < 3; i++ {
		resp, body := c.login(opUser, "wrong-password-x")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Wrong user name or password.") {
			t.Fatalf("attempt %d: %d\n%s", i, resp.StatusCode, body)
		}
	}
	// The burst is spent: even the right password waits, and says so.
	resp, body := c.login(opUser, opPass)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "Too many login attempts") {
		t.Fatalf("after the burst: %d\n%s", resp.StatusCode, body)
	}
	// Another name from the same address is limited too (per address).
	if resp, _ := c.login(viewerUser, viewerPass); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("another account from the same address: %d", resp.StatusCode)
	}
	// A password typed into the name field never reaches the audit.
	c.login("my secret password!", "x")
	audits := b.consoleAudits(func(l []cmdsvc.Audit) bool {
		return countAudits(l, AuditLogin, "refused", opUser) == 4 && countAudits(l, AuditLogin, "refused", "(invalid)") == 1
	})
	for _, a := range audits {
		if a.Args["remote"] != "127.0.0.1" {
			t.Errorf("audit without the client address: %+v", a)
		}
		if strings.Contains(a.Actor, "secret") {
			t.Errorf("audit holds what was typed as a name: %+v", a)
		}
	}
}

func TestCSRFAndCookieRequired(t *testing.T) {
	b := newBench(t, benchOpts{})
	b.seedFleet()
	c := b.client()
	c.mustLogin(opUser, opPass)
	tok := c.csrf()
	form := url.Values{"server": {"vpn1"}, "user": {"alice"}, "return": {"/online"}}
	for name, tc := range map[string]struct {
		form url.Values
		hdr  map[string]string
		want int
		msg  string
	}{
		"no token":        {form, nil, http.StatusForbidden, "security token"},
		"wrong token":     {withCSRF(form, tok[:len(tok)-2]+"xx"), nil, http.StatusForbidden, "security token"},
		"cross-site":      {withCSRF(form, tok), map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden, "Cross-origin"},
		"foreign origin":  {withCSRF(form, tok), map[string]string{"Sec-Fetch-Site": "", "Origin": "https://evil.example"}, http.StatusForbidden, "Cross-origin"},
		"token as header": {form, map[string]string{csrfHeader: tok + "x"}, http.StatusForbidden, "security token"},
	} {
		resp, body := c.do("POST", "/actions/kick", tc.form, tc.hdr)
		if resp.StatusCode != tc.want || !strings.Contains(body, tc.msg) {
			t.Errorf("%s: %d, want %d with %q\n%s", name, resp.StatusCode, tc.want, tc.msg, body)
		}
	}
	// Without a cookie at all.
	anon := b.client()
	if resp, body := anon.do("POST", "/actions/kick", withCSRF(form, tok), nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("cookie-less: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := anon.get("/live?view=online"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("cookie-less live stream: %d", resp.StatusCode)
	}
	// None of them reached the host.
	if data, err := os.ReadFile(b.occtl); err == nil && len(data) > 0 {
		t.Fatalf("occtl ran: %s", data)
	}
}

func withCSRF(v url.Values, tok string) url.Values {
	out := url.Values{}
	for k, x := range v {
		out[k] = x
	}
	out.Set("csrf", tok)
	return out
}

func TestOperatorKickSignedForWebUser(t *testing.T) {
	b := newBench(t, benchOpts{})
	b.seedFleet()
	c := b.client()
	c.mustLogin(opUser, opPass)
	resp, body := c.get("/confirm/kick?server=vpn1&user=alice&return=/online")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `action="/actions/kick"`) {
		t.Fatalf("confirm page: %d\n%s", resp.StatusCode, body)
	}
	resp, _ = c.do("POST", "/actions/kick", url.Values{"csrf": {c.csrf()}, "server": {"vpn1"}, "user": {"alice"},
		"reason": {"ticket 42"}, "return": {"/online"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/online" {
		t.Fatalf("kick: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, page := c.get("/online")
	if !strings.Contains(page, "alice: kick done on vpn1.") {
		t.Fatalf("no flash after the kick:\n%s", page)
	}
	argv, _ := os.ReadFile(b.occtl)
	if !strings.Contains(string(argv), "disconnect user alice") {
		t.Fatalf("occtl was not asked to disconnect alice: %q", argv)
	}
	var accepted bool
	for _, a := range b.hostAudits() {
		if a.Action == "kick" && a.Phase == "accepted" {
			accepted = true
			if a.Actor != opUser || a.KeyName != "console" || a.Args["reason"] != "ticket 42" {
				t.Errorf("host audit %+v: want actor %s, key console", a, opUser)
			}
		}
	}
	if !accepted {
		t.Fatalf("the host did not audit the kick: %+v", b.hostAudits())
	}
	b.consoleAudits(func(l []cmdsvc.Audit) bool {
		for _, a := range l {
			if a.Action == "kick" && a.OK && a.Actor == opUser && a.Subject == "ocserv.cmd.vpn1.kick" {
				return true
			}
		}
		return false
	})
}

func TestViewerCannotAct(t *testing.T) {
	b := newBench(t, benchOpts{})
	b.seedFleet()
	c := b.client()
	c.mustLogin(viewerUser, viewerPass)
	_, page := c.get("/online")
	if !strings.Contains(page, `data-user="alice"`) {
		t.Fatalf("the viewer does not see alice:\n%s", page)
	}
	if strings.Contains(page, "/confirm/kick") || strings.Contains(page, "Disconnect</a>") {
		t.Fatal("the viewer's online page offers actions")
	}
	if resp, _ := c.get("/confirm/kick?server=vpn1&user=alice"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("viewer confirm page: %d", resp.StatusCode)
	}
	resp, body := c.do("POST", "/actions/kick", url.Values{"csrf": {c.csrf()}, "server": {"vpn1"}, "user": {"alice"}}, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "viewer") {
		t.Fatalf("viewer kick: %d\n%s", resp.StatusCode, body)
	}
	if data, err := os.ReadFile(b.occtl); err == nil && len(data) > 0 {
		t.Fatalf("occtl ran for a viewer: %s", data)
	}
	b.consoleAudits(func(l []cmdsvc.Audit) bool { return countAudits(l, "kick", "refused", viewerUser) == 1 })
}

func TestSecurityHeadersEverywhere(t *testing.T) {
	b := newBench(t, benchOpts{noCommands: true})
	c := b.client()
	check := func(what string, resp *http.Response) {
		t.Helper()
		for k, want := range map[string]string{
			"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
			"X-Frame-Options": "DENY",
		} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", what, k, got, want)
			}
		}
	}
	resp, _ := c.get("/login")
	check("login page", resp)
	resp, _ = c.get("/nope")
	check("404", resp)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown path: %d", resp.StatusCode)
	}
	resp, _ = c.do("POST", "/login", url.Values{"x": {"y"}}, map[string]string{"Sec-Fetch-Site": "cross-site"})
	check("cross-origin refusal", resp)
	c.mustLogin(opUser, opPass)
	resp, page := c.get("/")
	check("overview", resp)
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("page Cache-Control %q", resp.Header.Get("Cache-Control"))
	}
	// No inline script, handler or style anywhere in the page.
	for _, bad := range []string{"<script>", "onclick=", "onload=", "style=", "javascript:"} {
		if strings.Contains(page, bad) {
			t.Errorf("the overview contains %q", bad)
		}
	}
	// Assets: under checksum URLs, immutable; a stale checksum is a 404.
	u, _ := b.s.assets.url("vendor/htmx.min.js")
	resp, _ = c.get(u)
	check("asset", resp)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
		t.Errorf("asset %s: %d %q %q", u, resp.StatusCode, resp.Header.Get("Cache-Control"), resp.Header.Get("Content-Type"))
	}
	if resp, _ := c.get("/static/0000000000000000/vendor/htmx.min.js"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("stale checksum: %d", resp.StatusCode)
	}
}

func TestBadInputGetsAClearMessage(t *testing.T) {
	b := newBench(t, benchOpts{})
	b.seedFleet()
	c := b.client()
	c.mustLogin(opUser, opPass)
	for _, tc := range []struct {
		path string
		want int
		msg  string
	}{
		{"/search?who=1&ip=192.168.250.50&at=yesterday", 400, "at: &#34;yesterday&#34; is not a time"},
		{"/search?who=1&ip=not-an-ip&at=2026-11-24+07:18", 400, "ip: &#34;not-an-ip&#34; is not an IP address"},
		{"/search?history=1&from=2026-11-25&to=2026-11-24", 400, "is not before to"},
		{"/search?history=1&cursor=garbage", 400, "cursor: not a cursor"},
		{"/search?history=1&user=%01", 400, "user: contains a control character"},
		{"/audit?from=never", 400, "from: &#34;never&#34; is not a time"},
		{"/online?user=" + strings.Repeat("a", 200), 400, "user: longer than 128"},
		{"/confirm/reboot?server=vpn1&user=alice", 400, "unknown action"},
		{"/confirm/kick?server=vpn1.evil&user=alice", 400, "is not a server id"},
		{"/confirm/kick?server=vpn1&user=-rf", 400, "user:"},
		{"/confirm/kick?server=vpn1&user=alice&for=forever", 400, "for: &#34;forever&#34; is not a duration"},
		{"/users/alice?cursor=zzz", 400, "cursor: not a cursor"},
		{"/live?view=everything", 400, "Bad live view"},
	} {
		resp, body := c.get(tc.path)
		if resp.StatusCode != tc.want || !strings.Contains(body, tc.msg) {
			t.Errorf("%s: %d, want %d with %q\n%s", tc.path, resp.StatusCode, tc.want, tc.msg, body)
		}
		if strings.Contains(body, "goroutine") || strings.Contains(body, ".go:") {
			t.Errorf("%s: the page shows a stack trace", tc.path)
		}
	}
	// A redirect target is a local path only.
	for _, ret := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example"} {
		resp, _ := c.do("POST", "/actions/unkick", url.Values{"csrf": {c.csrf()}, "server": {"vpn1"}, "user": {"alice"}, "return": {ret}}, nil)
		if loc := resp.Header.Get("Location"); loc != "/" {
			t.Errorf("return %q redirected to %q", ret, loc)
		}
	}
}

func TestPagesShowTheFleet(t *testing.T) {
	b := newBench(t, benchOpts{noCommands: true})
	b.seedFleet()
	c := b.client()
	c.mustLogin(viewerUser, viewerPass)
	_, page := c.get("/")
	for _, want := range []string{`data-server="vpn1"`, `data-server="vpn2"`, `<b id="total-online">3</b>`, `<b id="total-users">3</b>`} {
		if !strings.Contains(page, want) {
			t.Errorf("overview lacks %s", want)
		}
	}
	if strings.Contains(page, `data-server="console"`) {
		t.Error("the console's own audit id is listed as a server")
	}
	_, page = c.get("/online?server=vpn1")
	if !strings.Contains(page, `data-user="alice"`) || !strings.Contains(page, `data-user="bob"`) || strings.Contains(page, `data-user="carol"`) {
		t.Errorf("online filtered by vpn1:\n%s", page)
	}
	_, page = c.get("/users/alice")
	if strings.Count(page, `<tr data-session=`) != 3 || !strings.Contains(page, `data-chart="{&#34;t&#34;:[`) {
		t.Errorf("user page: want 3 sessions and chart data\n%s", page)
	}
	_, page = c.get("/search?who=1&ip=192.168.250.50&at=" + url.QueryEscape(time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)))
	if !strings.Contains(page, `<a href="/users/alice">alice</a>`) {
		t.Errorf("who did not find alice:\n%s", page)
	}
}
