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

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/api"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
	"github.com/ocserv-telemetry/ocserv-telemetry/livestate"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/bucket"
)

// bin/ledger serve with LEDGER_POLICY=on and the console, its key trusted
// read-write in LEDGER_TRUSTED_KEYS: a quota reset confirmed on the
// console goes to the ledger's policy endpoint signed with the console's
// key, the engine lifts alice's denial from the verdicts bucket, and the
// ledger records the reset as the console's key acting for the web user.
func TestServeConsolePolicyReset(t *testing.T) {
	addr := freePort(t)
	dir := t.TempDir()
	users := filepath.Join(dir, "console-users")
	consoleKP, _ := nkeys.CreateUser()
	seed, _ := consoleKP.Seed()
	consolePub, _ := consoleKP.PublicKey()
	keyFile := filepath.Join(dir, "console.nk")
	os.WriteFile(keyFile, seed, 0o600)
	b := newBed(t, "sqlite", map[string]string{
		"LEDGER_POLICY": "on", "LEDGER_POLICY_HEARTBEAT": "1s",
		"LEDGER_CONSOLE": "on", "LEDGER_CONSOLE_LISTEN": addr, "LEDGER_CONSOLE_USERS": users,
		"LEDGER_CONSOLE_KEY": keyFile, "LEDGER_CONSOLE_STATE_DIR": filepath.Join(dir, "console"),
	})
	opPub, _ := b.operator.PublicKey()
	os.WriteFile(filepath.Join(b.dir, "operators.keys"), []byte("read-write "+opPub+" test\nread-write "+consolePub+" console\n"), 0o600)
	if _, err := b.js.CreateKeyValue(context.Background(), livestate.BucketConfig("ocserv_state")); err != nil {
		t.Fatal(err)
	}
	add := exec.Command(ledgerBin, "console-user", "add", "olga", "--role", "operator", "--password-stdin", "--config", b.cfg)
	add.Stdin = strings.NewReader("olga-password-1\n")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("console-user add: %v\n%s", err, out)
	}
	p := b.serve("")
	defer func() {
		if t.Failed() {
			t.Logf("ledger log:\n%s", p.out.String())
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var kv jetstream.KeyValue
	waitFor("the verdicts bucket and the console", func() bool {
		var err error
		kv, err = b.js.KeyValue(ctx, bucket.DefaultName)
		return err == nil && strings.Contains(p.out.String(), "web console listening")
	})
	c := &api.Client{NC: b.nc, Prefix: "ocserv", Key: b.operator}
	if rep, err := c.Do(ctx, "policy-set", map[string]string{"scope": "user", "name": "alice", "quota": "1000"}); err != nil || !rep.OK {
		t.Fatalf("policy-set: %v %+v", err, rep)
	}
	g := ledgertest.NewGen("vpn1", &ledgertest.Seq{})
	uid := ledgertest.UID()
	now := time.Now().UTC()
	b.publish([]ledger.Message{g.Connect(uid, ledgertest.Conn{User: "alice", Worker: 77}, now),
		g.Disconnect(uid, 1200, 0, 5, now.Add(time.Second))})
	denied := func() bool {
		e, err := kv.Get(ctx, bucket.Key("alice"))
		if err != nil {
			return false
		}
		v, err := bucket.Decode("alice", e.Value())
		return err == nil && !v.Allowed && v.Reason == policy.ReasonQuota
	}
	waitFor("alice's denial in the bucket", denied)

	// olga logs in and confirms the reset.
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) string {
		t.Helper()
		resp, err := hc.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	post := func(path string, form url.Values) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+addr+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	field := func(page, name string) string {
		m := regexp.MustCompile(`name="` + name + `" value="([^"]+)"`).FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("no %s field:\n%s", name, page)
		}
		return m[1]
	}
	login := get("/login")
	if resp := post("/login", url.Values{"csrf": {field(login, "csrf")}, "username": {"olga"}, "password": {"olga-password-1"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	if page := get("/users/alice"); !strings.Contains(page, `data-allowed="false"`) || !strings.Contains(page, `id="quota-reset"`) {
		t.Fatalf("alice's page without her denial or the reset:\n%s", page)
	}
	confirm := get("/confirm/policy/reset?user=alice&kind=quota")
	resp := post("/actions/policy/reset", url.Values{"csrf": {field(confirm, "csrf")}, "user": {"alice"}, "kind": {"quota"}, "return": {"/users/alice"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("reset: %d", resp.StatusCode)
	}
	if page := get("/users/alice"); !strings.Contains(page, "alice: quota count reset for this period. Now allowed.") {
		t.Errorf("the page after the reset:\n%s", page)
	}
	waitFor("alice's verdict gone from the bucket", func() bool {
		_, err := kv.Get(ctx, bucket.Key("alice"))
		return err != nil
	})
	store, err := sqlite.Open(ctx, b.db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rs, err := store.Resets(ctx, []string{"alice"})
	if err != nil || len(rs["alice"]) != 1 || rs["alice"][0].By != "console ("+consolePub+") for olga" {
		t.Errorf("the ledger's reset record: %+v %v", rs, err)
	}
	// The console's audit of the reset reaches the ledger's audit table.
	waitFor("the console's audit in the ledger", func() bool {
		page, err := store.Audit(ctx, ledger.AuditQuery{Actor: "olga", Action: "policy-reset"})
		return err == nil && len(page.Items) == 1 && page.Items[0].ServerID == "console" && page.Items[0].OK
	})
	p.stop()
}
