package opauth

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/gofrs/flock"
)

// Errors of NonceCache.Use.
var (
	ErrReplayed = errors.New("nonce already used")
	// ErrKeyQuota: the key already holds its quota of live nonces.
	ErrKeyQuota = errors.New("the key holds its quota of live commands")
	// ErrRoleQuota: the keys of the role together hold their pool's
	// quota; the other role's pool is untouched.
	ErrRoleQuota = errors.New("the keys of this role hold their pool's quota of live commands")
)

// Default limits of a NonceCache.
const (
	DefaultKeyQuota  = 1000
	DefaultRoleQuota = 100000
)

// NonceLimits bound the cache. The bounds are per key and per role, never
// one shared count: a read-only key that fills its own quota (or every
// read-only key together, their pool) cannot make a read-write key's
// command wait, which a single global bound allowed.
type NonceLimits struct {
	PerKey  int // live nonces one key may hold (default DefaultKeyQuota)
	PerRole int // live nonces all keys of one role may hold (default DefaultRoleQuota)
}

// NonceCache remembers every (key, nonce) accepted until the command's
// expiry (plus skew) has passed, in memory and in an append-only file, so
// a restart of the service cannot accept a command twice.
//
// File: one line per accepted command, "<until unix ms> <key> <nonce>
// <role>\n", fsynced before Use returns (before the command runs). Crash
// states: a torn last line is skipped at open; expired lines are dropped
// when the file is compacted (at open, and when dead lines outnumber live
// ones), written to a temporary file, synced and renamed. Lines without a
// role (written before roles were recorded) count as read-write: they
// expire within the longest validity anyway.
//
// Bounded: when a key or its role's pool is at its limit of live entries,
// a new command is refused rather than an unexpired entry forgotten, which
// would let its command be replayed. Memory is at most PerRole entries per
// role. Entries expire after at most the longest validity allowed.
//
// One process owns the file: OpenNonceCache takes an exclusive lock on
// "<path>.lock" (gofrs/flock) and fails if another process holds it, since
// two services sharing one cache would each accept the same command once.
type NonceCache struct {
	path string
	lim  NonceLimits
	lock *flock.Flock

	mu    sync.Mutex
	f     *os.File
	keys  map[string]map[string]nonceEntry
	role  map[Role]int // live entries per role
	live  int
	lines int
}

type nonceEntry struct {
	until int64 // Unix ms
	role  Role
}

// OpenNonceCache opens (or creates) the cache file and locks it.
func OpenNonceCache(path string, lim NonceLimits, now time.Time) (*NonceCache, error) {
	if lim.PerKey <= 0 {
		lim.PerKey = DefaultKeyQuota
	}
	if lim.PerRole <= 0 {
		lim.PerRole = DefaultRoleQuota
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("nonce cache: %w", err)
	}
	c := &NonceCache{path: path, lim: lim, lock: flock.New(path+".lock", flock.SetFlag(os.O_CREATE|os.O_RDWR), flock.SetPermissions(0o600)),
		keys: map[string]map[string]nonceEntry{}, role: map[Role]int{}}
	locked, err := c.lock.TryLock()
	if err != nil {
		return nil, fmt.Errorf("nonce cache: lock %s: %w", path+".lock", err)
	}
	if !locked {
		return nil, fmt.Errorf("nonce cache %s is in use by another process (is a second command service running on this host?)", path)
	}
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		c.lock.Unlock()
		return nil, fmt.Errorf("nonce cache: %w", err)
	}
	ms := now.UnixMilli()
	lines := bytes.Split(b, []byte{'\n'})
	lines = lines[:len(lines)-1] // after the last '\n': empty, or a torn write
	for _, line := range lines {
		f := bytes.Fields(line)
		if len(f) != 3 && len(f) != 4 {
			continue
		}
		until, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || until <= ms {
			continue
		}
		role := ReadWrite
		if len(f) == 4 && string(f[3]) == "ro" {
			role = ReadOnly
		}
		c.add(string(f[1]), string(f[2]), nonceEntry{until: until, role: role})
	}
	if err := c.compact(ms); err != nil {
		c.lock.Unlock()
		return nil, err
	}
	return c, nil
}

func (c *NonceCache) add(key, nonce string, e nonceEntry) {
	m := c.keys[key]
	if m == nil {
		m = map[string]nonceEntry{}
		c.keys[key] = m
	}
	if _, dup := m[nonce]; !dup {
		c.live++
		c.role[e.role]++
	}
	m[nonce] = e
}

// sweepKey forgets key's expired entries.
func (c *NonceCache) sweepKey(key string, ms int64) {
	m := c.keys[key]
	for n, e := range m {
		if e.until <= ms {
			delete(m, n)
			c.live--
			c.role[e.role]--
		}
	}
	if len(m) == 0 {
		delete(c.keys, key)
	}
}

func (c *NonceCache) sweep(ms int64) {
	for k := range c.keys {
		c.sweepKey(k, ms)
	}
}

// Seen reports whether (key, nonce) is recorded and not expired. It
// changes nothing: the verifier asks it before charging a key's rate, so a
// replayed message costs its key nothing.
func (c *NonceCache) Seen(key, nonce string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.keys[key][nonce]
	return ok && e.until > now.UnixMilli()
}

// Use records (key, nonce), sent with a key of role, as used until until;
// ErrReplayed if it already is, ErrKeyQuota or ErrRoleQuota when a bound
// is reached. The record is on disk when Use returns nil.
func (c *NonceCache) Use(key, nonce string, role Role, until, now time.Time) error {
	ms := now.UnixMilli()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return errors.New("nonce cache: closed")
	}
	if e, ok := c.keys[key][nonce]; ok && e.until > ms {
		return ErrReplayed
	}
	if len(c.keys[key]) >= c.lim.PerKey {
		c.sweepKey(key, ms)
		if len(c.keys[key]) >= c.lim.PerKey {
			return ErrKeyQuota
		}
	}
	if c.role[role] >= c.lim.PerRole {
		c.sweep(ms)
		if c.role[role] >= c.lim.PerRole {
			return ErrRoleQuota
		}
	}
	line := strconv.FormatInt(until.UnixMilli(), 10) + " " + key + " " + nonce + " " + roleTag(role) + "\n"
	if _, err := c.f.WriteString(line); err != nil {
		return fmt.Errorf("nonce cache: %w", err)
	}
	if err := c.f.Sync(); err != nil {
		return fmt.Errorf("nonce cache: %w", err)
	}
	c.add(key, nonce, nonceEntry{until: until.UnixMilli(), role: role})
	c.lines++
	if c.lines > 2*c.live+1024 {
		if err := c.compact(ms); err != nil {
			return err
		}
	}
	return nil
}

func roleTag(r Role) string {
	if r == ReadOnly {
		return "ro"
	}
	return "rw"
}

// Len is the number of live entries.
func (c *NonceCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}

// KeyLen is the number of entries key holds.
func (c *NonceCache) KeyLen(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.keys[key])
}

// compact rewrites the file with the live entries only.
func (c *NonceCache) compact(ms int64) error {
	c.sweep(ms)
	var buf bytes.Buffer
	for k, m := range c.keys {
		for n, e := range m {
			buf.WriteString(strconv.FormatInt(e.until, 10) + " " + k + " " + n + " " + roleTag(e.role) + "\n")
		}
	}
	tmp := c.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("nonce cache: %w", err)
	}
	defer os.Remove(tmp)
	_, err = f.Write(buf.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, c.path)
	}
	if err != nil {
		return fmt.Errorf("nonce cache: %w", err)
	}
	if c.f != nil {
		c.f.Close()
	}
	c.f, err = os.OpenFile(c.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("nonce cache: %w", err)
	}
	c.lines = c.live
	return nil
}

// Close closes the file and releases the lock.
func (c *NonceCache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return nil
	}
	err := c.f.Close()
	c.f = nil
	if uerr := c.lock.Unlock(); err == nil {
		err = uerr
	}
	return err
}
