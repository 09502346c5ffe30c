// Package mirror owns a host's local copy of the ledger's verdicts: the
// files the hook reads at every connect to refuse a denied user without
// asking anyone over the network (docs/policy.md, "The mirror").
//
// Layout, inside the spool directory (so it inherits the spool's owner,
// group and the hook's right to read it):
//
//	verdicts/            0750
//	verdicts/<hex user>  0640  one policy.Verdict as JSON, for every user the
//	                           bucket holds a verdict for
//	verdicts/.fresh      0640  empty; its mtime is the ledger's time of the
//	                           newest heartbeat the command service mirrored
//
// A user without a file is allowed (the ledger publishes only verdicts
// that say something). File names are the hex of the user name, so no
// name reaches outside the directory. Files are replaced by rename, so
// the hook never reads half a verdict. The hook's check costs one
// fstatat(2) of .fresh and one openat(2) that normally fails with ENOENT.
package mirror

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
)

// Dir is the mirror's directory inside the spool directory; FreshFile
// the freshness stamp inside it.
const (
	Dir       = "verdicts"
	FreshFile = ".fresh"
)

// MaxFile bounds a verdict file (a verdict is a few hundred bytes; one
// with many servers' session counts a few KiB).
const MaxFile = 64 << 10

// MaxUser is the longest user name looked up (its hex must fit a file
// name); policies only name users of at most policy.MaxNameLen bytes.
const MaxUser = 120

// Stale modes: what the hook does when the mirror is older than its
// maximum age (POLICY_STALE).
const (
	// StaleAdmit decides nothing from a stale mirror: the login goes
	// ahead and the event says the mirror was stale.
	StaleAdmit = "admit"
	// StaleRefuse refuses every login while the mirror is stale (fail
	// closed), for operators who would rather lock users out than let a
	// denied one in.
	StaleRefuse = "refuse"
)

// FileName maps a user to their verdict's file name.
func FileName(user string) string { return hex.EncodeToString([]byte(user)) }

// State of the mirror as the hook saw it.
const (
	StateFresh   = "fresh"
	StateStale   = "stale"   // older than the maximum age
	StateMissing = "missing" // never synced (no .fresh)
	StateDamaged = "damaged" // the user's file cannot be read or parsed
)

// Result is what Lookup found.
type Result struct {
	State string
	// Age is how old the mirror is (zero when missing).
	Age time.Duration
	// Verdict is the user's verdict, nil when the mirror holds none.
	Verdict *policy.Verdict
	Err     error
}

// Usable reports whether the verdict may decide the login: the mirror is
// fresh and the user's entry could be read.
func (r Result) Usable() bool { return r.State == StateFresh }

// Lookup reads user's verdict from the mirror in spoolDir and says how
// fresh the mirror is, measured against maxAge at now. It never blocks:
// files are opened non-blocking, without following symlinks, and must be
// regular files no one but their owner can write.
func Lookup(spoolDir, user string, now time.Time, maxAge time.Duration) Result {
	dir := filepath.Join(spoolDir, Dir)
	var st unix.Stat_t
	if err := unix.Fstatat(unix.AT_FDCWD, filepath.Join(dir, FreshFile), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT || err == unix.ENOTDIR {
			return Result{State: StateMissing}
		}
		return Result{State: StateMissing, Err: fmt.Errorf("verdicts mirror %s: %w", dir, err)}
	}
	r := Result{State: StateFresh, Age: max(0, now.Sub(time.Unix(st.Mtim.Unix())))}
	if r.Age > maxAge {
		r.State = StateStale
	}
	if user == "" || len(user) > MaxUser {
		return r
	}
	p := filepath.Join(dir, FileName(user))
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err == unix.ENOENT {
		return r
	}
	damaged := func(err error) Result {
		r.State, r.Err = StateDamaged, fmt.Errorf("verdict of %q (%s): %w", user, p, err)
		return r
	}
	if err != nil {
		return damaged(err)
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, &st); err != nil {
		return damaged(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o022 != 0 || st.Size > MaxFile {
		return damaged(fmt.Errorf("not a regular file of at most %d bytes writable by its owner only (mode %o)", MaxFile, st.Mode&0o7777))
	}
	buf := make([]byte, st.Size+1)
	n := 0
	for n < len(buf) {
		k, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return damaged(err)
		}
		if k == 0 {
			break
		}
		n += k
	}
	var v policy.Verdict
	if err := json.Unmarshal(buf[:n], &v); err != nil || v.User != user {
		return damaged(errors.New("does not hold this user's verdict"))
	}
	r.Verdict = &v
	return r
}

// Mirror is the writing side, used by the command service.
type Mirror struct {
	dir string
}

// Open makes (or checks) the mirror's directory in spoolDir.
func Open(spoolDir string) (*Mirror, error) {
	dir := filepath.Join(spoolDir, Dir)
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("verdicts mirror: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("verdicts mirror: %w", err)
	}
	if !fi.IsDir() || fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("verdicts mirror %s must be a directory no one but its owner can write (mode %v)", dir, fi.Mode())
	}
	return &Mirror{dir: dir}, nil
}

// Dir is the mirror's directory.
func (m *Mirror) Dir() string { return m.dir }

// Put writes v as its user's verdict: to a temporary file, synced, then
// renamed over the old one.
func (m *Mirror) Put(v policy.Verdict) error {
	if err := policy.ValidUser(v.User); err != nil {
		return fmt.Errorf("mirror verdict: user %q: %w", v.User, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("mirror verdict of %q: %w", v.User, err)
	}
	if len(b) > MaxFile {
		return fmt.Errorf("mirror verdict of %q: %d bytes, more than %d", v.User, len(b), MaxFile)
	}
	if err := m.write(FileName(v.User), b); err != nil {
		return fmt.Errorf("mirror verdict of %q: %w", v.User, err)
	}
	return nil
}

func (m *Mirror) write(name string, b []byte) error {
	f, err := os.CreateTemp(m.dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly after the rename
	err = f.Chmod(0o640) // explicit, whatever the umask
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(m.dir, name))
	}
	return err
}

// Delete removes user's verdict (allowed again); a missing one is fine.
func (m *Mirror) Delete(user string) error {
	err := os.Remove(filepath.Join(m.dir, FileName(user)))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mirror: delete verdict of %q: %w", user, err)
	}
	return nil
}

// Users lists the users the mirror holds a verdict for. Files that are
// not verdicts (a temporary file, a stray name) are reported in odd.
func (m *Mirror) Users() (users, odd []string, err error) {
	des, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("mirror: list: %w", err)
	}
	for _, de := range des {
		n := de.Name()
		if n == FreshFile {
			continue
		}
		b, err := hex.DecodeString(n)
		if err != nil || strings.HasPrefix(n, ".") || !de.Type().IsRegular() {
			odd = append(odd, n)
			continue
		}
		users = append(users, string(b))
	}
	return users, odd, nil
}

// RemoveOdd removes a file Users reported as odd.
func (m *Mirror) RemoveOdd(name string) error {
	if strings.ContainsRune(name, '/') || name == FreshFile {
		return fmt.Errorf("mirror: will not remove %q", name)
	}
	return os.RemoveAll(filepath.Join(m.dir, name))
}

// Touch marks the mirror as holding the ledger's verdicts as of t (never
// later than now). The directory is synced first, so every verdict
// written before is on disk before the stamp says the mirror is fresh.
func (m *Mirror) Touch(t, now time.Time) error {
	if t.After(now) {
		t = now // a ledger clock ahead must not make the mirror look fresh for longer
	}
	d, err := os.Open(m.dir)
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		return fmt.Errorf("mirror: sync %s: %w", m.dir, err)
	}
	p := filepath.Join(m.dir, FreshFile)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|unix.O_NOFOLLOW, 0o640)
	if err != nil {
		return fmt.Errorf("mirror: stamp: %w", err)
	}
	err = f.Chmod(0o640)
	f.Close()
	if err == nil {
		err = os.Chtimes(p, t, t)
	}
	if err != nil {
		return fmt.Errorf("mirror: stamp: %w", err)
	}
	return nil
}

// Stamp is the mirror's freshness time (zero when never synced).
func (m *Mirror) Stamp() time.Time {
	fi, err := os.Lstat(filepath.Join(m.dir, FreshFile))
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}
