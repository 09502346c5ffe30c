package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

type field struct {
	doc string
	set func(c *Config, v string) error
}

// fields is the one list of keys; Parse, Keys and docs/configuration.md
// follow it. Every key is namespaced so it cannot collide with ocserv's
// script variables.
var fields = map[string]field{
	"SERVER_ID": {"this host's name in subjects; a NATS subject token (default: host name with separators replaced)",
		func(c *Config, v string) error { return setToken(&c.ServerID, v) }},
	"SPOOL_DIR": {"spool directory (default /var/spool/ocserv-telemetry)",
		func(c *Config, v string) error { return setAbsPath(&c.SpoolDir, v) }},
	"SPOOL_FSYNC": {"fsync each event before the hook exits: on|off (default on)",
		func(c *Config, v string) error { return setBool(&c.Fsync, v) }},
	"SPOOL_MAX_BYTES": {"spool size cap; oldest chunks are dropped past it, with an overflow event (default 1073741824)",
		func(c *Config, v string) error { return setSize(&c.SpoolMaxBytes, v, 1<<20) }},
	"SPOOL_ROTATE_BYTES": {"size at which the shipper rotates the active file into a chunk (default 4194304)",
		func(c *Config, v string) error { return setSize(&c.RotateBytes, v, 4096) }},
	"SUBJECT_PREFIX": {"first tokens of every subject (default ocserv)",
		func(c *Config, v string) error { return setSubject(&c.SubjectPrefix, v) }},
	"FIREWALL": {"off: ocserv-fw or nobody applies rules; on: the hook applies each restricted user's policy (default off)",
		func(c *Config, v string) error { return setEnum(&c.Firewall, v, FirewallOff, FirewallOn) }},
	"FIREWALL_BACKEND": {"auto|nftables|iptables (default auto: nftables where the kernel has it)",
		func(c *Config, v string) error { return setEnum(&c.FirewallBackend, v, "auto", "nftables", "iptables") }},
	"HOOK_BUDGET": {"hard time limit of one hook run, after which it exits 0 (default 500ms)",
		func(c *Config, v string) error {
			return setDuration(&c.HookBudget, v, 50*time.Millisecond, 10*time.Second)
		}},
	"HOOK_LOCK_BUDGET": {"longest wait for the spool lock before the lock-free fallback (default 250ms)",
		func(c *Config, v string) error {
			return setDuration(&c.LockBudget, v, time.Millisecond, 10*time.Second)
		}},
	"HOOK_FIREWALL_BUDGET": {"longest time the firewall may take in the hook (default 200ms)",
		func(c *Config, v string) error {
			return setDuration(&c.FirewallBudget, v, 10*time.Millisecond, 10*time.Second)
		}},
	"NATS_URL": {"NATS server URL, or several separated by commas (default nats://127.0.0.1:4222)",
		func(c *Config, v string) error { return setURLs(&c.NATS.URLs, v) }},
	"NATS_CREDS": {"path of a NATS credentials file",
		func(c *Config, v string) error { return setAbsPath(&c.NATS.Creds, v) }},
	"NATS_NKEY_SEED": {"path of a file holding an nkey seed",
		func(c *Config, v string) error { return setAbsPath(&c.NATS.NKeySeed, v) }},
	"NATS_USER": {"NATS user name",
		func(c *Config, v string) error { c.NATS.User = v; return nil }},
	"NATS_PASSWORD": {"NATS password (keep this file root-only)",
		func(c *Config, v string) error { c.NATS.Password = v; return nil }},
	"NATS_TOKEN": {"NATS token (keep this file root-only)",
		func(c *Config, v string) error { c.NATS.Token = v; return nil }},
	"NATS_CA": {"path of the CA certificate for TLS",
		func(c *Config, v string) error { return setAbsPath(&c.NATS.CAFile, v) }},
	"NATS_CERT": {"path of the client certificate for TLS",
		func(c *Config, v string) error { return setAbsPath(&c.NATS.CertFile, v) }},
	"NATS_KEY": {"path of the client key for TLS",
		func(c *Config, v string) error { return setAbsPath(&c.NATS.KeyFile, v) }},
	"NATS_DOMAIN": {"JetStream domain, for leaf-node setups",
		func(c *Config, v string) error {
			if v == "" {
				c.NATS.Domain = ""
				return nil
			}
			return setToken(&c.NATS.Domain, v)
		}},
	"NATS_INBOX_PREFIX": {"subject prefix of this service's own reply inboxes (JetStream acknowledgements and API answers; default _INBOX, nats.go's); give each host and the ledger its own, with subscribe rights on it alone, so none reads another's answers (docs/nats.md)",
		func(c *Config, v string) error { return setSubject(&c.NATS.InboxPrefix, v) }},
	"NATS_CREATE_STREAMS": {"create the stream and bucket when missing: on|off (default on)",
		func(c *Config, v string) error { return setBool(&c.NATS.CreateStreams, v) }},
	"NATS_EVENTS_STREAM": {"name of the events stream (default OCSERV_EVENTS)",
		func(c *Config, v string) error { return setToken(&c.NATS.StreamName, v) }},
	"NATS_DUPLICATE_WINDOW": {"duplicate window of a stream the shipper creates (default 2h)",
		func(c *Config, v string) error { return setDuration(&c.NATS.DupWindow, v, time.Second, 7*24*time.Hour) }},
	"SHIPPER_MAX_IN_FLIGHT": {"unacknowledged publishes at once (default 1024)",
		func(c *Config, v string) error { return setInt(&c.MaxInFlight, v, 1, 65536) }},
	"SHIPPER_STATUS_INTERVAL": {"how often the status file is rewritten (default 5s)",
		func(c *Config, v string) error {
			return setDuration(&c.StatusInterval, v, 100*time.Millisecond, time.Hour)
		}},
	"CMD_TRUSTED_KEYS": {"command service: file of trusted operator public keys with a role each (default /etc/ocserv-telemetry/operators.keys)",
		func(c *Config, v string) error { return setAbsPath(&c.Cmd.TrustedKeys, v) }},
	"CMD_XKEY_SEED": {"command service: this server's curve key seed file, made at first start; operators seal passwords to it (default /var/lib/ocserv-telemetry/commander.xkey, in the state directory the command service may write)",
		func(c *Config, v string) error { return setAbsPath(&c.Cmd.XKeySeed, v) }},
	"CMD_NONCE_FILE": {"command service: the nonce cache that refuses replays across restarts (default /var/lib/ocserv-telemetry/nonces)",
		func(c *Config, v string) error { return setAbsPath(&c.Cmd.NonceFile, v) }},
	"CMD_MAX_CLOCK_SKEW": {"command service: clock difference tolerated between operator and server (default 30s)",
		func(c *Config, v string) error { return setDuration(&c.Cmd.MaxSkew, v, 0, 10*time.Minute) }},
	"CMD_MAX_VALIDITY": {"command service: longest validity (expiry minus issue time) of a command (default 5m)",
		func(c *Config, v string) error { return setDuration(&c.Cmd.MaxValidity, v, time.Second, time.Hour) }},
	"CMD_REFUSAL_AUDITS_PER_MINUTE": {"command service: audit events for refused commands per minute; the rest are counted in the next one (default 60)",
		func(c *Config, v string) error { return setInt(&c.Cmd.RefusalAuditsPerMinute, v, 1, 100000) }},
	"CMD_KEY_RATE": {"command service: commands per second one operator key may send, each key its own bucket; more are refused rate_limited (default 10)",
		func(c *Config, v string) error { return setFloat(&c.Cmd.KeyRate, v, 0.001, 10000) }},
	"CMD_KEY_BURST": {"command service: commands one operator key may send at once above its rate (default 20)",
		func(c *Config, v string) error { return setInt(&c.Cmd.KeyBurst, v, 1, 100000) }},
	"CMD_KEY_QUOTA": {"command service: commands of one operator key the nonce cache holds within their validity; more are refused over_quota (default 1000)",
		func(c *Config, v string) error { return setInt(&c.Cmd.KeyQuota, v, 1, 1000000) }},
	"CMD_INBOX_PREFIX": {"command service: subject prefixes replies may go to, comma-separated; a request naming another reply subject is dropped and audited (default _INBOX, as nats.go and ctl use)",
		func(c *Config, v string) error { return setSubjects(&c.Cmd.InboxPrefixes, v) }},
	"CMD_NATS_CREDS": {"command service: its own NATS credentials file; any of CMD_NATS_CREDS, _NKEY_SEED, _USER, _PASSWORD and _TOKEN replaces all of NATS_CREDS, NATS_NKEY_SEED, NATS_USER, NATS_PASSWORD and NATS_TOKEN for the command service, so it can have its own NATS user with the narrow permissions of docs/commands.md",
		func(c *Config, v string) error { return setOptAbsPath(&c.Cmd.NATS.Creds, v) }},
	"CMD_NATS_NKEY_SEED": {"command service: path of its own nkey seed file (see CMD_NATS_CREDS)",
		func(c *Config, v string) error { return setOptAbsPath(&c.Cmd.NATS.NKeySeed, v) }},
	"CMD_NATS_INBOX_PREFIX": {"command service: subject prefix of its own reply inboxes (with POLICY=on, the verdicts bucket's watcher: API answers and deliveries; default NATS_INBOX_PREFIX); give it its own, e.g. _INBOX_vpn1_cmd, with subscribe rights on it alone (docs/nats.md)",
		func(c *Config, v string) error { return setSubject(&c.Cmd.NATS.InboxPrefix, v) }},
	"CMD_NATS_USER": {"command service: its own NATS user name (see CMD_NATS_CREDS)",
		func(c *Config, v string) error { c.Cmd.NATS.User = v; return nil }},
	"CMD_NATS_PASSWORD": {"command service: its own NATS password (see CMD_NATS_CREDS; keep this file root-only)",
		func(c *Config, v string) error { c.Cmd.NATS.Password = v; return nil }},
	"CMD_NATS_TOKEN": {"command service: its own NATS token (see CMD_NATS_CREDS; keep this file root-only)",
		func(c *Config, v string) error { c.Cmd.NATS.Token = v; return nil }},
	"CMD_OCCTL": {"command service: occtl binary (default occtl from PATH)",
		func(c *Config, v string) error { return setAbsPath(&c.Cmd.Occtl, v) }},
	"CMD_OCCTL_SOCKET": {"command service: occtl's socket (-s); empty means occtl's compiled-in default",
		func(c *Config, v string) error {
			if v == "" {
				c.Cmd.OcctlSocket = ""
				return nil
			}
			return setAbsPath(&c.Cmd.OcctlSocket, v)
		}},
	"CMD_OCSERV": {"command service: ocserv binary, for its version when occtl does not tell (default ocserv from PATH)",
		func(c *Config, v string) error { return setAbsPath(&c.Cmd.Ocserv, v) }},
	"CMD_OCPASSWD_FILE": {"command service: ocserv's plain password file; user actions are offered only when set (e.g. /etc/ocserv/ocpasswd)",
		func(c *Config, v string) error { return setOptAbsPath(&c.Cmd.OcpasswdFile, v) }},
	"CMD_OCPASSWD": {"command service: ocpasswd binary (default ocpasswd from PATH)",
		func(c *Config, v string) error { return setAbsPath(&c.Cmd.Ocpasswd, v) }},
	"CMD_CONFIG_PER_USER": {"command service: ocserv's config-per-user directory; config actions for users are offered only when set",
		func(c *Config, v string) error { return setOptAbsPath(&c.Cmd.ConfigPerUser, v) }},
	"CMD_CONFIG_PER_GROUP": {"command service: ocserv's config-per-group directory; config actions for groups are offered only when set",
		func(c *Config, v string) error { return setOptAbsPath(&c.Cmd.ConfigPerGroup, v) }},
	"CMD_CONFIG_BACKUP_DIR": {"command service: where per-user/per-group files are backed up before a change (default: beside each directory, <dir>.backup)",
		func(c *Config, v string) error { return setOptAbsPath(&c.Cmd.ConfigBackupDir, v) }},
	"SNAPSHOT_INTERVAL": {"how often occtl snapshots are published (default 30s)",
		func(c *Config, v string) error { return setDuration(&c.SnapshotInterval, v, time.Second, 24*time.Hour) }},
	"LIVESTATE": {"shipper: poll occtl for snapshots, interim accounting and reconciliation: on|off (default on); uses CMD_OCCTL, CMD_OCCTL_SOCKET and CMD_OCSERV",
		func(c *Config, v string) error { return setBool(&c.Live.Enabled, v) }},
	"ACCOUNTING_INTERVAL": {"shipper: interval of the interim accounting event of each active session (default 5m)",
		func(c *Config, v string) error {
			return setDuration(&c.Live.AccountingInterval, v, time.Second, 7*24*time.Hour)
		}},
	"SNAPSHOT_HISTORY": {"shipper: snapshots kept per subject (MaxMsgsPerSubject) by a snapshots stream the shipper creates (default 100)",
		func(c *Config, v string) error { return setInt(&c.Live.SnapshotHistory, v, 1, 1000000) }},
	"NATS_SNAPSHOTS_STREAM": {"name of the snapshots stream (default OCSERV_SNAPSHOTS)",
		func(c *Config, v string) error { return setToken(&c.Live.SnapshotsStream, v) }},
	"NATS_STATE_BUCKET": {"name of the key-value bucket with each server's latest state and server_id claim (default ocserv_state)",
		func(c *Config, v string) error { return setToken(&c.Live.StateBucket, v) }},
	"METRICS_LISTEN": {"shipper: host:port of the Prometheus /metrics endpoint; empty (the default) means off",
		func(c *Config, v string) error { return setListen(&c.Live.MetricsListen, v) }},
	"METRICS_PER_USER": {"shipper: per-user series (label user) on the metrics endpoint: on|off (default off)",
		func(c *Config, v string) error { return setBool(&c.Live.MetricsPerUser, v) }},
}

// Live holds the shipper's live-state settings (package livestate).
type Live struct {
	Enabled            bool
	AccountingInterval time.Duration
	SnapshotHistory    int
	SnapshotsStream    string
	StateBucket        string
	MetricsListen      string // "": no metrics endpoint
	MetricsPerUser     bool
}

func defaultLive() Live {
	return Live{
		Enabled:            true,
		AccountingInterval: 5 * time.Minute,
		SnapshotHistory:    100,
		SnapshotsStream:    "OCSERV_SNAPSHOTS",
		StateBucket:        "ocserv_state",
	}
}

// setListen accepts "" (off) or host:port with a numeric port.
func setListen(dst *string, v string) error {
	if v == "" {
		*dst = ""
		return nil
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %v", v, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number 0-65535", v, port)
	}
	*dst = v
	return nil
}

// Cmd holds the command service's settings (cmd/commander).
type Cmd struct {
	TrustedKeys            string
	XKeySeed               string
	NonceFile              string
	MaxSkew                time.Duration
	MaxValidity            time.Duration
	RefusalAuditsPerMinute int
	KeyRate                float64 // commands per second per operator key
	KeyBurst               int
	KeyQuota               int // live nonces per operator key
	InboxPrefixes          []string
	// NATS holds the command service's own credentials (CMD_NATS_*) and
	// inbox prefix; only those fields are used. See CommanderNATS.
	NATS            NATS
	Occtl           string // "" means "occtl" from PATH
	OcctlSocket     string
	Ocserv          string // "" means "ocserv" from PATH
	OcpasswdFile    string // "": user actions not offered
	Ocpasswd        string // "" means "ocpasswd" from PATH
	ConfigPerUser   string // "": not managed
	ConfigPerGroup  string // "": not managed
	ConfigBackupDir string
}

// CommanderNATS is the command service's connection: the agent's servers,
// TLS and JetStream settings, with the command service's own credentials
// when any CMD_NATS_* credential key is set (then none of the agent's
// credentials is used, so the two identities never mix), and its own inbox
// prefix when CMD_NATS_INBOX_PREFIX is set: with POLICY=on it watches the
// verdicts bucket, and its JetStream answers need not pass through the
// shipper's inbox.
func (c Config) CommanderNATS() NATS {
	n := c.NATS
	o := c.Cmd.NATS
	if o.Creds != "" || o.NKeySeed != "" || o.User != "" || o.Password != "" || o.Token != "" {
		n.Creds, n.NKeySeed, n.User, n.Password, n.Token = o.Creds, o.NKeySeed, o.User, o.Password, o.Token
	}
	if o.InboxPrefix != "" {
		n.InboxPrefix = o.InboxPrefix
	}
	return n
}

func setOptAbsPath(dst *string, v string) error {
	if v == "" {
		*dst = ""
		return nil
	}
	return setAbsPath(dst, v)
}

// ValidToken reports whether s can be one NATS subject token. It is
// stricter than NATS (letters, digits, '-' and '_' only) so a token is also
// safe in file names, logs and shells.
func ValidToken(s string) error {
	if s == "" {
		return fmt.Errorf("empty")
	}
	if len(s) > 128 {
		return fmt.Errorf("longer than 128 characters")
	}
	if !events.IsToken(s, 128) {
		return fmt.Errorf("%q is not a valid subject token (use letters, digits, '-' and '_')", s)
	}
	return nil
}

// SanitizeToken turns a host name into a subject token: every character
// that is not a letter, digit, '-' or '_' becomes '_' ("vpn1.example.com"
// → "vpn1_example_com").
func SanitizeToken(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	out := b.String()
	if len(out) > 128 {
		out = out[:128]
	}
	if out == "" {
		return "unnamed"
	}
	return out
}

// DefaultServerID derives SERVER_ID from the host name.
func DefaultServerID() string {
	h, err := os.Hostname()
	if err != nil {
		return "unnamed"
	}
	return SanitizeToken(h)
}

func setToken(dst *string, v string) error {
	if err := ValidToken(v); err != nil {
		return err
	}
	*dst = v
	return nil
}

func setSubject(dst *string, v string) error {
	for _, t := range strings.Split(v, ".") {
		if err := ValidToken(t); err != nil {
			return fmt.Errorf("%q is not a valid subject prefix: %v", v, err)
		}
	}
	*dst = v
	return nil
}

// ParseSubjects accepts a comma-separated list of subjects of valid
// tokens (no wildcards), as CMD_INBOX_PREFIX takes.
func ParseSubjects(dst *[]string, v string) error { return setSubjects(dst, v) }

func setSubjects(dst *[]string, v string) error {
	var out []string
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		var one string
		if err := setSubject(&one, p); err != nil {
			return err
		}
		out = append(out, one)
	}
	*dst = out
	return nil
}

func setAbsPath(dst *string, v string) error {
	if v == "" || !filepath.IsAbs(v) {
		return fmt.Errorf("%q is not an absolute path", v)
	}
	*dst = filepath.Clean(v)
	return nil
}

func setBool(dst *bool, v string) error {
	switch strings.ToLower(v) {
	case "on", "true", "yes", "1":
		*dst = true
	case "off", "false", "no", "0":
		*dst = false
	default:
		return fmt.Errorf("%q is not on or off", v)
	}
	return nil
}

func setEnum(dst *string, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			*dst = v
			return nil
		}
	}
	return fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
}

func setDuration(dst *time.Duration, v string, min, max time.Duration) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is not a duration (like 500ms or 2s)", v)
	}
	if d < min || d > max {
		return fmt.Errorf("%s is outside %s..%s", d, min, max)
	}
	*dst = d
	return nil
}

func setFloat(dst *float64, v string, min, max float64) error {
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || !(n >= min && n <= max) {
		return fmt.Errorf("%q is not a number in %g..%g", v, min, max)
	}
	*dst = n
	return nil
}

func setInt(dst *int, v string, min, max int) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		return fmt.Errorf("%q is not a whole number in %d..%d", v, min, max)
	}
	*dst = n
	return nil
}

func setSize(dst *int64, v string, min int64) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < min {
		return fmt.Errorf("%q is not a size in bytes of at least %d", v, min)
	}
	*dst = n
	return nil
}

func setURLs(dst *[]string, v string) error {
	var out []string
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		// Errors quote the URL redacted: it may carry a password.
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return fmt.Errorf("%q is not a URL like nats://host:4222", RedactURL(s))
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("%q: scheme must be nats, tls, ws or wss", RedactURL(s))
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return fmt.Errorf("no URL given")
	}
	*dst = out
	return nil
}
