// Package browsertest drives a real headless Chromium (Debian's chromium,
// through chromedp) for the web console's tests: a fresh profile per
// browser, the flags a CI machine needs, and a record of everything the
// browser's console and log report and of the Content-Security-Policy of
// every page it loads, so a test can assert there was no error.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Path finds chromium. Without it the test skips, except under CI (which
// installs it): there a missing browser fails the test.
func Path(t testing.TB) string {
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

// Browser is one headless Chromium with one tab.
type Browser struct {
	t   testing.TB
	ctx context.Context

	mu       sync.Mutex
	problems []string
	docCSP   map[string]string // page URL → its Content-Security-Policy
}

// New starts a browser with a fresh profile; it is stopped when the test
// ends.
func New(t testing.TB) *Browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(Path(t)),
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
	br := &Browser{t: t, ctx: ctx, docCSP: map[string]string{}}
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

// Do runs steps (a minute at most) or fails the test naming what.
func (br *Browser) Do(what string, steps ...chromedp.Action[chromedp.Void]) {
	br.t.Helper()
	ctx, cancel := context.WithTimeout(br.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		br.t.Fatalf("%s: %v", what, err)
	}
}

// Within runs steps with their own deadline (a wait that must succeed
// quickly) and returns the error.
func (br *Browser) Within(d time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(br.ctx, d)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// Get runs an action that returns a value.
func Get[T any](br *Browser, what string, a chromedp.Action[T]) T {
	br.t.Helper()
	ctx, cancel := context.WithTimeout(br.ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		br.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// Text is the text of the first element sel matches.
func (br *Browser) Text(sel string) string {
	br.t.Helper()
	return Get(br, "text of "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// Count is the number of elements sel matches now.
func (br *Browser) Count(sel string) int {
	br.t.Helper()
	return len(Get(br, "count "+sel, chromedp.Nodes(chromedp.CSSAll(sel), chromedp.AtLeast(0))))
}

// Shot writes a PNG of the whole page to dir/name.png (nothing when dir
// is "").
func (br *Browser) Shot(dir, name string) {
	br.t.Helper()
	if dir == "" {
		return
	}
	png := Get(br, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		br.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		br.t.Fatal(err)
	}
}

// CheckClean fails the test for every error or warning the browser
// reported and for every page whose Content-Security-Policy is not csp.
// expected are problems the test caused on purpose (a refused request is
// "Failed to load resource: ... 403"): each must have been reported
// exactly once, and only those are let through.
func (br *Browser) CheckClean(csp string, expected ...string) {
	br.t.Helper()
	br.mu.Lock()
	defer br.mu.Unlock()
	seen := make([]int, len(expected))
	for _, p := range br.problems {
		ok := false
		for i, e := range expected {
			if strings.Contains(p, e) {
				seen[i]++
				ok = true
				break
			}
		}
		if !ok {
			br.t.Errorf("browser reported: %s", p)
		}
	}
	for i, e := range expected {
		if seen[i] != 1 {
			br.t.Errorf("the browser reported %q %d times, want once", e, seen[i])
		}
	}
	if len(br.docCSP) == 0 {
		br.t.Error("no page response was seen")
	}
	for u, got := range br.docCSP {
		if got != csp {
			br.t.Errorf("page %s: Content-Security-Policy %q, want %q", u, got, csp)
		}
	}
}
