package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/syncbuf"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/api"
	"github.com/ocserv-telemetry/ocserv-telemetry/livestate"
)

// runConsole runs the real bin/ledger with the web console on the demo's
// NATS server (SQLite in the demo's directory), with one operator account
// whose password is made here and printed, then connects two users so
// someone is online, and serves until Ctrl-C.
func runConsole(tmp, bin, natsURL string, nc *nats.Conn, connectSome func() error) error {
	ledgerBin, _ := filepath.Abs(filepath.Join(bin, "ledger"))
	if _, err := os.Stat(ledgerBin); err != nil {
		return fmt.Errorf("%s is missing; run `make build` first", ledgerBin)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateKeyValue(ctx, livestate.BucketConfig("ocserv_state")); err != nil {
		return fmt.Errorf("state bucket: %w", err)
	}
	dir := filepath.Join(tmp, "console-ledger")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	if err := os.WriteFile(filepath.Join(dir, "console.nk"), seed, 0o600); err != nil {
		return err
	}
	// The ledger trusts the console's key read-write, so the console's
	// quota reset and expiry extension work (and the demo sets alice's
	// policy with it below).
	pub, _ := kp.PublicKey()
	os.WriteFile(filepath.Join(dir, "operators.keys"), []byte("read-write "+pub+" console\n"), 0o600)
	listen := "127.0.0.1:8790"
	if ln, err := net.Listen("tcp", listen); err == nil {
		ln.Close()
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		listen = ln.Addr().String()
		ln.Close()
	}
	cfg := filepath.Join(dir, "ledger.env")
	conf := strings.Join([]string{
		"NATS_URL=" + natsURL,
		"LEDGER_DATABASE=" + filepath.Join(dir, "ledger.db"),
		"LEDGER_TRUSTED_KEYS=" + filepath.Join(dir, "operators.keys"),
		"LEDGER_NONCE_FILE=" + filepath.Join(dir, "nonces"),
		"LEDGER_CONSUMER=ocserv_console_demo",
		"LEDGER_POLICY=on",
		"LEDGER_CONSOLE=on",
		"LEDGER_CONSOLE_LISTEN=" + listen,
		"LEDGER_CONSOLE_USERS=" + filepath.Join(dir, "console-users"),
		"LEDGER_CONSOLE_KEY=" + filepath.Join(dir, "console.nk"),
		"LEDGER_CONSOLE_STATE_DIR=" + filepath.Join(dir, "console"),
	}, "\n") + "\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return err
	}
	if out, err := exec.Command(ledgerBin, "migrate", "--config", cfg).CombinedOutput(); err != nil {
		return fmt.Errorf("ledger migrate: %v\n%s", err, out)
	}
	pw := make([]byte, 12)
	rand.Read(pw)
	password := base64.RawURLEncoding.EncodeToString(pw)
	add := exec.Command(ledgerBin, "console-user", "add", "demo", "--role", "operator", "--password-stdin", "--config", cfg)
	add.Stdin = strings.NewReader(password + "\n")
	if out, err := add.CombinedOutput(); err != nil {
		return fmt.Errorf("ledger console-user add: %v\n%s", err, out)
	}

	fmt.Println("== starting bin/ledger serve with the web console")
	var logBuf syncbuf.Buffer
	serve := exec.Command(ledgerBin, "serve", "--config", cfg)
	serve.Stdout, serve.Stderr = &logBuf, &logBuf
	serve.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := serve.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- serve.Wait() }()
	deadline := time.After(20 * time.Second)
	for !strings.Contains(logBuf.String(), "web console listening") {
		select {
		case err := <-done:
			return fmt.Errorf("ledger serve exited: %v\n%s", err, logBuf.String())
		case <-deadline:
			serve.Process.Kill()
			return fmt.Errorf("the console did not start within 20s:\n%s", logBuf.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := connectSome(); err != nil {
		serve.Process.Kill()
		return err
	}
	// A policy for alice, so her page shows where she stands and offers
	// the quota reset and the expiry extension.
	lc := &api.Client{NC: nc, Prefix: "ocserv", Key: kp}
	pctx, pcancel := context.WithTimeout(context.Background(), 15*time.Second)
	rep, err := lc.Do(pctx, "policy-set", map[string]string{"scope": "user", "name": "alice", "quota": "1GiB", "expire": time.Now().UTC().AddDate(0, 0, 30).Format(time.DateOnly)})
	pcancel()
	if err != nil || !rep.OK {
		serve.Process.Kill()
		return fmt.Errorf("policy-set for alice: %v %+v\n%s", err, rep, logBuf.String())
	}
	fmt.Printf("\n   web console: http://%s/\n   log in as:   demo / %s\n", listen, password)
	fmt.Println("   alice has a quota and an expiry: /users/alice shows them, with the reset and the extension")
	fmt.Println("   (no ocserv runs here: the overview says occtl is missing, and who is online comes from the")
	fmt.Println("   hook's events; actions need a command service, which the demo does not run)")
	fmt.Println("   serving until Ctrl-C")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	select {
	case <-sig:
	case err := <-done:
		return fmt.Errorf("ledger serve exited: %v\n%s", err, logBuf.String())
	}
	fmt.Println("\n== stopping bin/ledger")
	serve.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		serve.Process.Kill()
		<-done
	}
	return nil
}
