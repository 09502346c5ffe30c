//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/console"
	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/browsertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/syncbuf"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// consoleFleet is a bed's real ocserv with the real shipper (live state
// every second), the real command service trusting the console's key
// read-write, and the real bin/ledger serving the web console, all on an
// embedded NATS server.
type consoleFleet struct {
	t    *testing.T
	b    *testbed.Bed
	srv  *server.Server
	url  string // the console
	logs *syncbuf.Buffer
}

const (
	webOp, webOpPass         = "olga", "olga-e2e-password"
	webViewer, webViewerPass = "victor", "victor-e2e-password"
)

func startConsoleFleet(t *testing.T) *consoleFleet {
	t.Helper()
	f := &consoleFleet{t: t, srv: natstest.Run(t), logs: &syncbuf.Buffer{}}
	f.b = testbed.New(t, testbed.Options{})
	startShipperConfig(t, liveConfig(t, f.b, f.srv.ClientURL()))
	dir := t.TempDir()

	// The console's key, trusted read-write by the host.
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	keyFile := filepath.Join(dir, "console.nk")
	if err := os.WriteFile(keyFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	f.startCommander(dir, pub)

	hook, _ := testbed.HookBinary()
	ledgerBin := filepath.Join(filepath.Dir(hook), "ledger")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	os.WriteFile(filepath.Join(dir, "operators.keys"), nil, 0o600)
	cfg := filepath.Join(dir, "ledger.env")
	os.WriteFile(cfg, []byte(strings.Join([]string{
		"NATS_URL=" + f.srv.ClientURL(),
		"LEDGER_DATABASE=" + filepath.Join(dir, "ledger.db"),
		"LEDGER_TRUSTED_KEYS=" + filepath.Join(dir, "operators.keys"),
		"LEDGER_NONCE_FILE=" + filepath.Join(dir, "nonces"),
		"LEDGER_CONSOLE=on",
		"LEDGER_CONSOLE_LISTEN=" + addr,
		"LEDGER_CONSOLE_USERS=" + filepath.Join(dir, "console-users"),
		"LEDGER_CONSOLE_KEY=" + keyFile,
		"LEDGER_CONSOLE_STATE_DIR=" + filepath.Join(dir, "console"),
	}, "\n")+"\n"), 0o600)
	if out, err := exec.Command(ledgerBin, "migrate", "--config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("ledger migrate: %v\n%s", err, out)
	}
	for _, u := range []struct{ name, pw, role string }{{webOp, webOpPass, "operator"}, {webViewer, webViewerPass, "viewer"}} {
		add := exec.Command(ledgerBin, "console-user", "add", u.name, "--role", u.role, "--password-stdin", "--config", cfg)
		add.Stdin = strings.NewReader(u.pw + "\n")
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("console-user add %s: %v\n%s", u.name, err, out)
		}
	}
	// The events stream exists once the shipper made it; the ledger
	// waits for it otherwise.
	serve := exec.Command(ledgerBin, "serve", "--config", cfg)
	serve.Stdout, serve.Stderr = f.logs, f.logs
	serve.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { serve.Wait(); close(done) }()
	t.Cleanup(func() {
		serve.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			serve.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("ledger log:\n%s", f.logs.String())
		}
	})
	waitCond(t, "the console listening", 30*time.Second, func() bool { return strings.Contains(f.logs.String(), "web console listening") })
	f.url = "http://" + addr
	return f
}

// startCommander runs the real command service for the bed, trusting
// the console's key read-write (its audits go through the bed's spool and
// the shipper to the ledger).
func (f *consoleFleet) startCommander(dir, consolePub string) {
	t := f.t
	trusted := filepath.Join(dir, "trusted.keys")
	os.WriteFile(trusted, []byte("read-write "+consolePub+" console\n"), 0o644)
	tr, err := opauth.LoadTrusted(trusted)
	if err != nil {
		t.Fatal(err)
	}
	nonces, err := opauth.OpenNonceCache(filepath.Join(dir, "cmd-nonces"), opauth.NonceLimits{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nonces.Close() })
	sp, err := spool.Open(f.b.SpoolDir(), spool.Options{Fsync: true, LockWait: 2 * time.Second, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	nc, err := nats.Connect(f.srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	xkp, _ := nkeys.CreateCurveKeys()
	svc, err := cmdsvc.Start(cmdsvc.Options{
		NC: nc, Prefix: "ocserv", ServerID: f.b.ServerID(),
		Verifier: &opauth.Verifier{Trusted: tr, Nonces: nonces, MaxSkew: 30 * time.Second, MaxValidity: 5 * time.Minute},
		XKey:     xkp, Occtl: bedOcctl(t, f.b), Spool: sp, RefusalAuditsPerMinute: 60,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Build: "e2e",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
}

// webClient is a plain HTTP client with a cookie jar, as a script would
// use the console.
type webClient struct {
	t  *testing.T
	f  *consoleFleet
	hc *http.Client
}

func (f *consoleFleet) client() *webClient {
	jar, _ := cookiejar.New(nil)
	return &webClient{t: f.t, f: f, hc: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *webClient) do(method, path string, form url.Values) (int, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, c.f.url+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var (
	reFormToken = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	reMetaToken = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)
)

// login logs in and returns the session's CSRF token.
func (c *webClient) login(user, pw string) string {
	c.t.Helper()
	_, page := c.do("GET", "/login", nil)
	m := reFormToken.FindStringSubmatch(page)
	if m == nil {
		c.t.Fatalf("no login form:\n%s", page)
	}
	if code, body := c.do("POST", "/login", url.Values{"csrf": {m[1]}, "username": {user}, "password": {pw}}); code != http.StatusSeeOther {
		c.t.Fatalf("login %s: %d\n%s", user, code, body)
	}
	_, page = c.do("GET", "/", nil)
	m = reMetaToken.FindStringSubmatch(page)
	if m == nil {
		c.t.Fatalf("no CSRF token on the overview:\n%s", page)
	}
	return m[1]
}

func browserLogin(br *browsertest.Browser, base, user, pw string) {
	br.Do("log in as "+user,
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), pw),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("total-online")),
	)
}

// The web console against a real fleet of one: real ocserv 1.1.6 and
// openconnect clients, the real shipper, command service and bin/ledger,
// in a real headless Chromium. The overview lists the server and its
// users; a new real connect appears on the open online page within 2 s
// without a reload; the user page shows the session in its history and a
// chart; a kick from the console ends the real session and its reconnect
// is refused, audited with the web user's name; a viewer has no buttons
// and is refused server-side; requests without the CSRF token or the
// cookie are refused; every page carries the CSP and the browser reports
// no error.
func TestConsoleWithRealFleet(t *testing.T) {
	testbed.RequireRoot(t)
	browsertest.Path(t)
	f := startConsoleFleet(t)
	b, sid := f.b, f.b.ServerID()
	alice, err := b.Connect("alice", b.Password("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Disconnect()

	br := browsertest.New(t)
	browserLogin(br, f.url, webOp, webOpPass)
	if err := br.Within(30*time.Second, chromedp.WaitVisible(chromedp.CSS(`tr[data-server="`+sid+`"] td[data-sessions="1"]`))); err != nil {
		t.Fatalf("the overview does not list %s with alice online: %v\n%s", sid, err,
			browsertest.Get(br, "overview", chromedp.OuterHTML(chromedp.ID("overview"))))
	}

	// The online list, subscribed to the live stream (its first message
	// arrived), then a new real connect.
	br.Do("online list",
		chromedp.Navigate(f.url+"/online"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-user="alice"][data-server="`+sid+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#online[data-live-updates]`)),
	)
	browsertest.Get(br, "mark the page", chromedp.Evaluate[int](`window.__notReloaded = 7`))
	start := time.Now()
	bob, err := b.Connect("bob", b.Password("bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Disconnect()
	connected := time.Now()
	if err := br.Within(2*time.Second, chromedp.WaitVisible(chromedp.CSS(`tr[data-user="bob"]`))); err != nil {
		t.Fatalf("bob's real connect did not appear on the open page within 2s: %v", err)
	}
	t.Logf("bob on the page %s after openconnect reported the tunnel (%s after it started)",
		time.Since(connected).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if browsertest.Get(br, "read the mark", chromedp.Evaluate[int](`window.__notReloaded || 0`)) != 7 {
		t.Fatal("the page was reloaded")
	}

	// alice's page: her open session in the history (from the ledger),
	// the tunnel address openconnect got, and a drawn chart.
	waitCond(t, "alice's session in the ledger's history", 20*time.Second, func() bool {
		br.Do("user page", chromedp.Navigate(f.url+"/users/alice"), chromedp.WaitVisible(chromedp.ID("history")))
		return br.Count(`#history tr[data-session].state-open`) == 1
	})
	br.Do("chart", chromedp.WaitVisible(chromedp.CSS(`#usage-chart canvas`)))
	if row := br.Text(`#history tr[data-session]`); !strings.Contains(row, sid) || !strings.Contains(row, alice.TunnelIP()) {
		t.Errorf("alice's history row %q lacks the server %s or the tunnel address %s", row, sid, alice.TunnelIP())
	}

	// A kick from the console ends bob's real session and sticks.
	br.Do("kick bob",
		chromedp.Navigate(f.url+"/online?user=bob"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-user="bob"] a[data-action="kick"]`)),
		chromedp.Click(chromedp.CSS(`tr[data-user="bob"] a[data-action="kick"]`)),
		chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.SendKeys(chromedp.CSS(`input[name="reason"]`), "e2e console"),
		chromedp.Click(chromedp.ID("confirm")),
		chromedp.WaitVisible(chromedp.ID("flash")),
	)
	if flash := br.Text("#flash"); flash != "bob: kick done on "+sid+"." {
		t.Fatalf("flash after the kick: %q", flash)
	}
	waitCond(t, "bob's openconnect to end", 15*time.Second, bob.Exited)
	if again, err := b.Connect("bob", b.Password("bob")); err == nil {
		again.Disconnect()
		t.Fatal("bob logged in again after the console's kick")
	}
	b.WaitEvents(func(evs []events.Event) bool {
		for _, e := range testbed.Filter(evs, testbed.Match{Type: events.Connect, Username: "bob"}) {
			if e.Admitted != nil && !*e.Admitted && strings.HasPrefix(e.Refusal, "kicked by an operator: e2e console") {
				return true
			}
		}
		return false
	}, 20*time.Second)
	// The host's audit of the kick reached the ledger with the web user.
	waitCond(t, "the kick in the audit log with the web user", 20*time.Second, func() bool {
		br.Do("audit page", chromedp.Navigate(f.url+"/audit?actor="+webOp+"&action=kick"), chromedp.WaitVisible(chromedp.ID("audit")))
		return br.Count(`#audit tr[data-action="kick"]`) >= 2 // the host's accepted and done
	})

	// A viewer sees no action and is refused server-side.
	v := f.client()
	vtok := v.login(webViewer, webViewerPass)
	if _, page := v.do("GET", "/online", nil); !strings.Contains(page, `data-user="alice"`) || strings.Contains(page, "/confirm/kick") {
		t.Fatalf("viewer's online page: alice missing or actions offered\n%s", page)
	}
	if code, _ := v.do("POST", "/actions/kick", url.Values{"csrf": {vtok}, "server": {sid}, "user": {"alice"}}); code != http.StatusForbidden {
		t.Fatalf("viewer kick: %d", code)
	}
	// CSRF-less and cookie-less requests are refused.
	op := f.client()
	op.login(webOp, webOpPass)
	if code, _ := op.do("POST", "/actions/kick", url.Values{"server": {sid}, "user": {"alice"}}); code != http.StatusForbidden {
		t.Fatalf("kick without the CSRF token: %d", code)
	}
	if code, _ := f.client().do("POST", "/actions/kick", url.Values{"csrf": {vtok}, "server": {sid}, "user": {"alice"}}); code != http.StatusUnauthorized {
		t.Fatalf("kick without a cookie: %d", code)
	}
	if alice.Exited() {
		t.Fatal("alice's session ended: a refused request acted")
	}
	br.CheckClean(console.CSP)
}

// TestBenchConsoleConnectToBrowser measures, for real connects, the time
// from the hook's connect event (its own timestamp) to the new row being
// visible on an open online page in the browser, and as the baseline of
// the same run, to the event's arrival at a plain NATS subscriber. It is
// a benchmark: scripts/bench-console.sh runs it (CONSOLE_BENCH_LATENCY_OUT
// names the JSON it writes).
func TestBenchConsoleConnectToBrowser(t *testing.T) {
	out := os.Getenv("CONSOLE_BENCH_LATENCY_OUT")
	if out == "" {
		t.Skip("a benchmark: scripts/bench-console.sh runs it (set CONSOLE_BENCH_LATENCY_OUT)")
	}
	testbed.RequireRoot(t)
	browsertest.Path(t)
	runs := 30
	if n, err := strconv.Atoi(os.Getenv("CONSOLE_BENCH_CONNECTS")); err == nil && n > 0 {
		runs = n
	}
	// A bed takes at most 16 clients (each connect is a new client
	// namespace): a fresh bed, fleet and browser every perBed connects.
	const perBed = 15
	var toBrowser, toSubscriber []time.Duration
	for bed := 0; len(toBrowser) < runs; bed++ {
		t.Run(fmt.Sprintf("bed%d", bed), func(t *testing.T) {
			b2, s2 := connectLatencies(t, min(perBed, runs-len(toBrowser)))
			toBrowser, toSubscriber = append(toBrowser, b2...), append(toSubscriber, s2...)
		})
		if t.Failed() {
			return
		}
	}
	pct := func(l []time.Duration, p float64) float64 {
		s := append([]time.Duration(nil), l...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return float64(s[min(len(s)-1, int(float64(len(s))*p))].Microseconds()) / 1000
	}
	res := map[string]any{
		"connects": runs, "browser_p50_ms": pct(toBrowser, .5), "browser_p99_ms": pct(toBrowser, .99),
		"subscriber_p50_ms": pct(toSubscriber, .5), "subscriber_p99_ms": pct(toSubscriber, .99),
	}
	t.Logf("hook connect event → row visible in the browser: p50 %.1f ms, p99 %.1f ms; → NATS subscriber: p50 %.1f ms, p99 %.1f ms",
		res["browser_p50_ms"], res["browser_p99_ms"], res["subscriber_p50_ms"], res["subscriber_p99_ms"])
	data, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(out, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// connectLatencies runs n real connects of carol on a fresh fleet with an
// open online page and returns, per connect, hook event → row visible and
// hook event → NATS subscriber.
func connectLatencies(t *testing.T, n int) (toBrowser, toSubscriber []time.Duration) {
	f := startConsoleFleet(t)
	b := f.b
	nc, err := nats.Connect(f.srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	arrived := map[string]time.Time{} // session_uid → when the subscriber got the connect
	evTime := map[string]time.Time{}  // session_uid → the hook's event time
	sub, err := nc.Subscribe("ocserv.events."+b.ServerID()+".connect", func(m *nats.Msg) {
		now := time.Now()
		var ev events.Event
		if json.Unmarshal(m.Data, &ev) == nil && ev.Session != nil && ev.Session.Username == "carol" {
			at, _ := time.Parse(time.RFC3339Nano, ev.Time)
			mu.Lock()
			arrived[ev.SessionUID], evTime[ev.SessionUID] = now, at
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	br := browsertest.New(t)
	browserLogin(br, f.url, webOp, webOpPass)
	br.Do("online list", chromedp.Navigate(f.url+"/online"), chromedp.WaitVisible(chromedp.CSS(`#online[data-live-updates]`)))
	for i := 0; i < n; i++ {
		mu.Lock()
		clear(arrived)
		clear(evTime)
		mu.Unlock()
		c, err := b.Connect("carol", b.Password("carol"))
		if err != nil {
			t.Fatal(err)
		}
		br.Do("carol visible", chromedp.WaitVisible(chromedp.CSS(`tr[data-user="carol"]`), chromedp.RetryInterval(2*time.Millisecond)))
		seen := time.Now()
		var at, sub time.Time
		waitCond(t, "carol's connect at the subscriber", 10*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			for u := range evTime {
				at, sub = evTime[u], arrived[u]
				return true
			}
			return false
		})
		toBrowser = append(toBrowser, seen.Sub(at))
		toSubscriber = append(toSubscriber, sub.Sub(at))
		if err := c.Disconnect(); err != nil {
			t.Fatal(err)
		}
		br.Do("carol gone", chromedp.WaitNotPresent(chromedp.CSS(`tr[data-user="carol"]`)))
	}
	return toBrowser, toSubscriber
}
