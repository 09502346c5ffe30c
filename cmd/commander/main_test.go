package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/sdnotify"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/sdnotify/notifytest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/syncbuf"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/bucket"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/mirror"
)

func TestBuildFromAgentConfig(t *testing.T) {
	srv := natstest.Run(t)
	dir := t.TempDir()
	op, _ := nkeys.CreateUser()
	pub, _ := op.PublicKey()
	os.WriteFile(filepath.Join(dir, "keys"), []byte("ro "+pub+" t\n"), 0o644)
	env := strings.Join([]string{
		"SERVER_ID=vpn7", "SPOOL_DIR=" + filepath.Join(dir, "spool"), "NATS_URL=" + srv.ClientURL(),
		"CMD_TRUSTED_KEYS=" + filepath.Join(dir, "keys"), "CMD_XKEY_SEED=" + filepath.Join(dir, "etc", "xkey"),
		"CMD_NONCE_FILE=" + filepath.Join(dir, "state", "nonces"), "CMD_OCPASSWD_FILE=" + filepath.Join(dir, "ocpasswd"),
	}, "\n")
	cfg, probs, err := config.Parse(strings.NewReader(env))
	if err != nil || len(probs) > 0 {
		t.Fatal(err, probs)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, closeAll, err := Build(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "etc", "xkey"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("xkey seed: %v %v", fi, err)
	}
	nc, _ := nats.Connect(srv.ClientURL())
	defer nc.Close()
	c := &cmdsvc.Client{NC: nc, Prefix: "ocserv", Key: op}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	found, _ := c.Discover(ctx, 500*time.Millisecond)
	if len(found) != 1 || found[0].ServerID != "vpn7" || found[0].XKey != svc.XKey() {
		t.Fatalf("discovery %+v", found)
	}
	rep, err := c.Do(ctx, "vpn7", "user-list", nil)
	if err != nil || !rep.OK || string(rep.Result) != "[]" {
		t.Fatalf("user-list (CMD_OCPASSWD_FILE set): %+v %v", rep, err)
	}
	closeAll()
	// The same key at the next start.
	svc2, closeAll2, err := Build(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if svc2.XKey() != svc.XKey() {
		t.Error("the curve key changed across restarts")
	}
	closeAll2()

	cfg.Cmd.TrustedKeys = filepath.Join(dir, "missing")
	if _, _, err := Build(cfg, log); err == nil || !strings.Contains(err.Error(), "CMD_TRUSTED_KEYS") {
		t.Fatalf("missing trusted keys: %v", err)
	}
}

// The commander's log never holds the NATS credentials: a password the
// server refuses, in the URL, and a malformed second NATS_URL line (a
// configuration problem) with another secret in it.
func TestCommanderNeverLogsNATSSecrets(t *testing.T) {
	const pw, pw2 = "Pl4ntedPassw0rd", "Pl4ntedOther"
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		Users: []*server.User{{Username: "commander", Password: "right"}}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready")
	}
	defer srv.Shutdown()
	dir := t.TempDir()
	op, _ := nkeys.CreateUser()
	pub, _ := op.PublicKey()
	os.WriteFile(filepath.Join(dir, "keys"), []byte("ro "+pub+" t\n"), 0o644)
	url := strings.Replace(srv.ClientURL(), "nats://", "nats://commander:"+pw+"@", 1)
	cfg := filepath.Join(dir, "agent.env")
	os.WriteFile(cfg, []byte(strings.Join([]string{
		"SERVER_ID=vpn7", "SPOOL_DIR=" + filepath.Join(dir, "spool"),
		"NATS_URL nats://commander:" + pw2 + "@host:4222",     // a line without '='
		"CMD_NATS_URL=nats://commander:" + pw2 + "@host:4222", // a key that does not exist
		"NATS_URL=" + url,
		"CMD_TRUSTED_KEYS=" + filepath.Join(dir, "keys"), "CMD_XKEY_SEED=" + filepath.Join(dir, "xkey"),
		"CMD_NONCE_FILE=" + filepath.Join(dir, "nonces"),
	}, "\n")+"\n"), 0o600)
	var log syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--config", cfg}, func(string) string { return "" }, &log) }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(log.String(), "Authorization Violation") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := log.String()
	if !strings.Contains(out, "Authorization Violation") || !strings.Contains(out, "not a KEY=VALUE line") {
		t.Fatalf("the refusal and the configuration problem are not in the log:\n%s", out)
	}
	for _, sec := range []string{pw, pw2} {
		if strings.Contains(out, sec) {
			t.Errorf("the log holds %s:\n%s", sec, out)
		}
	}
}

// sd_notify never holds the command service up: with a notify socket that
// nobody reads, full before it starts, it serves (discovery answers), and
// it stops at once when asked, naming the READY=1 and STOPPING=1 the
// socket never took. Before the fix (go-systemd's daemon.SdNotify, which
// waits for room without a deadline) it hung in READY=1 and never saw the
// stop.
func TestNotifySocketNobodyReads(t *testing.T) {
	srv := natstest.Run(t)
	dir := t.TempDir()
	op, _ := nkeys.CreateUser()
	pub, _ := op.PublicKey()
	os.WriteFile(filepath.Join(dir, "keys"), []byte("ro "+pub+" t\n"), 0o644)
	cfg := filepath.Join(dir, "agent.env")
	os.WriteFile(cfg, []byte(strings.Join([]string{
		"SERVER_ID=vpn7", "SPOOL_DIR=" + filepath.Join(dir, "spool"), "NATS_URL=" + srv.ClientURL(),
		"CMD_TRUSTED_KEYS=" + filepath.Join(dir, "keys"), "CMD_XKEY_SEED=" + filepath.Join(dir, "xkey"),
		"CMD_NONCE_FILE=" + filepath.Join(dir, "nonces"),
	}, "\n")+"\n"), 0o600)
	_, sock := notifytest.Listen(t, dir)
	notifytest.Fill(t, sock)
	t.Setenv(sdnotify.Env, sock)

	var log syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--config", cfg}, func(string) string { return "" }, &log) }()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := &cmdsvc.Client{NC: nc, Prefix: "ocserv", Key: op}
	deadline := time.Now().Add(20 * time.Second)
	for {
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
		found, _ := c.Discover(dctx, 300*time.Millisecond)
		dcancel()
		if len(found) == 1 && strings.Contains(log.String(), "command service started") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command service does not answer discovery:\n%s", log.String())
		}
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("the command service did not stop within the unit's TimeoutStopSec (15s) with the notify socket full:\n%s", log.String())
	}
	t.Logf("stopped %s after the stop", time.Since(start).Round(time.Millisecond))
	if out := log.String(); !strings.Contains(out, "READY=1, STOPPING=1 not taken") {
		t.Errorf("the undelivered READY=1 and STOPPING=1 are not named in the log:\n%s", out)
	}
}

// With POLICY=on the command service follows the verdicts bucket on its
// own connection: as its own NATS user (CMD_NATS_USER) and under its own
// inbox (CMD_NATS_INBOX_PREFIX), with exactly the rights docs/nats.md
// gives vpn1-commander, none of the shipper's inbox. Its mirror gets the
// ledger's verdict and heartbeat with no permissions violation. (Without
// CMD_NATS_INBOX_PREFIX it would watch under the shipper's inbox, which
// its user may not read: no verdict would ever arrive.)
func TestPolicyMirrorUnderItsOwnInbox(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats.conf")
	os.WriteFile(conf, []byte(`listen: 127.0.0.1:-1
jetstream: {store_dir: "`+filepath.Join(dir, "js")+`"}
accounts: {
  OCSERV: {
    jetstream: enabled
    users: [
      {user: vpn7, password: vpn7-secret, permissions: {subscribe: {allow: ["_INBOX_vpn7.>"]}}}
      {user: vpn7-commander, password: vpn7-commander-secret, permissions: {
        publish: {allow: [
          "_OPS.>",
          "$JS.API.STREAM.INFO.KV_OCSERV_POLICY",
          "$JS.API.CONSUMER.CREATE.KV_OCSERV_POLICY.*.$KV.OCSERV_POLICY.>",
          "$JS.API.CONSUMER.DELETE.KV_OCSERV_POLICY.*",
          "$JS.FC.KV_OCSERV_POLICY.>"
        ]}
        subscribe: {allow: ["ocserv.cmd.vpn7.>", "$SRV.PING", "$SRV.INFO", "$SRV.STATS",
                            "$SRV.*.ocserv-telemetry", "$SRV.*.ocserv-telemetry.*", "_INBOX_vpn7_cmd.>"]}
      }}
      {user: ledger, password: ledger-secret}
    ]
  }
}
`), 0o600)
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lnc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("ledger", "ledger-secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer lnc.Close()
	ljs, _ := jetstream.New(lnc)
	kv, _, err := bucket.Ensure(ctx, ljs, bucket.DefaultName, true)
	if err != nil {
		t.Fatal(err)
	}
	pub := &bucket.Publisher{KV: kv, Instance: "ledger-1"}
	if err := pub.Put(ctx, policy.Verdict{V: policy.VerdictVersion, User: "erin", Reason: policy.ReasonQuota, Message: "quota used", Decided: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Heartbeat(ctx, time.Now(), 1); err != nil {
		t.Fatal(err)
	}

	op, _ := nkeys.CreateUser()
	opPub, _ := op.PublicKey()
	os.WriteFile(filepath.Join(dir, "keys"), []byte("ro "+opPub+" t\n"), 0o644)
	spoolDir := filepath.Join(dir, "spool")
	cfg, probs, err := config.Parse(strings.NewReader(strings.Join([]string{
		"SERVER_ID=vpn7", "SPOOL_DIR=" + spoolDir, "NATS_URL=" + srv.ClientURL(),
		"NATS_USER=vpn7", "NATS_PASSWORD=vpn7-secret", "NATS_INBOX_PREFIX=_INBOX_vpn7",
		"CMD_NATS_USER=vpn7-commander", "CMD_NATS_PASSWORD=vpn7-commander-secret", "CMD_NATS_INBOX_PREFIX=_INBOX_vpn7_cmd",
		"CMD_INBOX_PREFIX=_OPS", "POLICY=on",
		"CMD_TRUSTED_KEYS=" + filepath.Join(dir, "keys"), "CMD_XKEY_SEED=" + filepath.Join(dir, "etc", "xkey"),
		"CMD_NONCE_FILE=" + filepath.Join(dir, "state", "nonces"),
	}, "\n")))
	if err != nil || len(probs) > 0 {
		t.Fatal(err, probs)
	}
	out := &syncbuf.Buffer{}
	_, closeAll, err := Build(cfg, slog.New(slog.NewTextHandler(out, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	for {
		r := mirror.Lookup(spoolDir, "erin", time.Now(), time.Minute)
		if r.State == mirror.StateFresh && r.Verdict != nil && !r.Verdict.Allowed {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("erin's verdict never reached the mirror (%+v); the commander's log:\n%s", r, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(out.String(), "Permissions Violation") {
		t.Errorf("the command service hit a permissions violation:\n%s", out.String())
	}
}
