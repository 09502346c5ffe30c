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
)

// Errors of NonceCache.Use.
var (
	ErrReplayed  = errors.New("nonce already used")
	ErrCacheFull = errors.New("nonce cache full")
)

// NonceCache remembers every (key, nonce) accepted until the command's
// expiry (plus skew) has passed, in memory and in an append-only file, so
// a restart of the service cannot accept a command twice.
//
// File: one line per accepted command, "<until unix ms> <key> <nonce>\n",
// fsynced before Use returns (before the command runs). Crash states: a
// torn last line is skipped at open; expired lines are dropped when the
// file is compacted (at open, and when dead lines outnumber live ones),
// written to a temporary file, synced and renamed.
//
// Bounded: at Max live entries a new command is refused (ErrCacheFull)
// rather than an unexpired entry forgotten, which would let its command be
// replayed. Entries expire after at most the longest validity allowed.
type NonceCache struct {
	path string
	max  int

	mu    sync.Mutex
	f     *os.File
	live  map[string]int64
	lines int
}

// OpenNonceCache opens (or creates) the cache file.
func OpenNonceCache(path string, max int, now time.Time) (*NonceCache, error) {
	if max <= 0 {
		max = 100000
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("nonce cache: %w", err)
	}
	c := &NonceCache{path: path, max: max, live: map[string]int64{}}
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("nonce cache: %w", err)
	}
	ms := now.UnixMilli()
	lines := bytes.Split(b, []byte{'\n'})
	lines = lines[:len(lines)-1] // after the last '\n': empty, or a torn write
	for _, line := range lines {
		f := bytes.Fields(line)
		if len(f) != 3 {
			continue
		}
		until, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || until <= ms {
			continue
		}
		c.live[string(f[1])+" "+string(f[2])] = until
	}
	if err := c.compact(ms); err != nil {
		return nil, err
	}
	return c, nil
}

// Use records (key, nonce) as used until until; ErrReplayed if it already
// is. The record is on disk when Use returns nil.
func (c *NonceCache) Use(key, nonce string, until, now time.Time) error {
	id := key + " " + nonce
	ms := now.UnixMilli()
	c.mu.Lock()
	defer c.mu.Unlock()
	if u, ok := c.live[id]; ok && u > ms {
		return ErrReplayed
	}
	if len(c.live) >= c.max {
		for k, u := range c.live {
			if u <= ms {
				delete(c.live, k)
			}
		}
		if len(c.live) >= c.max {
			return ErrCacheFull
		}
	}
	line := strconv.FormatInt(until.UnixMilli(), 10) + " " + id + "\n"
	if _, err := c.f.WriteString(line); err != nil {
		return fmt.Errorf("nonce cache: %w", err)
	}
	if err := c.f.Sync(); err != nil {
		return fmt.Errorf("nonce cache: %w", err)
	}
	c.live[id] = until.UnixMilli()
	c.lines++
	if c.lines > 2*len(c.live)+1024 {
		if err := c.compact(ms); err != nil {
			return err
		}
	}
	return nil
}

// Len is the number of live entries.
func (c *NonceCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.live)
}

// compact rewrites the file with the live entries only.
func (c *NonceCache) compact(ms int64) error {
	var buf bytes.Buffer
	for id, u := range c.live {
		if u <= ms {
			delete(c.live, id)
			continue
		}
		buf.WriteString(strconv.FormatInt(u, 10) + " " + id + "\n")
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
	c.lines = len(c.live)
	return nil
}

// Close closes the file.
func (c *NonceCache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return nil
	}
	err := c.f.Close()
	c.f = nil
	return err
}
