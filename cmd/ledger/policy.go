package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/hook"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/api"
	"github.com/ocserv-telemetry/ocserv-telemetry/natsjs"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/bucket"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/engine"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/webhook"
)

// policySettings are the LEDGER_POLICY_* keys (docs/policy.md).
type policySettings struct {
	Enabled       bool
	Key           string // the policy key's seed file (SU…)
	Bucket        string
	Sweep         time.Duration
	Heartbeat     time.Duration
	KickFor       time.Duration
	NewestHold    time.Duration
	WebhookURL    string
	WebhookSecret string // a file holding the secret
}

func defaultPolicySettings() policySettings {
	return policySettings{Bucket: bucket.DefaultName, Sweep: 5 * time.Minute, Heartbeat: 10 * time.Second,
		KickFor: 10 * time.Minute, NewestHold: 5 * time.Minute}
}

func init() {
	for k, v := range map[string]ledgerKey{
		"LEDGER_POLICY": {"fleet policy: evaluate policies, publish verdicts to the bucket, end sessions over a limit: on or off (default off)",
			func(s *settings, v string) error {
				switch v {
				case "on", "true", "yes", "1":
					s.Policy.Enabled = true
				case "off", "false", "no", "0":
					s.Policy.Enabled = false
				default:
					return fmt.Errorf("%q is not on or off", v)
				}
				return nil
			}},
		"LEDGER_POLICY_KEY": {"fleet policy: seed file of the ledger's own nkey (SU…), trusted with the policy role on every host; without it verdicts are published but no session is ended",
			func(s *settings, v string) error { return absPath(&s.Policy.Key, v) }},
		"LEDGER_POLICY_BUCKET": {"fleet policy: the verdicts bucket (default OCSERV_POLICY); created when missing if NATS_CREATE_STREAMS allows",
			func(s *settings, v string) error {
				if err := config.ValidToken(v); err != nil {
					return err
				}
				s.Policy.Bucket = v
				return nil
			}},
		"LEDGER_POLICY_SWEEP": {"fleet policy: how often every user is evaluated again, besides on every change (default 5m)",
			func(s *settings, v string) error { return duration(&s.Policy.Sweep, v, 10*time.Second, 24*time.Hour) }},
		"LEDGER_POLICY_HEARTBEAT": {"fleet policy: how often the heartbeat that keeps hosts' mirrors fresh is written (default 10s; keep it well under the hosts' POLICY_MAX_AGE)",
			func(s *settings, v string) error {
				return duration(&s.Policy.Heartbeat, v, time.Second, 10*time.Minute)
			}},
		"LEDGER_POLICY_KICK_FOR": {"fleet policy: validity of the kick that ends a denied user's sessions (default 10m)",
			func(s *settings, v string) error { return duration(&s.Policy.KickFor, v, time.Minute, 24*time.Hour) }},
		"LEDGER_POLICY_NEWEST_HOLD": {"fleet policy: when the newest session wins, how long the old session's server refuses the user so its cookie cannot win back (default 5m; 0 off)",
			func(s *settings, v string) error {
				if v == "0" {
					s.Policy.NewestHold = 0
					return nil
				}
				return duration(&s.Policy.NewestHold, v, time.Second, 24*time.Hour)
			}},
		"LEDGER_POLICY_WEBHOOK_URL": {"fleet policy: http(s) URL the notices are POSTed to; empty (the default) means no webhook",
			func(s *settings, v string) error {
				if v == "" {
					s.Policy.WebhookURL = ""
					return nil
				}
				u, err := url.Parse(v)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					return fmt.Errorf("%q is not an http or https URL", v)
				}
				s.Policy.WebhookURL = v
				return nil
			}},
		"LEDGER_POLICY_WEBHOOK_SECRET": {"fleet policy: file holding the webhook's HMAC-SHA256 secret (required with a webhook URL; owner-only)",
			func(s *settings, v string) error { return absPath(&s.Policy.WebhookSecret, v) }},
	} {
		ledgerKeys[k] = v
	}
}

// readSecret reads a secret file that nobody but its owner may read.
func readSecret(path, what string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s %s is readable by others (mode %v); make it 0600", what, path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("%s %s is empty", what, path)
	}
	return b, nil
}

// policyParts are fleet policy's pieces of a running ledger.
type policyParts struct {
	eng  *engine.Engine
	cmds *cmdsvc.Client // the policy key's commands to hosts; nil without LEDGER_POLICY_KEY
	sink *webhook.Sink
	wake chan struct{}
}

// startPolicy builds the engine (and the webhook sink); Run starts them.
func startPolicy(st settings, db *store, conn *natsjs.Conn, active func() bool, log *slog.Logger) (*policyParts, error) {
	ps := st.Policy
	p := &policyParts{wake: make(chan struct{}, 1)}
	var enf engine.Enforcer
	if ps.Key != "" {
		seed, err := readSecret(ps.Key, "LEDGER_POLICY_KEY")
		if err != nil {
			return nil, err
		}
		kp, err := nkeys.FromSeed(seed)
		if err != nil {
			return nil, fmt.Errorf("LEDGER_POLICY_KEY: %w", err)
		}
		pub, _ := kp.PublicKey()
		if !nkeys.IsValidPublicUserKey(pub) {
			return nil, errors.New("LEDGER_POLICY_KEY must hold a user nkey seed (SU…; ctl keygen makes one)")
		}
		// Short validity: each command holds a nonce on the host until it
		// expires, and the hosts bound the live nonces per key. The
		// answers come back under the console's inbox prefix, like the
		// console's commands: a command service answers only under its
		// CMD_INBOX_PREFIX and drops the rest, and the ledger's own inbox
		// (its JetStream pulls) is no place hosts may publish to
		// (docs/nats.md).
		p.cmds = &cmdsvc.Client{NC: conn.NC, Prefix: st.Agent.SubjectPrefix, Key: kp, TTL: 15 * time.Second, InboxPrefix: st.Console.InboxPrefix}
		enf = &engine.CommandEnforcer{Client: p.cmds}
		log.Info("policy: ending sessions with the policy key; trust it on every host with role policy", "key", pub)
	} else {
		log.Warn("policy: LEDGER_POLICY_KEY is not set: verdicts are published and hosts refuse denied logins, but no session is ended mid-way")
	}
	var secret []byte
	if ps.WebhookURL != "" {
		var err error
		if secret, err = readSecret(ps.WebhookSecret, "LEDGER_POLICY_WEBHOOK_SECRET"); err != nil {
			return nil, err
		}
	}
	host, _ := os.Hostname()
	p.eng = engine.New(engine.Options{
		Store: db,
		Bucket: func(ctx context.Context) (*bucket.Publisher, error) {
			kv, created, err := bucket.Ensure(ctx, conn.JS, ps.Bucket, st.Agent.NATS.CreateStreams)
			if err != nil {
				return nil, err
			}
			if created {
				log.Info("bucket created", "bucket", ps.Bucket)
			}
			return &bucket.Publisher{KV: kv, Instance: host}, nil
		},
		Enforcer: enf, NC: conn.NC, Prefix: st.Agent.SubjectPrefix,
		Webhook: ps.WebhookURL != "", OnNotice: func() {
			select {
			case p.wake <- struct{}{}:
			default:
			}
		},
		Active: active, Sweep: ps.Sweep, Heartbeat: ps.Heartbeat, KickFor: ps.KickFor, NewestHold: ps.NewestHold,
		Log: log.With("part", "policy"),
	})
	if ps.WebhookURL != "" {
		p.sink = &webhook.Sink{URL: ps.WebhookURL, Secret: secret, Store: db, Agent: "ocserv-telemetry-ledger/" + hook.Version,
			Log: log.With("part", "webhook")}
	}
	return p, nil
}

// run runs the engine, and the webhook sink on the active instance.
func (p *policyParts) run(ctx context.Context, active func() bool) {
	if p.sink != nil {
		go func() {
			for ctx.Err() == nil {
				if !active() {
					select {
					case <-ctx.Done():
						return
					case <-time.After(time.Second):
					}
					continue
				}
				p.sink.Pass(ctx)
				select {
				case <-ctx.Done():
				case <-p.wake:
				case <-time.After(time.Second):
				}
			}
		}()
	}
	p.eng.Run(ctx)
}

// hooks connect the API's policy endpoints to the engine.
func (p *policyParts) hooks() *api.PolicyHooks {
	return &api.PolicyHooks{Touch: p.eng.Touch, SweepSoon: p.eng.SweepSoon, Settle: p.eng.Settle, Stats: func() any { return p.eng.Stats() }}
}

// touch re-evaluates the users a batch changed.
func (p *policyParts) touch(r ledger.BatchResult) { p.eng.Touch(r.Users...) }

// register adds the engine's series to the ledger's metrics.
func (p *policyParts) register(reg *prometheus.Registry) {
	g := func(name, help string, f func(engine.Stats) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(p.eng.Stats()) }))
	}
	c := func(name, help string, f func(engine.Stats) float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(p.eng.Stats()) }))
	}
	g("ocserv_ledger_policy_active", "1 while this instance's policy engine evaluates (the active instance).", func(s engine.Stats) float64 { return b2f(s.Active) })
	g("ocserv_ledger_policy_verdicts", "Verdicts in the bucket (users denied or under a session limit).", func(s engine.Stats) float64 { return float64(s.Published) })
	g("ocserv_ledger_policy_denied_users", "Users denied now.", func(s engine.Stats) float64 { return float64(s.Denied) })
	g("ocserv_ledger_policy_sweep_seconds", "Duration of the last full evaluation.", func(s engine.Stats) float64 { return s.SweepSeconds })
	c("ocserv_ledger_policy_evaluations_total", "User evaluations.", func(s engine.Stats) float64 { return float64(s.Evaluations) })
	c("ocserv_ledger_policy_kicks_total", "Kicks sent to hosts.", func(s engine.Stats) float64 { return float64(s.Kicks) })
	c("ocserv_ledger_policy_unkicks_total", "Kicks lifted.", func(s engine.Stats) float64 { return float64(s.Unkicks) })
	c("ocserv_ledger_policy_disconnects_total", "Sessions over a limit ended.", func(s engine.Stats) float64 { return float64(s.Disconnects) })
	c("ocserv_ledger_policy_command_errors_total", "Commands to hosts that failed (sent again later).", func(s engine.Stats) float64 { return float64(s.CommandErrs) })
	c("ocserv_ledger_policy_no_command_users_total", "Users whose sessions could not be ended by command: the command service refuses their name (their logins are refused).", func(s engine.Stats) float64 { return float64(s.NoCommand) })
	c("ocserv_ledger_policy_notices_total", "Notices recorded.", func(s engine.Stats) float64 { return float64(s.Notices) })
	c("ocserv_ledger_policy_bucket_bytes_total", "Bytes of verdicts put to the bucket by this instance.", func(s engine.Stats) float64 { return float64(s.PublishBytes) })
}
