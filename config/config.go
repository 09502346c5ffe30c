// Package config owns the agent's configuration file: KEY=VALUE lines that
// the hook and the shipper read and that systemd's EnvironmentFile= also
// accepts. Loading happens in three steps, defaults, parse, validate, and
// every problem names the key (and line) it is about.
//
// Keys never collide with the variables ocserv passes to its scripts
// (USERNAME, ID, DEVICE, …): the hook runs inside that environment.
package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"syscall"
	"time"
)

// DefaultPath is where install.sh puts the file.
const DefaultPath = "/etc/ocserv-telemetry/agent.env"

// PathEnv names another file, for the hook and the shipper alike.
const PathEnv = "OCSERV_TELEMETRY_CONFIG"

// Firewall modes.
const (
	FirewallOff = "off" // ocserv-fw (or nobody) handles rules
	FirewallOn  = "on"  // the hook is ocserv's fw script and applies rules
)

// Config is the agent's configuration. Zero values are never used: Default
// fills every field.
type Config struct {
	ServerID      string
	SpoolDir      string
	SubjectPrefix string
	Firewall      string
	// FirewallBackend is "auto", "nftables" or "iptables".
	FirewallBackend string
	Fsync           bool

	// The hook's time budgets: the whole run, the wait for the spool lock,
	// and the firewall. When the whole budget is spent the hook exits 0.
	HookBudget     time.Duration
	LockBudget     time.Duration
	FirewallBudget time.Duration

	NATS NATS

	// Shipper settings.
	SpoolMaxBytes    int64
	RotateBytes      int64
	MaxInFlight      int
	StatusInterval   time.Duration
	SnapshotInterval time.Duration

	// Live is the shipper's live-state settings (see keys.go).
	Live Live

	// Cmd is the command service's (see keys.go).
	Cmd Cmd

	// Policy is fleet policy's (see policy.go).
	Policy Policy
}

// NATS holds connection settings. Secrets are referenced by path, so the
// values in the file are paths, never the secrets themselves, except for
// NATS_PASSWORD and NATS_TOKEN which NATS has no file form for.
type NATS struct {
	URLs     []string
	Creds    string
	NKeySeed string
	User     string
	Password string
	Token    string
	CAFile   string
	CertFile string
	KeyFile  string
	Domain   string
	// InboxPrefix replaces nats.go's _INBOX for this connection's reply
	// subjects ("": _INBOX).
	InboxPrefix   string
	CreateStreams bool
	StreamName    string
	DupWindow     time.Duration
}

// Problem is one thing wrong with the file; the field it is about keeps its
// default.
type Problem struct {
	Line int
	Key  string
	Msg  string
}

func (p Problem) Error() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", p.Line, p.Key, p.Msg)
	}
	return fmt.Sprintf("%s: %s", p.Key, p.Msg)
}

// DefaultHookBudget is HOOK_BUDGET's default: the hook's whole run, until
// its configuration says otherwise.
const DefaultHookBudget = 500 * time.Millisecond

// Default returns the configuration used when the file says nothing.
func Default() Config {
	c := defaults()
	c.ServerID = DefaultServerID()
	return c
}

// defaults is Default without SERVER_ID, whose default costs a system call
// (the host name) that a file setting SERVER_ID makes useless.
func defaults() Config {
	return Config{
		SpoolDir:        "/var/spool/ocserv-telemetry",
		SubjectPrefix:   "ocserv",
		Firewall:        FirewallOff,
		FirewallBackend: "auto",
		Fsync:           true,
		HookBudget:      DefaultHookBudget,
		LockBudget:      250 * time.Millisecond,
		FirewallBudget:  200 * time.Millisecond,
		NATS: NATS{
			URLs:          []string{"nats://127.0.0.1:4222"},
			CreateStreams: true,
			StreamName:    "OCSERV_EVENTS",
			DupWindow:     2 * time.Hour,
		},
		SpoolMaxBytes:    1 << 30,
		RotateBytes:      4 << 20,
		MaxInFlight:      1024,
		StatusInterval:   5 * time.Second,
		SnapshotInterval: 30 * time.Second,
		Live:             defaultLive(),
		Policy:           defaultPolicy(),
		Cmd: Cmd{
			TrustedKeys:            "/etc/ocserv-telemetry/operators.keys",
			XKeySeed:               "/var/lib/ocserv-telemetry/commander.xkey",
			NonceFile:              "/var/lib/ocserv-telemetry/nonces",
			MaxSkew:                30 * time.Second,
			MaxValidity:            5 * time.Minute,
			RefusalAuditsPerMinute: 60,
			KeyRate:                10,
			KeyBurst:               20,
			KeyQuota:               1000,
			InboxPrefixes:          []string{"_INBOX"},
		},
	}
}

// Path returns the file to read: the flag if given, else $OCSERV_TELEMETRY_CONFIG,
// else DefaultPath.
func Path(flag string, getenv func(string) string) string {
	if flag != "" {
		return flag
	}
	if p := getenv(PathEnv); p != "" {
		return p
	}
	return DefaultPath
}

// Load reads the file at path over the defaults. A missing file is not an
// error for the caller to stop on: it returns the defaults and a Problem
// saying so. The error is only for a file that exists but cannot be read.
func Load(path string) (Config, []Problem, error) {
	b, err := readSmall(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Default(), []Problem{{Key: path, Msg: "no such file; using defaults"}}, nil
	}
	if err != nil {
		return Default(), nil, fmt.Errorf("read config %s: %w", path, err)
	}
	c, probs, err := Parse(bytes.NewReader(b))
	if err != nil {
		return c, probs, fmt.Errorf("read config %s: %w", path, err)
	}
	return c, probs, nil
}

// Parse reads KEY=VALUE lines over the defaults. Blank lines and lines
// starting with '#' are skipped; a value may be wrapped in single or double
// quotes as systemd allows. Unknown keys, repeated keys and bad values are
// returned as problems; a bad value leaves the default in place.
func Parse(r io.Reader) (Config, []Problem, error) {
	c := defaults()
	var probs []Problem
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	// No initial buffer: the scanner starts small and grows to the longest
	// line. (A preallocated 64 KiB cost the hook, which reads this file on
	// every login, the page faults of zeroing it.)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			// Never the whole line: it may hold a secret missing its '='
			// (NATS_URL nats://user:password@host).
			probs = append(probs, Problem{Line: n, Key: keyLike(line), Msg: "not a KEY=VALUE line"})
			continue
		}
		val = unquote(strings.TrimSpace(val))
		f, known := fields[key]
		if !known {
			probs = append(probs, Problem{Line: n, Key: keyLike(key), Msg: "unknown key (known: " + knownKeys() + ")"})
			continue
		}
		if prev, dup := seen[key]; dup {
			probs = append(probs, Problem{Line: n, Key: key, Msg: fmt.Sprintf("repeated (first on line %d); the last one wins", prev)})
		}
		seen[key] = n
		if err := f.set(&c, val); err != nil {
			probs = append(probs, Problem{Line: n, Key: key, Msg: err.Error()})
		}
	}
	if c.ServerID == "" { // not set, or not valid: the default stands
		c.ServerID = DefaultServerID()
	}
	if err := sc.Err(); err != nil {
		return c, probs, err
	}
	return c, probs, nil
}

// keyLike is the first word of a line when it looks like a key (letters,
// digits, '_'), else "(no key)": a problem never quotes more of a line
// than a key name, since the line may hold a secret.
func keyLike(line string) string {
	f := strings.Fields(line)
	if len(f) == 0 || len(f[0]) > 64 {
		return "(no key)"
	}
	for _, r := range f[0] {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return "(no key)"
		}
	}
	return f[0]
}

// maxFile bounds what Load reads; a config file is a few hundred bytes.
const maxFile = 1 << 20

// readSmall reads a regular file with plain syscalls. os.Open would set up
// Go's netpoller on first use, start-up cost the hook (which reads this
// file on every login) does not need; and a FIFO or device put in the
// config's place must not block the hook, so non-regular files are refused.
func readSmall(path string) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, errors.New("not a regular file")
	}
	if st.Size > maxFile {
		return nil, fmt.Errorf("larger than %d bytes", maxFile)
	}
	buf := make([]byte, 0, st.Size+1)
	for {
		n, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
		if len(buf) == cap(buf) {
			if len(buf) > maxFile {
				return nil, fmt.Errorf("larger than %d bytes", maxFile)
			}
			buf = append(buf, 0)[:len(buf)]
		}
	}
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

func knownKeys() string {
	ks := make([]string, 0, len(fields))
	for k := range fields {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

// Keys lists the known keys with their documentation, sorted.
func Keys() []KeyDoc {
	out := make([]KeyDoc, 0, len(fields))
	for k, f := range fields {
		out = append(out, KeyDoc{Key: k, Doc: f.doc})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// KeyDoc documents one key.
type KeyDoc struct{ Key, Doc string }
