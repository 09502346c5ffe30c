package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/config"
)

// The ctl configuration: a KEY=VALUE file on the operator's machine, with
// the agent's NATS_* keys and SUBJECT_PREFIX plus ctl's own. Every key can
// also come from the environment as OCSERV_CTL_<KEY>, which wins over the
// file; a flag wins over both. On a VPN host, ctl can read the agent's file
// instead (--agent-config, or by itself when there is no ctl file and the
// agent's file is readable).
const (
	ctlConfigEnv = "OCSERV_CTL_CONFIG"
	ctlEnvPrefix = "OCSERV_CTL_"
)

// ctl-only keys; the rest are the agent's (package config).
var ctlKeys = map[string]string{
	"OPERATOR_KEY": "path of the operator's nkey seed file (ctl keygen makes one)",
	"CTL_TIMEOUT":  "how long to wait for servers' answers (default 5s)",
	"CTL_INBOX_PREFIX": "subject prefix of ctl's reply inboxes (default _INBOX); servers answer only under their CMD_INBOX_PREFIX, " +
		"so a per-operator prefix (with NATS permissions to match) keeps operators from reading each other's answers",
}

// agentKeys are the agent keys ctl uses.
var agentKeys = []string{"NATS_URL", "NATS_CREDS", "NATS_NKEY_SEED", "NATS_USER", "NATS_PASSWORD", "NATS_TOKEN",
	"NATS_CA", "NATS_CERT", "NATS_KEY", "NATS_DOMAIN", "NATS_EVENTS_STREAM", "SUBJECT_PREFIX", "SPOOL_DIR", "SERVER_ID"}

type settings struct {
	Source      string // the file read ("" for none)
	Agent       config.Config
	OperatorKey string
	Timeout     time.Duration
	InboxPrefix string // "": nats.go's _INBOX
}

func defaultCtlConfig(getenv func(string) string) string {
	if p := getenv(ctlConfigEnv); p != "" {
		return p
	}
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "ocserv-telemetry", "ctl.env")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".config", "ocserv-telemetry", "ctl.env")
	}
	return ""
}

func defaultOperatorKey(getenv func(string) string) string {
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "ocserv-telemetry", "operator.nk")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".config", "ocserv-telemetry", "operator.nk")
	}
	return "operator.nk"
}

// loadSettings reads the file (ctlPath, else $OCSERV_CTL_CONFIG, else
// ~/.config/ocserv-telemetry/ctl.env, else the agent's file when
// readable), then the environment. warn receives problems that do not stop ctl.
func loadSettings(ctlPath string, getenv func(string) string, warn func(string)) (*settings, error) {
	st := &settings{Timeout: 5 * time.Second, OperatorKey: defaultOperatorKey(getenv)}
	var text []byte
	{
		explicit := ctlPath != ""
		if !explicit {
			ctlPath = defaultCtlConfig(getenv)
		}
		b, err := os.ReadFile(ctlPath)
		switch {
		case err == nil:
			text, st.Source = b, ctlPath
		case errors.Is(err, fs.ErrNotExist) && !explicit:
			// On a VPN host the agent's file serves (when readable).
			ap := config.Path("", getenv)
			if ab, aerr := os.ReadFile(ap); aerr == nil {
				text, st.Source = ab, ap
			}
		default:
			return nil, fmt.Errorf("ctl config: %w", err)
		}
	}
	// Split ctl keys from agent keys; only the agent keys ctl uses are
	// kept (the agent's file has many ctl does not care about).
	var agent bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if err := st.setCtl(k, unquote(strings.TrimSpace(v))); err == nil {
			continue
		} else if !errors.Is(err, errNotCtlKey) {
			return nil, fmt.Errorf("%s: line %d: %s: %v", st.Source, n, k, err)
		}
		if contains(agentKeys, k) {
			agent.WriteString(line + "\n")
		} else if !isAgentKey(k) {
			warn(fmt.Sprintf("%s: line %d: unknown key %s (ignored)", st.Source, n, k))
		}
	}
	// The environment wins over the file.
	for _, k := range agentKeys {
		if v := getenv(ctlEnvPrefix + k); v != "" {
			agent.WriteString(k + "=" + v + "\n")
		}
	}
	for k := range ctlKeys {
		if v := getenv(ctlEnvPrefix + k); v != "" {
			if err := st.setCtl(k, v); err != nil {
				return nil, fmt.Errorf("%s%s: %v", ctlEnvPrefix, k, err)
			}
		}
	}
	cfg, probs, err := config.Parse(&agent)
	if err != nil {
		return nil, err
	}
	for _, p := range probs {
		if strings.Contains(p.Msg, "repeated") {
			continue // the environment overriding the file
		}
		return nil, fmt.Errorf("%s: %s: %s", orDefault(st.Source, "environment"), p.Key, p.Msg)
	}
	st.Agent = cfg
	return st, nil
}

var errNotCtlKey = errors.New("not a ctl key")

func (st *settings) setCtl(k, v string) error {
	switch k {
	case "OPERATOR_KEY":
		if v == "" {
			return fmt.Errorf("empty path")
		}
		st.OperatorKey = v
	case "CTL_TIMEOUT":
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%q is not a positive duration", v)
		}
		st.Timeout = d
	case "CTL_INBOX_PREFIX":
		var p []string
		if err := config.ParseSubjects(&p, v); err != nil || len(p) != 1 {
			return fmt.Errorf("%q is not one subject prefix like _INBOX_alice", v)
		}
		st.InboxPrefix = p[0]
	default:
		return errNotCtlKey
	}
	return nil
}

func isAgentKey(k string) bool {
	for _, d := range config.Keys() {
		if d.Key == k {
			return true
		}
	}
	return false
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
		return v[1 : len(v)-1]
	}
	return v
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// connect opens a NATS connection that fails fast (a CLI, not a daemon).
func (st *settings) connect(timeout time.Duration) (*nats.Conn, error) {
	c := st.Agent.NATS
	opts := []nats.Option{nats.Name("ocserv-telemetry-ctl"), nats.Timeout(timeout), nats.MaxReconnects(0)}
	if st.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(st.InboxPrefix))
	}
	switch {
	case c.Creds != "":
		opts = append(opts, nats.UserCredentials(c.Creds))
	case c.NKeySeed != "":
		o, err := nats.NkeyOptionFromSeed(c.NKeySeed)
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY_SEED: %w", err)
		}
		opts = append(opts, o)
	}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.Token != "" {
		opts = append(opts, nats.Token(c.Token))
	}
	if c.CAFile != "" {
		opts = append(opts, nats.RootCAs(c.CAFile))
	}
	if c.CertFile != "" && c.KeyFile != "" {
		opts = append(opts, nats.ClientCert(c.CertFile, c.KeyFile))
	}
	nc, err := nats.Connect(strings.Join(c.URLs, ","), opts...)
	if err != nil {
		// The URLs may carry credentials: printed redacted, and the
		// client's own text scrubbed of every secret.
		return nil, fmt.Errorf("connect to NATS %s: %w", c.RedactedURLs(), c.ScrubError(err))
	}
	return nc, nil
}

// operatorKey reads the operator's seed, refusing one others can read:
// whoever reads it signs commands as this operator (read-write keys run
// as root on every host), as the ledger refuses its own keys.
func (st *settings) operatorKey() (nkeys.KeyPair, error) {
	fi, err := os.Stat(st.OperatorKey)
	if err != nil {
		return nil, fmt.Errorf("operator key: %w (make one with ctl keygen, or set OPERATOR_KEY)", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("operator key %s is readable or writable by others (mode %v): whoever reads it signs as you; chmod 600 it (and, if others could read it, make a new key with ctl keygen)",
			st.OperatorKey, fi.Mode().Perm())
	}
	b, err := os.ReadFile(st.OperatorKey)
	if err != nil {
		return nil, fmt.Errorf("operator key: %w (make one with ctl keygen, or set OPERATOR_KEY)", err)
	}
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return nil, fmt.Errorf("operator key %s: %w", st.OperatorKey, err)
	}
	if pub, _ := kp.PublicKey(); !nkeys.IsValidPublicUserKey(pub) {
		return nil, fmt.Errorf("operator key %s is not a user nkey (seed SU…)", st.OperatorKey)
	}
	return kp, nil
}
