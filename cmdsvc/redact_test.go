package cmdsvc

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/ocpasswd"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
	"github.com/ocserv-telemetry/ocserv-telemetry/userconf"
)

func TestSecretName(t *testing.T) {
	for name, want := range map[string]bool{
		"password": true, "new_password": true, "newPassword": true, "passwd": true, "pass": true, "pw": true,
		"secret": true, "client-secret": true, "key": true, "api_key": true, "apiKey": true, "KEY": true, "token": true,
		"accessToken": true, "credentials": true, "creds": true, "seed": true, "private_key": true, "otp": true, "pin": true,
		"user": false, "group": false, "reason": false, "for": false, "ip": false, "id": false, "sid": false, "valid": false,
		"kind": false, "name": false, "value": false, "value_2": false, "monkey": false, "keyboard": false, "sealed_by": false,
	} {
		if got := SecretName(name); got != want {
			t.Errorf("SecretName(%q) = %v, want %v", name, got, want)
		}
	}
}

// A secret sent in clear, under any name, never reaches the audit stream
// or the log: for every action the service offers, refused (unknown
// argument, unknown key, forbidden) or accepted (an action taking an
// argument named like a secret). Sealed arguments show as (sealed).
// Before, only *_sealed arguments were redacted and a clear password
// landed in the audit of its refusal.
func TestSecretsNeverAudited(t *testing.T) {
	b := newBed(t)
	const planted = "PLANTED-s3cret-9f2c41"
	b.extra = append(UserActions(&ocpasswd.Passwd{File: filepath.Join(b.dir, "ocpasswd")}),
		ConfigActions(&userconf.Store{UserDir: filepath.Join(b.dir, "config-per-user")})...)
	b.extra = append(b.extra, Action{Name: "echo-token", Role: opauth.ReadOnly,
		Params: []Param{{Name: "token", Check: func(s string) (string, error) { return s, nil }}, {Name: "user", Check: ValidName}},
		Run:    func(context.Context, *Request) (any, error) { return "ok", nil }})
	b.start()
	rw, ro, stranger := b.client(b.rw), b.client(b.ro), b.client(b.stranger)
	names := []string{"password", "Password", "api_key", "apiToken", "client_secret", "x-note", "passwd", "key"}
	for _, action := range b.svc.Actions() {
		for _, n := range names {
			args := map[string]string{n: planted}
			if n == "key" && strings.HasPrefix(action, "config-") {
				continue // config's own "key" argument: the setting's name, validated (and audited)
			}
			for _, c := range []*Client{rw, ro, stranger} {
				rep, err := c.Do(ctx(t), testServer, action, args)
				if err != nil {
					t.Fatalf("%s %s: %v", action, n, err)
				}
				if rep.OK {
					t.Fatalf("%s with %s=… accepted", action, n)
				}
			}
		}
	}
	// Accepted with a secret-named argument: redacted in the audit.
	ok(t)(ro.Do(ctx(t), testServer, "echo-token", map[string]string{"token": planted, "user": "alice"}))
	// A sealed password: (sealed).
	rep, err := rw.DoSealed(ctx(t), testServer, "user-add", map[string]string{"user": "dave"}, "password", planted, b.svc.XKey())
	if err != nil {
		t.Fatal(err)
	}
	_ = rep // ocpasswd may be missing here; the audit is what is checked

	var sawRedacted, sawSealed, sawAccepted bool
	for _, a := range b.audits() {
		for k, v := range a.Audit.Args {
			switch v {
			case auditRedacted:
				sawRedacted = true
			case auditSealed:
				sawSealed = true
			}
			if k == "user" && v == "alice" && a.Audit.Action == "echo-token" && a.Audit.Args["token"] == auditRedacted {
				sawAccepted = true
			}
		}
	}
	if !sawRedacted || !sawSealed || !sawAccepted {
		t.Errorf("audits: redacted %v, sealed %v, accepted echo-token with token redacted and user kept %v", sawRedacted, sawSealed, sawAccepted)
	}
	// Nothing anywhere in the spool (audit events, any file) or the log.
	filepath.WalkDir(b.sp.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, _ := os.ReadFile(p)
		if strings.Contains(string(data), planted) {
			t.Errorf("the planted secret is in %s", p)
		}
		return nil
	})
	if strings.Contains(b.log.String(), planted) {
		t.Errorf("the planted secret is in the service's log")
	}
}

// The audit keeps config-set's key (the setting's name) readable.
func TestConfigKeyAudited(t *testing.T) {
	b := newBed(t)
	b.extra = ConfigActions(&userconf.Store{UserDir: filepath.Join(b.dir, "config-per-user")})
	os.MkdirAll(filepath.Join(b.dir, "config-per-user"), 0o755)
	b.start()
	rw := b.client(b.rw)
	rw.Do(ctx(t), testServer, "config-set", map[string]string{"kind": "user", "name": "alice", "key": "dns", "value": "192.0.2.53"})
	for _, a := range b.audits() {
		if a.Audit.Action == "config-set" {
			if a.Audit.Args["key"] != "dns" {
				b, _ := json.Marshal(a.Audit)
				t.Fatalf("config-set audit %s", b)
			}
			return
		}
	}
	t.Fatal("no config-set audit")
}
