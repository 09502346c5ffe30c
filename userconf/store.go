// Package userconf reads and edits ocserv's per-user and per-group config
// files (the config-per-user and config-per-group directories).
//
// ocserv's sec-mod reads these files at each login, not at reload, and a
// value it cannot parse refuses that user's next login, while `occtl
// reload` reports success whatever the files hold. So every value is
// validated here, against a whitelist of keys with a typed validator
// each (Keys), before anything is written; the file name is validated
// (user and group names as package ocpasswd accepts them: no path
// traversal); and a change is made as: backup of the previous file, write
// of the new content to a temporary file in the same directory, fsync,
// rename over the old one, fsync of the directory, read back and compare;
// on any failure after the rename the previous content is put back.
// Comments, unknown keys, sections and the order of lines are kept: only
// the lines of the key being set change.
//
// ocserv 1.1.6 has no command that checks a per-user file (ocserv -t
// reads the main configuration only), so there is no check by ocserv
// itself here; the validators follow 1.1.6's parser (src/sup-config/
// file.c, config-ports.c, ip-util.c) and are stricter where it is lax.
package userconf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gofrs/flock"

	"github.com/ocserv-telemetry/ocserv-telemetry/ocpasswd"
)

// Kind says whether a file is a user's or a group's.
type Kind string

// Kinds.
const (
	User  Kind = "user"
	Group Kind = "group"
)

// Defaults.
const (
	DefaultKeep = 10
	// NewFileMode is the mode of a file this package creates: sec-mod
	// reads it as root.
	NewFileMode = 0o640
	maxFileSize = 1 << 20
)

// Errors to test with errors.Is (besides ErrInvalidValue).
var (
	// ErrNotFound: no such file (Get reports a missing file as an empty
	// Config instead), or the key is not in the file (Delete).
	ErrNotFound = errors.New("not found")
	// ErrInvalidName: a user or group name that cannot name a file here.
	ErrInvalidName = errors.New("invalid name")
	// ErrNotConfigured: the Store has no directory for this kind.
	ErrNotConfigured = errors.New("directory not configured")
)

// Store edits the files of one ocserv. Set the fields before the first
// call; the methods are safe for concurrent use and serialise changes
// (with a mutex, and with a lock file in the backup directory, gofrs/flock,
// against other processes using this package).
type Store struct {
	// UserDir and GroupDir are ocserv's config-per-user and
	// config-per-group; "" means that kind is not managed.
	UserDir  string
	GroupDir string
	// BackupDir receives "<kind>/<name>.<UTC time>" copies of every file
	// before it changes or is deleted; "" means "<UserDir or GroupDir>.backup"
	// beside each directory. It must not be inside UserDir or GroupDir:
	// ocserv would take a backup for the file of a user of that name.
	BackupDir string
	// Keep bounds the backups kept per file; 0 means DefaultKeep.
	Keep int
	// Logger records every change; nil means slog.Default().
	Logger *slog.Logger
	// LockWait bounds the wait for another process's lock on a backup
	// directory; 0 means DefaultLockWait.
	LockWait time.Duration

	mu sync.Mutex
	// Test hooks: fail a step of a write.
	failBeforeRename func(tmp string) error
	failAfterRename  func(path string) error
}

// Config is a file's content as ocserv reads it.
type Config struct {
	Path    string
	Exists  bool
	Entries []Entry // top-level values in file order (sections skipped by ocserv are left out)
}

// Values returns key's values in file order.
func (c Config) Values(key string) []string {
	var vs []string
	for _, e := range c.Entries {
		if e.Key == key {
			vs = append(vs, e.Value)
		}
	}
	return vs
}

// Change reports what a write did.
type Change struct {
	Path    string
	Backup  string // copy of the previous file; "" when there was none or nothing changed
	Changed bool   // false: the file already had exactly these values
	Before  []string
	After   []string
}

// ValidName checks a user or group name for a file name.
func ValidName(kind Kind, name string) error {
	var err error
	switch kind {
	case User:
		err = ocpasswd.ValidUser(name)
	case Group:
		err = ocpasswd.ValidGroup(name)
	default:
		return fmt.Errorf("%w: kind %q is neither user nor group", ErrInvalidName, clip(string(kind)))
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidName, err)
	}
	return nil
}

func (s *Store) dir(kind Kind) (string, error) {
	d := s.UserDir
	if kind == Group {
		d = s.GroupDir
	}
	if d == "" {
		return "", fmt.Errorf("%w: no config-per-%s directory", ErrNotConfigured, kind)
	}
	return filepath.Clean(d), nil
}

func (s *Store) backupDir(kind Kind) (string, error) {
	if s.BackupDir != "" {
		b := filepath.Clean(s.BackupDir)
		for _, d := range []string{s.UserDir, s.GroupDir} {
			if d == "" {
				continue
			}
			if rel, err := filepath.Rel(filepath.Clean(d), b); err == nil && !strings.HasPrefix(rel, "..") {
				return "", fmt.Errorf("BackupDir %s is inside %s, where ocserv would read backups as config files", b, d)
			}
		}
		return filepath.Join(b, string(kind)), nil
	}
	d, err := s.dir(kind)
	if err != nil {
		return "", err
	}
	return d + ".backup", nil
}

// path validates kind and name and returns the file's path.
func (s *Store) path(kind Kind, name string) (string, error) {
	if err := ValidName(kind, name); err != nil {
		return "", err
	}
	d, err := s.dir(kind)
	if err != nil {
		return "", err
	}
	p := filepath.Join(d, name)
	if filepath.Dir(p) != d { // ValidName already guarantees it
		return "", fmt.Errorf("%w: %q leaves %s", ErrInvalidName, name, d)
	}
	return p, nil
}

func (s *Store) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// opError names the operation: "userconf set user alice route: …".
func opError(op string, kind Kind, name, key string, err error) error {
	target := string(kind) + " " + clip(name)
	if key != "" {
		target += " " + clip(key)
	}
	return fmt.Errorf("userconf %s %s: %w", op, target, err)
}

// Get reads a user's or group's file. A missing file is a Config with
// Exists false.
func (s *Store) Get(kind Kind, name string) (Config, error) {
	p, err := s.path(kind, name)
	if err != nil {
		return Config{}, opError("get", kind, name, "", err)
	}
	content, exists, _, err := readFile(p)
	if err != nil {
		return Config{}, opError("get", kind, name, "", err)
	}
	return Config{Path: p, Exists: exists, Entries: entries(parse(content))}, nil
}

// Set gives key exactly values (one for a single-valued key, 1 to
// MaxValues for a multi-valued one), replacing the lines it had. Every
// value is validated first; nothing is written when one fails.
func (s *Store) Set(kind Kind, name, key string, values []string) (Change, error) {
	k, err := checkSet(key, values)
	if err != nil {
		return Change{}, opError("set", kind, name, key, err)
	}
	ch, err := s.change(kind, name, k, values, false)
	if err != nil {
		return ch, opError("set", kind, name, key, err)
	}
	return ch, nil
}

func checkSet(key string, values []string) (Key, error) {
	k, ok := LookupKey(key)
	if !ok {
		return Key{}, fmt.Errorf("%w: key %q is not one that may be set (see userconf.Keys)", ErrInvalidValue, clip(key))
	}
	switch {
	case len(values) == 0:
		return Key{}, fmt.Errorf("%w: no value (to remove the key, delete it)", ErrInvalidValue)
	case !k.Multi && len(values) > 1:
		return Key{}, fmt.Errorf("%w: %s takes one value, got %d", ErrInvalidValue, k.Name, len(values))
	case len(values) > MaxValues:
		return Key{}, fmt.Errorf("%w: %d values (at most %d)", ErrInvalidValue, len(values), MaxValues)
	}
	seen := map[string]bool{}
	for _, v := range values {
		if err := k.Validate(v); err != nil {
			return Key{}, err
		}
		if seen[v] {
			return Key{}, fmt.Errorf("%w: %s value %q given twice", ErrInvalidValue, k.Name, v)
		}
		seen[v] = true
	}
	return k, nil
}

// Delete removes every line of key. A file without the key is
// ErrNotFound. A key outside the whitelist may be deleted too (to clean
// up a file), as long as it is a plausible key name.
func (s *Store) Delete(kind Kind, name, key string) (Change, error) {
	k, ok := LookupKey(key)
	if !ok {
		if err := plausibleKey(key); err != nil {
			return Change{}, opError("delete", kind, name, key, err)
		}
		k = Key{Name: key}
	}
	ch, err := s.change(kind, name, k, nil, true)
	if err != nil {
		return ch, opError("delete", kind, name, key, err)
	}
	return ch, nil
}

func plausibleKey(key string) error {
	if key == "" || len(key) > 64 {
		return fmt.Errorf("%w: key of %d bytes", ErrInvalidValue, len(key))
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w: key %q contains %q", ErrInvalidValue, clip(key), rune(c))
		}
	}
	return nil
}

// DeleteFile backs up and removes a user's or group's file; a missing
// file is ErrNotFound.
func (s *Store) DeleteFile(kind Kind, name string) (Change, error) {
	p, err := s.path(kind, name)
	if err != nil {
		return Change{}, opError("delete-file", kind, name, "", err)
	}
	unlock, err := s.lock(kind)
	if err != nil {
		return Change{}, opError("delete-file", kind, name, "", err)
	}
	defer unlock()
	content, exists, _, err := readFile(p)
	if err != nil {
		return Change{}, opError("delete-file", kind, name, "", err)
	}
	if !exists {
		return Change{}, opError("delete-file", kind, name, "", fmt.Errorf("%w: %s", ErrNotFound, p))
	}
	bak, err := s.backup(kind, name, content)
	if err != nil {
		return Change{}, opError("delete-file", kind, name, "", err)
	}
	if err := os.Remove(p); err != nil {
		return Change{}, opError("delete-file", kind, name, "", err)
	}
	syncDir(filepath.Dir(p))
	s.logger().Info("userconf: file deleted", "kind", string(kind), "name", name, "path", p, "backup", bak)
	return Change{Path: p, Backup: bak, Changed: true}, nil
}

// change sets (vals) or deletes (del) key in a file.
func (s *Store) change(kind Kind, name string, k Key, vals []string, del bool) (Change, error) {
	p, err := s.path(kind, name)
	if err != nil {
		return Change{}, err
	}
	unlock, err := s.lock(kind)
	if err != nil {
		return Change{}, err
	}
	defer unlock()

	old, exists, mode, err := readFile(p)
	if err != nil {
		return Change{}, err
	}
	oldLines := parse(old)
	ch := Change{Path: p, Before: values(oldLines, k.Name)}
	if del && len(ch.Before) == 0 {
		return ch, fmt.Errorf("%w: %s has no %s", ErrNotFound, p, k.Name)
	}
	next := edit(old, k, vals)
	if err := selfCheck(oldLines, parse(next), k.Name, vals); err != nil {
		return ch, fmt.Errorf("internal error, nothing written: %w", err)
	}
	ch.After = values(parse(next), k.Name)
	if exists && next == old {
		return ch, nil
	}
	if exists {
		if ch.Backup, err = s.backup(kind, name, old); err != nil {
			return ch, err
		}
	} else {
		mode = NewFileMode
	}
	if err := s.replace(p, []byte(next), mode, []byte(old), exists); err != nil {
		return ch, err
	}
	ch.Changed = true
	s.logger().Info("userconf: file changed", "kind", string(kind), "name", name, "key", k.Name,
		"before", ch.Before, "after", ch.After, "path", p, "backup", ch.Backup)
	return ch, nil
}

// selfCheck proves an edit did what it should: key has exactly vals and
// every other key kept its values.
func selfCheck(before, after []line, key string, vals []string) error {
	if got := values(after, key); !slices.Equal(got, vals) {
		return fmt.Errorf("edited file gives %s = %q, want %q", key, got, vals)
	}
	keys := map[string]bool{}
	for _, l := range before {
		keys[l.key] = true
	}
	for _, l := range after {
		keys[l.key] = true
	}
	for k := range keys {
		if k == "" || k == key {
			continue
		}
		if b, a := values(before, k), values(after, k); !slices.Equal(b, a) {
			return fmt.Errorf("edit would change %s from %q to %q", k, b, a)
		}
	}
	return nil
}

// readFile reads a regular file (not a symlink: this package writes
// files in ocserv's directories and follows no link out of them).
func readFile(p string) (content string, exists bool, mode os.FileMode, err error) {
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", false, 0, nil
	}
	if err != nil {
		return "", false, 0, err
	}
	if !fi.Mode().IsRegular() {
		return "", false, 0, fmt.Errorf("%s is not a regular file (%s); not touched", p, fi.Mode().Type())
	}
	if fi.Size() > maxFileSize {
		return "", false, 0, fmt.Errorf("%s is %d bytes, over %d; not touched", p, fi.Size(), maxFileSize)
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return "", false, 0, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return "", false, 0, err
	}
	return string(b), true, fi.Mode().Perm(), nil
}

// DefaultLockWait is Store.LockWait's default: another process holds the
// lock for one file's change.
const DefaultLockWait = 30 * time.Second

// lock takes the mutex and an exclusive lock (gofrs/flock) on the backup
// directory's lock file, waiting at most LockWait for another process.
func (s *Store) lock(kind Kind) (func(), error) {
	s.mu.Lock()
	bd, err := s.backupDir(kind)
	if err == nil {
		err = os.MkdirAll(bd, 0o700)
	}
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	p := filepath.Join(bd, ".lock")
	fl := flock.New(p, flock.SetFlag(os.O_CREATE|os.O_RDWR), flock.SetPermissions(0o600))
	wait := s.LockWait
	if wait <= 0 {
		wait = DefaultLockWait
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	locked, err := fl.TryLockContext(ctx, 10*time.Millisecond)
	if err != nil || !locked {
		s.mu.Unlock()
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("held by another process for %s", wait)
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	return func() { fl.Close(); s.mu.Unlock() }, nil
}

// backup writes content to the backup directory and prunes old copies.
func (s *Store) backup(kind Kind, name, content string) (string, error) {
	bd, err := s.backupDir(kind)
	if err != nil {
		return "", err
	}
	stamp := time.Now().UTC().Format("20060102T150405.000000000Z")
	p := filepath.Join(bd, name+"."+stamp)
	if err := writeSynced(p, []byte(content), 0o600, true); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	syncDir(bd)
	s.prune(bd, name)
	return p, nil
}

func (s *Store) prune(bd, name string) {
	keep := s.Keep
	if keep <= 0 {
		keep = DefaultKeep
	}
	ents, err := os.ReadDir(bd)
	if err != nil {
		return
	}
	var mine []string
	for _, e := range ents {
		if rest, ok := strings.CutPrefix(e.Name(), name+"."); ok && len(rest) == len("20060102T150405.000000000Z") && strings.HasSuffix(rest, "Z") {
			mine = append(mine, e.Name())
		}
	}
	sort.Strings(mine)
	for len(mine) > keep {
		os.Remove(filepath.Join(bd, mine[0]))
		mine = mine[1:]
	}
}

// replace writes content to p atomically; after a failure past the
// rename it puts the previous content back (or removes a new file).
func (s *Store) replace(p string, content []byte, mode os.FileMode, old []byte, existed bool) error {
	dir := filepath.Dir(p)
	tmp, err := os.CreateTemp(dir, ".ocserv-telemetry-*.tmp")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	tmp.Close()
	if err := writeSynced(tmpName, content, mode, false); err != nil {
		os.Remove(tmpName)
		return err
	}
	if s.failBeforeRename != nil {
		if err := s.failBeforeRename(tmpName); err != nil {
			os.Remove(tmpName)
			return err
		}
	}
	if err := os.Rename(tmpName, p); err != nil {
		os.Remove(tmpName)
		return err
	}
	err = syncDirErr(dir)
	if err == nil && s.failAfterRename != nil {
		err = s.failAfterRename(p)
	}
	if err == nil {
		var got []byte
		got, err = os.ReadFile(p)
		if err == nil && !bytes.Equal(got, content) {
			err = fmt.Errorf("read back %d bytes differing from the %d written", len(got), len(content))
		}
	}
	if err == nil {
		return nil
	}
	if rerr := s.rollback(p, old, mode, existed); rerr != nil {
		return fmt.Errorf("%v; ROLLBACK FAILED, %s may hold the new content: %v", err, p, rerr)
	}
	return fmt.Errorf("%w (previous content restored)", err)
}

func (s *Store) rollback(p string, old []byte, mode os.FileMode, existed bool) error {
	s.logger().Warn("userconf: write failed after the rename; restoring the previous content", "path", p)
	if !existed {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		syncDir(filepath.Dir(p))
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".ocserv-telemetry-*.tmp")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	tmp.Close()
	if err := writeSynced(tmpName, old, mode, false); err != nil {
		os.Remove(tmpName)
		return err
	}
	if err := os.Rename(tmpName, p); err != nil {
		os.Remove(tmpName)
		return err
	}
	syncDir(filepath.Dir(p))
	return nil
}

// writeSynced writes content to p (created exclusively when excl) with
// mode, and fsyncs it.
func writeSynced(p string, content []byte, mode os.FileMode, excl bool) error {
	flags := os.O_WRONLY | os.O_TRUNC | syscall.O_NOFOLLOW | syscall.O_CLOEXEC
	if excl {
		flags |= os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(p, flags, mode)
	if err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDirErr(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func syncDir(dir string) { _ = syncDirErr(dir) }
