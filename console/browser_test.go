package console

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
)

// -screenshots DIR writes the main pages as PNG files (make screenshots
// puts them in docs/console/; the README links them).
var screenshots = flag.String("screenshots", "", "directory to write console screenshots into")

// chromium finds Debian's chromium. Without it the browser tests skip,
// except under CI, which installs it: there a missing browser fails.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; .ci/run installs Debian's chromium package")
	}
	t.Skip("chromium is not installed (apt-get install chromium); the browser tests need a real one")
	return ""
}

// browser is one headless Chromium with a fresh profile, recording what
// its console and log report and the CSP header of every page it loads.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string
	docCSP   map[string]string // page URL → its Content-Security-Policy
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1360, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	br := &browser{t: t, ctx: ctx, docCSP: map[string]string{}}
	// Start the browser, then subscribe before any page is loaded.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	msgs := chromedp.Console(ctx)
	resps := chromedp.Events(ctx, network.ResponseReceived)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			switch m.Type {
			case chromedp.ConsoleError, chromedp.ConsoleWarning, chromedp.ConsoleException:
				br.mu.Lock()
				br.problems = append(br.problems, fmt.Sprintf("%s (%s %s:%d)", m.String(), m.Source, m.URL, m.Line))
				br.mu.Unlock()
			}
		}
	}()
	go func() {
		for ev, err := range resps {
			if err != nil {
				return
			}
			if ev.Type == network.ResourceTypeDocument && ev.Response != nil {
				csp, _ := ev.Response.Headers["Content-Security-Policy"].(string)
				br.mu.Lock()
				br.docCSP[ev.Response.URL] = csp
				br.mu.Unlock()
			}
		}
	}()
	return br
}

func (br *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	br.t.Helper()
	ctx, cancel := context.WithTimeout(br.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		br.t.Fatalf("%s: %v", what, err)
	}
}

// within runs steps with their own deadline (a wait that must succeed
// quickly).
func (br *browser) within(d time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(br.ctx, d)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

func get[T any](br *browser, what string, a chromedp.Action[T]) T {
	br.t.Helper()
	ctx, cancel := context.WithTimeout(br.ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		br.t.Fatalf("%s: %v", what, err)
	}
	return v
}

func (br *browser) text(sel string) string {
	br.t.Helper()
	return get(br, "text of "+sel, chromedp.Text(chromedp.CSS(sel)))
}

func (br *browser) count(sel string) int {
	br.t.Helper()
	return len(get(br, "count "+sel, chromedp.Nodes(chromedp.CSSAll(sel), chromedp.AtLeast(0))))
}

func (br *browser) login(base, user, pw string) {
	br.t.Helper()
	br.do("log in as "+user,
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), pw),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("total-online")),
	)
}

func (br *browser) shot(name string) {
	br.t.Helper()
	if *screenshots == "" {
		return
	}
	png := get(br, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.MkdirAll(*screenshots, 0o755); err != nil {
		br.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*screenshots, name+".png"), png, 0o644); err != nil {
		br.t.Fatal(err)
	}
}

func (br *browser) noProblems() {
	br.t.Helper()
	br.mu.Lock()
	defer br.mu.Unlock()
	for _, p := range br.problems {
		br.t.Errorf("browser reported: %s", p)
	}
	if len(br.docCSP) == 0 {
		br.t.Error("no page response was seen")
	}
	for u, csp := range br.docCSP {
		if csp != CSP {
			br.t.Errorf("page %s: Content-Security-Policy %q, want %q", u, csp, CSP)
		}
	}
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
	br := newBrowser(t)
	br.login(b.url, opUser, opPass)

	br.do("overview", chromedp.WaitVisible(chromedp.CSS(`tr[data-server="vpn2"]`)))
	if servers, total := br.text("#total-servers"), br.text("#total-online"); servers != "2" || total != "3" {
		t.Fatalf("overview: %s servers, %s online; want 2 and 3", servers, total)
	}
	br.shot("overview")

	// The online list; a new connect must appear within 2s, the page not
	// reloaded (a marker set in the page survives).
	br.do("online list",
		chromedp.Navigate(b.url+"/online"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-user="alice"]`)),
	)
	get(br, "mark the page", chromedp.Evaluate[int](`window.__notReloaded = 42`))
	// The page's stream is subscribed to the live state before the
	// connect is published (the server counts its subscribers).
	waitFor(t, "the page's live stream", func() bool { return b.live.subscribers() >= 1 })
	start := time.Now()
	g := b.gen("vpn2")
	b.feed(g.Connect(ledgertest.UID(), ledgertest.Conn{User: "dave", IPReal: "198.51.100.99", VPN4: "192.168.251.77", Worker: 4100, Device: "vpns3"}, time.Now().UTC()))
	if err := br.within(2*time.Second, chromedp.WaitVisible(chromedp.CSS(`tr[data-user="dave"]`))); err != nil {
		t.Fatalf("a new connect did not appear on the open page within 2s: %v", err)
	}
	t.Logf("connect → row on the open page: %s", time.Since(start).Round(time.Millisecond))
	if marker := get(br, "read the mark", chromedp.Evaluate[int](`window.__notReloaded || 0`)); marker != 42 {
		t.Fatal("the page was reloaded")
	}
	if kicks := br.count(`a[data-action="kick"]`); kicks != 4 {
		t.Errorf("%d kick buttons for 4 sessions", kicks)
	}
	br.shot("online")

	// The user page: three sessions of alice and a drawn chart.
	br.do("user page",
		chromedp.Navigate(b.url+"/users/alice"),
		chromedp.WaitVisible(chromedp.CSS(`#usage-chart canvas`)),
	)
	if rows := br.count(`#history tr[data-session]`); rows != 3 {
		t.Errorf("alice's history shows %d sessions, want 3", rows)
	}
	br.shot("user")

	// Search: who had alice's address a minute ago.
	at := time.Now().UTC().Add(-time.Minute).Format("2006-01-02T15:04:05")
	br.do("search",
		chromedp.Navigate(b.url+"/search"),
		chromedp.WaitVisible(chromedp.CSS(`#who-form`)),
		chromedp.SendKeys(chromedp.CSS(`#who-form input[name="ip"]`), "192.168.250.50"),
		chromedp.SendKeys(chromedp.CSS(`#who-form input[name="at"]`), at),
		chromedp.Submit(chromedp.CSS(`#who-form`)),
		chromedp.WaitVisible(chromedp.CSS(`#results tr[data-session]`)),
	)
	br.shot("search")
	br.do("audit", chromedp.Navigate(b.url+"/audit"), chromedp.WaitVisible(chromedp.ID("audit")))
	br.shot("audit")

	// A kick through the confirmation page.
	br.do("kick",
		chromedp.Navigate(b.url+"/online?user=bob"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-user="bob"] a[data-action="kick"]`)),
		chromedp.Click(chromedp.CSS(`tr[data-user="bob"] a[data-action="kick"]`)),
		chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.SendKeys(chromedp.CSS(`input[name="reason"]`), "browser test"),
		chromedp.Click(chromedp.ID("confirm")),
		chromedp.WaitVisible(chromedp.ID("flash")),
	)
	if flash := br.text("#flash"); flash != "bob: kick done on vpn1." {
		t.Errorf("flash after the kick: %q", flash)
	}

	// A viewer: the same list without any action.
	br.do("log out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("username")))
	br.login(b.url, viewerUser, viewerPass)
	br.do("viewer online list", chromedp.Navigate(b.url+"/online"), chromedp.WaitVisible(chromedp.CSS(`tr[data-user="alice"]`)))
	if kicks := br.count(`a[data-action="kick"]`); kicks != 0 {
		t.Errorf("the viewer sees %d kick buttons", kicks)
	}
	br.noProblems()
}
