package console

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

// Config is the console's part of the ledger's configuration (keys
// LEDGER_CONSOLE_*, docs/configuration.md). The zero value is not usable:
// start from DefaultConfig.
type Config struct {
	Enabled bool
	// Listen is host:port. Without TLS it must be a loopback address
	// (a reverse proxy on the same host terminates TLS).
	Listen  string
	TLSCert string
	TLSKey  string
	// Users is the accounts file; Key the console's nkey seed file (its
	// public key is in each host's trusted keys, role read-write);
	// StateDir holds the sessions file and the console's audit spool.
	Users    string
	Key      string
	StateDir string
	// ServerID names the console in the audit events it writes
	// (<prefix>.events.<ServerID>.audit).
	ServerID string
	// InboxPrefix is where the answers to the console's commands come
	// back ("": the ledger connection's own inbox prefix). The hosts'
	// command services must be allowed to publish there, so in a fleet
	// it is kept apart from the ledger's own inbox (docs/nats.md).
	InboxPrefix string
	SessionTTL  time.Duration
	IdleTimeout time.Duration
	// TrustedProxies may set X-Forwarded-For (the client address used for
	// login rate limits and audits).
	TrustedProxies []netip.Prefix
	// Origins are extra origins (scheme://host[:port]) whose requests are
	// not cross-origin, for a proxy that rewrites the Host header.
	Origins []string
	// StaleAfter: a server with no status snapshot or event for this long
	// is listed as not seen recently.
	StaleAfter time.Duration
	// LoginBurst attempts per address and per account name, then one more
	// every LoginEvery.
	LoginBurst int
	LoginEvery time.Duration
}

// DefaultConfig is the configuration with every key unset.
func DefaultConfig() Config {
	return Config{
		Listen:      "127.0.0.1:8790",
		Users:       "/etc/ocserv-telemetry/console-users",
		Key:         "/etc/ocserv-telemetry/console.nk",
		StateDir:    "/var/lib/ocserv-telemetry-ledger/console",
		ServerID:    "console",
		SessionTTL:  12 * time.Hour,
		IdleTimeout: time.Hour,
		StaleAfter:  2 * time.Minute,
		LoginBurst:  5,
		LoginEvery:  20 * time.Second,
	}
}

type key struct {
	doc string
	set func(c *Config, v string) error
}

// keys is the one list of the console's configuration keys; ParseKeys,
// Keys and docs/configuration.md follow it.
var keys = map[string]key{
	"LEDGER_CONSOLE": {"serve the web console: on|off (default off)",
		func(c *Config, v string) error {
			switch v {
			case "on":
				c.Enabled = true
			case "off":
				c.Enabled = false
			default:
				return fmt.Errorf("%q is not on or off", v)
			}
			return nil
		}},
	"LEDGER_CONSOLE_LISTEN": {"host:port of the console (default 127.0.0.1:8790); without TLS, a loopback address only",
		func(c *Config, v string) error {
			host, port, err := net.SplitHostPort(v)
			if err != nil {
				return fmt.Errorf("%q is not host:port", v)
			}
			if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
				return fmt.Errorf("port %q is not a port number", port)
			}
			_ = host
			c.Listen = v
			return nil
		}},
	"LEDGER_CONSOLE_TLS_CERT": {"PEM certificate chain for HTTPS (with LEDGER_CONSOLE_TLS_KEY); unset: plain HTTP on loopback, behind a TLS proxy",
		func(c *Config, v string) error { return absPath(&c.TLSCert, v) }},
	"LEDGER_CONSOLE_TLS_KEY": {"PEM private key of LEDGER_CONSOLE_TLS_CERT",
		func(c *Config, v string) error { return absPath(&c.TLSKey, v) }},
	"LEDGER_CONSOLE_USERS": {"accounts file (default /etc/ocserv-telemetry/console-users; ledger console-user manages it)",
		func(c *Config, v string) error { return absPath(&c.Users, v) }},
	"LEDGER_CONSOLE_KEY": {"the console's nkey seed file, which signs its commands to the hosts and its policy changes to the ledger (default /etc/ocserv-telemetry/console.nk)",
		func(c *Config, v string) error { return absPath(&c.Key, v) }},
	"LEDGER_CONSOLE_STATE_DIR": {"sessions file and audit spool (default /var/lib/ocserv-telemetry-ledger/console)",
		func(c *Config, v string) error { return absPath(&c.StateDir, v) }},
	"LEDGER_CONSOLE_SERVER_ID": {"the console's server_id in its audit events (default console)",
		func(c *Config, v string) error {
			if !events.IsToken(v, 128) {
				return fmt.Errorf("%q is not a NATS subject token", v)
			}
			c.ServerID = v
			return nil
		}},
	"LEDGER_CONSOLE_INBOX_PREFIX": {"subject prefix the answers to the ledger's commands to hosts (the console's, and the policy engine's kicks and disconnects) and to the console's policy changes come back under (default: the ledger's NATS_INBOX_PREFIX); the hosts' command services publish there, so keep it apart from the ledger's own inbox, e.g. _OPS.console with CMD_INBOX_PREFIX=_OPS and LEDGER_INBOX_PREFIXES=_OPS (docs/nats.md)",
		func(c *Config, v string) error {
			var p []string
			if err := config.ParseSubjects(&p, v); err != nil || len(p) != 1 {
				return fmt.Errorf("%q is not one subject prefix like _OPS.console", v)
			}
			c.InboxPrefix = p[0]
			return nil
		}},
	"LEDGER_CONSOLE_SESSION_TTL": {"a login's lifetime (default 12h)",
		func(c *Config, v string) error { return duration(&c.SessionTTL, v, time.Minute, 30*24*time.Hour) }},
	"LEDGER_CONSOLE_IDLE_TIMEOUT": {"logout after this long without a request (default 1h)",
		func(c *Config, v string) error { return duration(&c.IdleTimeout, v, time.Minute, 30*24*time.Hour) }},
	"LEDGER_CONSOLE_TRUSTED_PROXIES": {"comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For is believed (default none)",
		func(c *Config, v string) error {
			c.TrustedProxies = nil
			for _, f := range splitList(v) {
				p, err := netip.ParsePrefix(f)
				if err != nil {
					a, aerr := netip.ParseAddr(f)
					if aerr != nil {
						return fmt.Errorf("%q is not an address or CIDR", f)
					}
					p = netip.PrefixFrom(a, a.BitLen())
				}
				c.TrustedProxies = append(c.TrustedProxies, p.Masked())
			}
			return nil
		}},
	"LEDGER_CONSOLE_ORIGINS": {"comma-separated extra origins (https://console.example.com) accepted for form posts, for a proxy that rewrites Host",
		func(c *Config, v string) error {
			c.Origins = nil
			for _, f := range splitList(v) {
				u, err := url.Parse(f)
				if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
					return fmt.Errorf("%q is not an origin like https://console.example.com", f)
				}
				c.Origins = append(c.Origins, f)
			}
			return nil
		}},
	"LEDGER_CONSOLE_STALE_AFTER": {"a server silent this long is listed as not seen recently (default 2m)",
		func(c *Config, v string) error { return duration(&c.StaleAfter, v, 10*time.Second, 24*time.Hour) }},
	"LEDGER_CONSOLE_LOGIN_BURST": {"login attempts per address and per account before the rate applies (default 5)",
		func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return fmt.Errorf("%q is not a number from 1 to 1000", v)
			}
			c.LoginBurst = n
			return nil
		}},
	"LEDGER_CONSOLE_LOGIN_EVERY": {"one more login attempt is allowed this often once the burst is spent (default 20s)",
		func(c *Config, v string) error { return duration(&c.LoginEvery, v, 100*time.Millisecond, time.Hour) }},
}

// IsKey reports whether k is one of the console's keys.
func IsKey(k string) bool { _, ok := keys[k]; return ok }

// SetKey applies one KEY=VALUE; the error names what is wrong with the
// value (the caller adds the key's name and line).
func (c *Config) SetKey(k, v string) error {
	f, ok := keys[k]
	if !ok {
		return fmt.Errorf("unknown key")
	}
	return f.set(c, v)
}

// KeyDoc is one key and what it means.
type KeyDoc struct{ Key, Doc string }

// Keys lists the console's keys, sorted.
func Keys() []KeyDoc {
	out := make([]KeyDoc, 0, len(keys))
	for k, f := range keys {
		out = append(out, KeyDoc{k, f.doc})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Validate checks the combination of keys; a console that is off needs
// nothing.
func (c *Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("LEDGER_CONSOLE_TLS_CERT and LEDGER_CONSOLE_TLS_KEY go together")
	}
	if c.TLSCert == "" {
		host, _, _ := net.SplitHostPort(c.Listen)
		if !loopback(host) {
			return fmt.Errorf("LEDGER_CONSOLE_LISTEN %s is not a loopback address and no TLS certificate is set: passwords and cookies would cross the network in clear; set LEDGER_CONSOLE_TLS_CERT/_KEY or listen on 127.0.0.1 behind a TLS reverse proxy", c.Listen)
		}
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func absPath(dst *string, v string) error {
	if !filepath.IsAbs(v) {
		return fmt.Errorf("%q is not an absolute path", v)
	}
	*dst = filepath.Clean(v)
	return nil
}

func duration(dst *time.Duration, v string, min, max time.Duration) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < min || d > max {
		return fmt.Errorf("%q is not a duration from %s to %s", v, min, max)
	}
	*dst = d
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
