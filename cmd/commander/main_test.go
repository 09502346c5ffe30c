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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
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
