package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/kick"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// ctlBed: an embedded NATS server, a command service for "vpn1" (its
// occtl a stand-in with nobody connected that fails every other command: only kick-list actions and
// refusals are exercised here; the real occtl is in e2e), and ctl's
// config with a key made by ctl keygen.
type ctlBed struct {
	t      *testing.T
	cfg    string
	spool  string
	role   string
	keyOut string
	url    string // the NATS server's
}

func newCtlBed(t *testing.T, role string) *ctlBed {
	srv := natstest.Run(t)
	dir := t.TempDir()
	b := &ctlBed{t: t, cfg: filepath.Join(dir, "ctl.env"), spool: filepath.Join(dir, "spool"), role: role, keyOut: filepath.Join(dir, "op.nk"), url: srv.ClientURL()}
	os.WriteFile(b.cfg, []byte("NATS_URL="+srv.ClientURL()+"\nOPERATOR_KEY="+b.keyOut+"\nCTL_TIMEOUT=3s\n"), 0o600)
	out, errs, code := b.run("", "keygen", "--name", "tester", "--role", role)
	if code != 0 || !strings.HasPrefix(out, role+" U") {
		t.Fatalf("keygen: %d %q %q", code, out, errs)
	}
	if fi, err := os.Stat(b.keyOut); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("seed file: %v %v", fi, err)
	}
	if _, errs, code := b.run("", "keygen"); code != 1 || !strings.Contains(errs, "exists") {
		t.Fatalf("keygen over an existing seed: %d %s", code, errs)
	}
	trusted := filepath.Join(dir, "trusted")
	os.WriteFile(trusted, []byte(out), 0o644)
	tr, err := opauth.LoadTrusted(trusted)
	if err != nil {
		t.Fatal(err)
	}
	nonces, _ := opauth.OpenNonceCache(filepath.Join(dir, "nonces"), opauth.NonceLimits{}, time.Now())
	t.Cleanup(func() { nonces.Close() })
	sp, err := spool.Open(b.spool, spool.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	xkp, _ := nkeys.CreateCurveKeys()
	// occtl stand-in: nobody is connected, every other command fails.
	occtl := filepath.Join(dir, "occtl")
	os.WriteFile(occtl, []byte("#!/bin/sh\ncase \"$*\" in\n*\"disconnect user\"*) echo \"could not disconnect user\"; exit 1 ;;\nesac\necho \"error connecting to ocserv socket\" >&2; exit 1\n"), 0o755)
	svc, err := cmdsvc.Start(cmdsvc.Options{NC: nc, Prefix: "ocserv", ServerID: "vpn1",
		Verifier: &opauth.Verifier{Trusted: tr, Nonces: nonces, MaxSkew: time.Second, MaxValidity: time.Minute},
		XKey:     xkp, Occtl: &ocserv.Occtl{Path: occtl}, Spool: sp,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	return b
}

func (b *ctlBed) run(stdin string, args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	env := func(k string) string {
		if k == "HOME" {
			return b.t.TempDir()
		}
		return ""
	}
	code := runWith(append([]string{"--config", b.cfg}, args...), strings.NewReader(stdin), &out, &errb, env, func() bool { return stdin != "" })
	return out.String(), errb.String(), code
}

func TestCtlAgainstService(t *testing.T) {
	b := newCtlBed(t, "read-write")
	out, errs, code := b.run("", "servers", "--json")
	var servers []cmdsvc.ServerInfo
	if code != 0 || json.Unmarshal([]byte(out), &servers) != nil || len(servers) != 1 || servers[0].ServerID != "vpn1" {
		t.Fatalf("servers: %d %s %s", code, out, errs)
	}
	// Writes: no terminal and no --force is a usage error; nothing happens.
	if _, errs, code := b.run("", "kick", "alice", "--server", "vpn1"); code != exitUsage || !strings.Contains(errs, "--force") {
		t.Fatalf("kick without --force: %d %s", code, errs)
	}
	// On a "terminal", "n" declines.
	if _, _, code := b.run("n\n", "kick", "alice", "--server", "vpn1"); code != exitFail {
		t.Fatalf("declined kick: %d", code)
	}
	if l, _ := kick.List(b.spool); len(l) != 0 {
		t.Fatalf("kicked without confirmation: %+v", l)
	}
	if _, errs, code := b.run("y\n", "kick", "alice", "--server", "vpn1", "--reason", "test"); code != 0 {
		t.Fatalf("confirmed kick: %d %s", code, errs)
	}
	if e, _ := kick.Check(b.spool, "alice", time.Now()); e == nil || e.Reason != "test" {
		t.Fatalf("kick entry %+v", e)
	}
	out, _, code = b.run("", "kicked", "--all", "--json")
	if code != 0 || !strings.Contains(out, `"user": "alice"`) {
		t.Fatalf("kicked --json: %d %s", code, out)
	}
	// A server-side failure (occtl fails here) is exit 1 with the code.
	out, _, code = b.run("", "users", "--server", "vpn1")
	if code != exitFail || !strings.Contains(out, "error failed") {
		t.Fatalf("users with a failing occtl: %d %s", code, out)
	}
	// Hostile argument: refused by the server, exit 1, code shown.
	out, _, code = b.run("", "unkick", "$(reboot)", "--server", "vpn1", "--force")
	if code != exitFail || !strings.Contains(out, "invalid_argument") {
		t.Fatalf("hostile unkick: %d %s", code, out)
	}
	// A server that is not there: exit 3.
	if _, _, code := b.run("", "kicked", "--server", "vpn1", "--server", "ghost"); code != exitPartial {
		t.Fatalf("missing server: %d", code)
	}
	// Usage errors.
	for _, args := range [][]string{{"kick"}, {"disconnect", "--server", "vpn1", "--force"}, {"tail", "--type", "bogus"}, {"users", "--server", "a", "--all"}} {
		if _, errs, code := b.run("", args...); code != exitUsage {
			t.Errorf("%q: exit %d (%s), want %d", args, code, errs, exitUsage)
		}
	}
	out, _, code = b.run("", "completion", "bash")
	if code != 0 || !strings.Contains(out, "bash completion") {
		t.Errorf("completion: %d", code)
	}
}

// A read-only key is refused by the server's security layer: exit 4.
func TestCtlRefusedIsExit4(t *testing.T) {
	b := newCtlBed(t, "read-only")
	out, _, code := b.run("", "unkick", "alice", "--server", "vpn1", "--force")
	if code != exitRefused || !strings.Contains(out, "forbidden") {
		t.Fatalf("read-only write: %d %s", code, out)
	}
	if _, _, code := b.run("", "kicked", "--server", "vpn1"); code != 0 {
		t.Fatalf("read-only read: %d", code)
	}
}
