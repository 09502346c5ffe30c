package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/console"
	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ingest"
)

// The ledger's configuration: a KEY=VALUE file like the agent's (systemd's
// EnvironmentFile= reads it too), holding the agent's NATS_* keys,
// SUBJECT_PREFIX and NATS_EVENTS_STREAM (package config parses those) and
// the LEDGER_* keys below.
const (
	defaultConfigPath = "/etc/ocserv-telemetry/ledger.env"
	configEnv         = "OCSERV_TELEMETRY_LEDGER_CONFIG"
)

type settings struct {
	Agent config.Config // NATS, SubjectPrefix

	Database      string // a file path (SQLite) or a postgres:// URL
	Consumer      string
	TrustedKeys   string
	NonceFile     string
	MaxSkew       time.Duration
	MaxValidity   time.Duration
	Retention     ledger.Retention
	PruneEvery    time.Duration
	Batch         int
	MetricsListen string
	StandbyPoll   time.Duration
	InboxPrefixes []string
	Policy        policySettings
	// Console is the web console (LEDGER_CONSOLE_*, package console).
	Console console.Config
}

func defaultSettings() settings {
	return settings{
		Agent:         config.Default(),
		Database:      "/var/lib/ocserv-telemetry-ledger/ledger.db",
		Consumer:      "ocserv_ledger",
		TrustedKeys:   "/etc/ocserv-telemetry/operators.keys",
		NonceFile:     "/var/lib/ocserv-telemetry-ledger/nonces",
		MaxSkew:       30 * time.Second,
		MaxValidity:   5 * time.Minute,
		Retention:     ledger.DefaultRetention,
		PruneEvery:    time.Hour,
		Batch:         ingest.DefaultBatch,
		StandbyPoll:   2 * time.Second,
		InboxPrefixes: []string{"_INBOX"},
		Policy:        defaultPolicySettings(),
		Console:       console.DefaultConfig(),
	}
}

type ledgerKey struct {
	doc string
	set func(s *settings, v string) error
}

// ledgerKeys are the ledger's own keys.
var ledgerKeys = map[string]ledgerKey{
	"LEDGER_DATABASE": {"the database: a file path for SQLite (default /var/lib/ocserv-telemetry-ledger/ledger.db) or a postgres:// URL",
		func(s *settings, v string) error {
			if isPostgres(v) {
				s.Database = v
				return nil
			}
			if !filepath.IsAbs(v) {
				if mayHoldSecret(v) {
					// A mistyped URL or libpq's keyword form: the
					// report goes to the journal, not the password.
					return errors.New("the value is neither an absolute path nor a postgres:// URL (not repeated here: it may hold a password)")
				}
				return fmt.Errorf("%q is neither an absolute path nor a postgres:// URL", v)
			}
			s.Database = filepath.Clean(v)
			return nil
		}},
	"LEDGER_CONSUMER": {"name of the ledger's durable consumer on the events stream (default ocserv_ledger)",
		func(s *settings, v string) error {
			if !events.IsToken(v, 64) {
				return fmt.Errorf("%q is not a consumer name (letters, digits, '-', '_')", v)
			}
			s.Consumer = v
			return nil
		}},
	"LEDGER_TRUSTED_KEYS": {"file of operator public keys allowed to query, with a role each (default /etc/ocserv-telemetry/operators.keys)",
		func(s *settings, v string) error { return absPath(&s.TrustedKeys, v) }},
	"LEDGER_NONCE_FILE": {"the query nonce cache, refusing replays across restarts (default /var/lib/ocserv-telemetry-ledger/nonces)",
		func(s *settings, v string) error { return absPath(&s.NonceFile, v) }},
	"LEDGER_MAX_CLOCK_SKEW": {"clock difference tolerated between operator and ledger (default 30s)",
		func(s *settings, v string) error { return duration(&s.MaxSkew, v, time.Second, time.Hour) }},
	"LEDGER_MAX_VALIDITY": {"longest validity of a signed query (default 5m)",
		func(s *settings, v string) error { return duration(&s.MaxValidity, v, time.Second, 24*time.Hour) }},
	"LEDGER_RETAIN_SESSIONS": {"how long ended sessions, usage days, audit entries and applied event ids are kept (default 400d)",
		func(s *settings, v string) error {
			return duration(&s.Retention.Sessions, v, 24*time.Hour, 100*365*24*time.Hour)
		}},
	"LEDGER_RETAIN_SAMPLES": {"how long accounting samples are kept (default 30d)",
		func(s *settings, v string) error {
			return duration(&s.Retention.Samples, v, time.Hour, 100*365*24*time.Hour)
		}},
	"LEDGER_PRUNE_INTERVAL": {"how often retention runs in the background (default 1h)",
		func(s *settings, v string) error { return duration(&s.PruneEvery, v, time.Minute, 7*24*time.Hour) }},
	"LEDGER_BATCH": {"events applied per database transaction at most (default 25000): fetched 2500 at a time, the fetches already waiting join one transaction while a backlog lasts",
		func(s *settings, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 100000 {
				return fmt.Errorf("%q is not a whole number in 1..100000", v)
			}
			s.Batch = n
			return nil
		}},
	"LEDGER_METRICS_LISTEN": {"host:port of the Prometheus /metrics endpoint; empty (the default) means off",
		func(s *settings, v string) error {
			if v != "" {
				if _, _, err := net.SplitHostPort(v); err != nil {
					return fmt.Errorf("%q is not host:port", v)
				}
			}
			s.MetricsListen = v
			return nil
		}},
	"LEDGER_INBOX_PREFIXES": {"subject prefixes a query's reply may go to, comma-separated (default _INBOX, nats.go's); other requests are dropped unanswered",
		func(s *settings, v string) error {
			var out []string
			for _, p := range strings.Split(v, ",") {
				p = strings.TrimSpace(p)
				for _, tok := range strings.Split(p, ".") {
					if !events.IsToken(tok, 128) {
						return fmt.Errorf("%q is not a subject prefix", p)
					}
				}
				out = append(out, p)
			}
			s.InboxPrefixes = out
			return nil
		}},
	"LEDGER_STANDBY_POLL": {"how often a standby instance tries to become the active one (default 2s)",
		func(s *settings, v string) error {
			return duration(&s.StandbyPoll, v, 100*time.Millisecond, time.Minute)
		}},
}

// agentKeysUsed are the agent's keys the ledger reads; others are
// reported as unknown.
var agentKeysUsed = []string{"NATS_URL", "NATS_CREDS", "NATS_NKEY_SEED", "NATS_USER", "NATS_PASSWORD", "NATS_TOKEN",
	"NATS_CA", "NATS_CERT", "NATS_KEY", "NATS_DOMAIN", "NATS_INBOX_PREFIX", "NATS_EVENTS_STREAM", "SUBJECT_PREFIX", "NATS_CREATE_STREAMS", "NATS_STATE_BUCKET"}

// databaseFlag is --db of migrate and replay, checked as LEDGER_DATABASE
// is: a mistyped URL is not opened as a relative SQLite path (which made
// directories named after it, password included).
func (s *settings) databaseFlag(v string) error {
	if err := ledgerKeys["LEDGER_DATABASE"].set(s, v); err != nil {
		return usageError{fmt.Errorf("--db: %w", err)}
	}
	return nil
}

// mayHoldSecret reports whether a database value that is not taken may
// still be a connection string with a password in it (user information,
// a query, libpq's key=value words).
func mayHoldSecret(v string) bool {
	return strings.ContainsAny(v, "@?=") || strings.Contains(v, "://")
}

func isPostgres(v string) bool {
	return strings.HasPrefix(v, "postgres://") || strings.HasPrefix(v, "postgresql://")
}

func absPath(dst *string, v string) error {
	if !filepath.IsAbs(v) {
		return fmt.Errorf("%q is not an absolute path", v)
	}
	*dst = filepath.Clean(v)
	return nil
}

// duration accepts Go durations and whole days ("400d").
func duration(dst *time.Duration, v string, min, max time.Duration) error {
	var d time.Duration
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil {
			return fmt.Errorf("%q is not a duration (like 30s, 12h or 400d)", v)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return fmt.Errorf("%q is not a duration (like 30s, 12h or 400d)", v)
		}
	}
	if d < min || d > max {
		return fmt.Errorf("%s is outside %s..%s", v, min, max)
	}
	*dst = d
	return nil
}

// configPath: the flag, else $OCSERV_TELEMETRY_LEDGER_CONFIG, else the default.
func configPath(flag string, getenv func(string) string) string {
	if flag != "" {
		return flag
	}
	if p := getenv(configEnv); p != "" {
		return p
	}
	return defaultConfigPath
}

// loadSettings reads the file; a missing file means the defaults. Problems
// (unknown keys, bad values) are returned with the key and line; a bad
// value keeps its default.
func loadSettings(path string) (settings, []string, error) {
	s := defaultSettings()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, []string{path + ": no such file; using the defaults"}, nil
	}
	if err != nil {
		return s, nil, fmt.Errorf("read %s: %w", path, err)
	}
	var probs []string
	var agent bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			agent.WriteString("\n")
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), unquote(strings.TrimSpace(v))
		if lk, ok := ledgerKeys[k]; ok {
			if err := lk.set(&s, v); err != nil {
				probs = append(probs, fmt.Sprintf("%s: line %d: %s: %v", path, n, k, err))
			}
			agent.WriteString("\n")
			continue
		}
		if console.IsKey(k) {
			if err := s.Console.SetKey(k, v); err != nil {
				probs = append(probs, fmt.Sprintf("%s: line %d: %s: %v", path, n, k, err))
			}
			agent.WriteString("\n")
			continue
		}
		known := false
		for _, a := range agentKeysUsed {
			known = known || a == k
		}
		if !known {
			probs = append(probs, fmt.Sprintf("%s: line %d: %s: unknown key (the ledger reads %s and the LEDGER_* keys)", path, n, k, strings.Join(agentKeysUsed, ", ")))
			agent.WriteString("\n")
			continue
		}
		agent.WriteString(line + "\n")
	}
	cfg, aprobs, err := config.Parse(&agent)
	if err != nil {
		return s, probs, fmt.Errorf("read %s: %w", path, err)
	}
	for _, p := range aprobs {
		probs = append(probs, path+": "+p.Error())
	}
	s.Agent = cfg
	return s, probs, nil
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}
