// Command commander is the command service of one ocserv host (package
// cmdsvc): signed, audited operator commands over NATS. It runs as its own
// systemd unit rather than inside the shipper because it needs what the
// shipper must not have: root's occtl socket, write access to ocserv's
// password file and per-user config, and CAP_NET_ADMIN for the firewall.
// The shipper keeps its narrow sandbox (spool and network only), a hung
// occtl cannot stall event delivery, and a host that should not be managed
// remotely simply does not enable the unit. Audit events go through the
// spool, so the shipper delivers them like every other event.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/hook"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/sdnotify"
	"github.com/ocserv-telemetry/ocserv-telemetry/natsjs"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocpasswd"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/bucket"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/mirror"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
	"github.com/ocserv-telemetry/ocserv-telemetry/userconf"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ocserv-telemetry-commander:", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("commander", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (default $"+config.PathEnv+" or "+config.DefaultPath+")")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if *version {
		fmt.Fprintln(stderr, "ocserv-telemetry commander", hook.Version)
		return nil
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	path := config.Path(*cfgPath, getenv)
	cfg, probs, err := config.Load(path)
	if err != nil {
		return err
	}
	for _, p := range probs {
		log.Warn("configuration problem; keeping the default for it", "file", path, "problem", p.Error())
	}
	svc, closeAll, err := Build(cfg, log)
	if err != nil {
		return err
	}
	defer closeAll()
	log.Info("command service started", "server_id", cfg.ServerID, "subjects", cmdsvc.Subject(cfg.SubjectPrefix, cfg.ServerID, ">"),
		"xkey", svc.XKey(), "trusted_keys", cfg.Cmd.TrustedKeys, "version", hook.Version)
	// sd_notify never blocks (package sdnotify): READY=1 and STOPPING=1 are
	// retried until the socket takes them, the latter at most a second
	// past the stop.
	sd := sdnotify.New(log)
	defer sd.Close(time.Second)
	sd.Ready()
	<-ctx.Done()
	sd.Stopping()
	log.Info("command service stopping")
	return nil
}

// Build opens everything the service needs from cfg and starts it. The
// returned function stops the service and closes what Build opened.
func Build(cfg config.Config, log *slog.Logger) (*cmdsvc.Service, func(), error) {
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (*cmdsvc.Service, func(), error) { closeAll(); return nil, nil, err }

	trusted, err := opauth.LoadTrusted(cfg.Cmd.TrustedKeys)
	if err != nil {
		return fail(fmt.Errorf("CMD_TRUSTED_KEYS: %w", err))
	}
	xkp, err := loadOrMakeXKey(cfg.Cmd.XKeySeed, log)
	if err != nil {
		return fail(fmt.Errorf("CMD_XKEY_SEED: %w", err))
	}
	nonces, err := opauth.OpenNonceCache(cfg.Cmd.NonceFile, opauth.NonceLimits{PerKey: cfg.Cmd.KeyQuota}, time.Now())
	if err != nil {
		return fail(fmt.Errorf("CMD_NONCE_FILE: %w", err))
	}
	closers = append(closers, func() { nonces.Close() })
	sp, err := spool.Open(cfg.SpoolDir, spool.Options{Fsync: cfg.Fsync, LockWait: 2 * time.Second, Create: true})
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { sp.Close() })
	conn, err := natsjs.Connect(cfg.CommanderNATS(), natsjs.Options{Name: "ocserv-telemetry-commander " + cfg.ServerID}, log)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, conn.Close)

	var extra []cmdsvc.Action
	if cfg.Cmd.OcpasswdFile != "" {
		extra = append(extra, cmdsvc.UserActions(&ocpasswd.Passwd{File: cfg.Cmd.OcpasswdFile, Binary: cfg.Cmd.Ocpasswd, Logger: log})...)
	}
	if cfg.Cmd.ConfigPerUser != "" || cfg.Cmd.ConfigPerGroup != "" {
		extra = append(extra, cmdsvc.ConfigActions(&userconf.Store{UserDir: cfg.Cmd.ConfigPerUser, GroupDir: cfg.Cmd.ConfigPerGroup,
			BackupDir: cfg.Cmd.ConfigBackupDir, Logger: log})...)
	}
	if cfg.Policy.Enabled {
		// The local mirror of the ledger's verdicts, which the hook reads
		// at every connect (docs/policy.md).
		m, err := mirror.Open(cfg.SpoolDir)
		if err != nil {
			return fail(fmt.Errorf("POLICY=on: %w", err))
		}
		ctx, cancel := context.WithCancel(context.Background())
		f := &bucket.Follower{JS: conn.JS, Bucket: cfg.Policy.Bucket, Mirror: m, SpoolDir: cfg.SpoolDir, Log: log}
		done := make(chan struct{})
		go func() { f.Run(ctx); close(done) }()
		closers = append(closers, func() { cancel(); <-done })
		log.Info("mirroring the ledger's verdicts", "bucket", cfg.Policy.Bucket, "dir", m.Dir(),
			"max_age", cfg.Policy.MaxAge.String(), "stale", cfg.Policy.Stale)
	}
	var pst *cmdsvc.PolicyStatus
	if cfg.Policy.Enabled {
		pst = &cmdsvc.PolicyStatus{MaxAge: cfg.Policy.MaxAge, Stale: cfg.Policy.Stale}
	}
	svc, err := cmdsvc.Start(cmdsvc.Options{
		NC: conn.NC, Prefix: cfg.SubjectPrefix, ServerID: cfg.ServerID,
		Verifier: &opauth.Verifier{Trusted: trusted, Nonces: nonces, MaxSkew: cfg.Cmd.MaxSkew, MaxValidity: cfg.Cmd.MaxValidity,
			KeyRate: cfg.Cmd.KeyRate, KeyBurst: cfg.Cmd.KeyBurst},
		XKey:       xkp,
		Occtl:      &ocserv.Occtl{Path: cfg.Cmd.Occtl, Socket: cfg.Cmd.OcctlSocket},
		OcservPath: cfg.Cmd.Ocserv,
		Spool:      sp, RefusalAuditsPerMinute: cfg.Cmd.RefusalAuditsPerMinute,
		InboxPrefixes: cfg.Cmd.InboxPrefixes,
		Log:           log, Build: hook.Version, Extra: extra, Policy: pst,
	})
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { svc.Stop() })
	return svc, closeAll, nil
}

// loadOrMakeXKey reads the server's curve seed, making it (0600) at the
// first start.
func loadOrMakeXKey(path string, log *slog.Logger) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		seed, err := opauth.NewCurveSeed()
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		_, err = f.Write(append(seed, '\n'))
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
			return nil, err
		}
		log.Info("made this server's curve key for sealed secrets", "file", path)
		b = seed
	} else if err != nil {
		return nil, err
	}
	kp, err := nkeys.FromCurveSeed(bytes.TrimSpace(b))
	if err != nil {
		return nil, fmt.Errorf("%s does not hold a curve seed (SX…): %w", path, err)
	}
	return kp, nil
}
