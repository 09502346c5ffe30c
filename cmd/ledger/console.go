package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/console"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/api"
	"github.com/ocserv-telemetry/ocserv-telemetry/natsjs"
)

// startConsole serves the web console beside the ledger (LEDGER_CONSOLE=on):
// the live state from the state bucket and the events subjects, the
// database through the store, actions signed with the console's key, and
// the console's own audit spool shipped to the events stream. It returns
// the function that stops it. A console that cannot start stops the
// ledger from starting: someone asked for it.
func startConsole(ctx context.Context, st settings, db *store, conn *natsjs.Conn, log *slog.Logger) (func(), error) {
	c := st.Console
	if err := c.Validate(); err != nil {
		return nil, err
	}
	log = log.With("part", "console")
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("LEDGER_CONSOLE_STATE_DIR: %w", err)
	}
	accts, err := console.LoadAccounts(c.Users)
	if err != nil {
		return nil, fmt.Errorf("LEDGER_CONSOLE_USERS: %w (create the first account with `ledger console-user add NAME --role operator`)", err)
	}
	sessions, err := console.OpenSessions(filepath.Join(c.StateDir, "sessions.json"), c.SessionTTL, c.IdleTimeout, nil)
	if err != nil {
		return nil, err
	}
	auditor, err := console.OpenSpoolAuditor(filepath.Join(c.StateDir, "audit-spool"), c.ServerID)
	if err != nil {
		return nil, err
	}
	var cmds console.Commander
	var ledgerActions console.LedgerActor
	pub := ""
	kp, err := readUserSeed(c.Key)
	switch {
	case err == nil:
		pub, _ = kp.PublicKey()
		cmds = &cmdsvc.Client{NC: conn.NC, Prefix: st.Agent.SubjectPrefix, Key: kp, TTL: 30 * time.Second, InboxPrefix: c.InboxPrefix}
		// The policy changes go to the ledger's query service (any
		// instance; the active one's engine acts on them) signed with
		// the same key, which LEDGER_TRUSTED_KEYS must trust read-write;
		// their answers come back under the console's inbox prefix too
		// (the ledger's own inbox is where its JetStream pulls arrive).
		ledgerActions = &api.Client{NC: conn.NC, Prefix: st.Agent.SubjectPrefix, Key: kp, TTL: 30 * time.Second, InboxPrefix: c.InboxPrefix}
	case errors.Is(err, os.ErrNotExist):
		log.Warn("no console key: pages work, actions are unavailable", "LEDGER_CONSOLE_KEY", c.Key)
	default:
		auditor.Close()
		return nil, fmt.Errorf("LEDGER_CONSOLE_KEY: %w", err)
	}
	live := console.NewLive(log, nil)
	o := console.Options{Config: c, Accounts: accts, Sessions: sessions, Ledger: db, Live: live,
		Commands: cmds, LedgerActions: ledgerActions, Audit: auditor, KeyPublic: pub, Prefix: st.Agent.SubjectPrefix, Log: log}
	if st.Policy.Enabled {
		o.Policies = db
	}
	srv, err := console.New(o)
	if err != nil {
		auditor.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		auditor.Close()
		return nil, fmt.Errorf("LEDGER_CONSOLE_LISTEN %s: %w", c.Listen, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := live.Run(cctx, conn.NC, conn.JS, st.Agent.SubjectPrefix, st.Agent.Live.StateBucket); err != nil {
			log.Error("live state stopped", "err", err.Error())
		}
	}()
	go func() {
		defer wg.Done()
		if err := auditor.Ship(cctx, conn, st.Agent.SubjectPrefix, log); err != nil && cctx.Err() == nil {
			log.Error("console audit delivery stopped", "err", err.Error())
		}
	}()
	go func() {
		defer wg.Done()
		if err := srv.Serve(cctx, ln); err != nil {
			log.Error("console stopped", "err", err.Error())
		}
	}()
	scheme := "http"
	if c.TLSCert != "" {
		scheme = "https"
	}
	log.Info("web console listening", "url", scheme+"://"+ln.Addr().String(), "actions", cmds != nil)
	return func() {
		cancel()
		wg.Wait()
		auditor.Close()
	}, nil
}

// readUserSeed reads an nkeys user seed file (SU…), refusing one others
// can read: it signs commands that run as root on every host.
func readUserSeed(path string) (nkeys.KeyPair, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %v); make it 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
	if err != nil {
		return nil, fmt.Errorf("%s: not an nkeys seed: %w", path, err)
	}
	if pub, _ := kp.PublicKey(); !nkeys.IsValidPublicUserKey(pub) {
		return nil, fmt.Errorf("%s: not a user seed (SU…); make one with `ctl keygen`", path)
	}
	return kp, nil
}
