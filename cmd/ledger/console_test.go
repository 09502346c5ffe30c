package main

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/console"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
	"github.com/ocserv-telemetry/ocserv-telemetry/livestate"
)

// The console is off by default; with LEDGER_CONSOLE=on `ledger serve`
// serves it on the configured loopback address, with an account made by
// `ledger console-user add`, and a login there becomes an audit event in
// the ledger's own database (through the console's spool and the stream).
func TestServeWithConsole(t *testing.T) {
	addr := freePort(t)
	dir := t.TempDir()
	users := filepath.Join(dir, "console-users")
	b := newBed(t, "sqlite", map[string]string{
		"LEDGER_CONSOLE": "on", "LEDGER_CONSOLE_LISTEN": addr, "LEDGER_CONSOLE_USERS": users,
		"LEDGER_CONSOLE_KEY": filepath.Join(dir, "console.nk"), "LEDGER_CONSOLE_STATE_DIR": filepath.Join(dir, "console"),
	})
	if _, err := b.js.CreateKeyValue(context.Background(), livestate.BucketConfig("ocserv_state")); err != nil {
		t.Fatal(err)
	}
	add := exec.Command(ledgerBin, "console-user", "add", "admin", "--role", "operator", "--password-stdin", "--config", b.cfg)
	add.Stdin = strings.NewReader("first-admin-password\n")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("console-user add: %v\n%s", err, out)
	}
	if fi, err := os.Stat(users); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("accounts file: %v %v", fi.Mode(), err)
	}
	p := b.serve("")
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.out.String(), "web console listening") {
		if time.Now().After(deadline) {
			t.Fatalf("the console did not start:\n%s", p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(p.out.String(), "no console key: pages work, actions are unavailable") {
		t.Errorf("a missing key is not reported:\n%s", p.out.String())
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get("http://" + addr + "/login")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") != console.CSP {
		t.Fatalf("GET /login: %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	tok := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(string(page))
	if tok == nil {
		t.Fatalf("no login token:\n%s", page)
	}
	req, _ := http.NewRequest("POST", "http://"+addr+"/login", strings.NewReader(url.Values{"csrf": {tok[1]},
		"username": {"admin"}, "password": {"first-admin-password"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	// The login is in the ledger's audit table, by the console's id.
	store, err := sqlite.Open(context.Background(), b.db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	deadline = time.Now().Add(20 * time.Second)
	for {
		page, err := store.Audit(context.Background(), ledger.AuditQuery{Actor: "admin", Action: console.AuditLogin})
		if err == nil && len(page.Items) == 1 && page.Items[0].ServerID == "console" && page.Items[0].OK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the login audit did not reach the ledger: %+v %v\n%s", page.Items, err, p.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.stop()
}

// A console asked to listen beyond loopback without TLS stops the ledger
// from starting, naming the key.
func TestServeRefusesPlainConsoleOnNetwork(t *testing.T) {
	dir := t.TempDir()
	b := newBed(t, "sqlite", map[string]string{
		"LEDGER_CONSOLE": "on", "LEDGER_CONSOLE_LISTEN": "0.0.0.0:0", "LEDGER_CONSOLE_USERS": filepath.Join(dir, "u"),
		"LEDGER_CONSOLE_STATE_DIR": filepath.Join(dir, "console"),
	})
	p := b.serve("")
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("ledger serve kept running")
	}
	if out := p.out.String(); !strings.Contains(out, "LEDGER_CONSOLE_LISTEN 0.0.0.0:0 is not a loopback address and no TLS certificate is set") {
		t.Fatalf("output:\n%s", out)
	}
}
