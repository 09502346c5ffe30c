// Package kick owns the deny list of kicked users: the state behind "a kick
// that sticks". ocserv's `occtl disconnect` leaves the session cookie valid,
// so a client reconnects at once without a password, and locking the user
// in ocpasswd does not stop that (`terminate` exists only from 1.4.2). The
// hook runs on every connect, cookie resumptions included, so a user on
// this list is refused there, on every ocserv version.
//
// The list is a directory, kicked/ in the spool directory, with one small
// JSON file per user, so the hook's check on every login is a single
// open(2) that normally fails with ENOENT, and the command service can add
// and remove entries without rewriting a shared file. File names are the
// hex of the user name, so no name can reach outside the directory.
//
// No lock, on either side: every change is one rename(2) (Add) or one
// unlink(2) (Remove) of one user's file, atomic for every reader and
// writer, and no operation reads an entry to decide what to write. Two
// writers of one user's entry leave one of their two complete entries; a
// lock would only order them, which the callers do not need.
package kick

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Dir is the list's directory inside the spool directory.
const Dir = "kicked"

// Entry is one kicked user.
type Entry struct {
	User   string    `json:"user"`
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by,omitempty"` // the operator key that kicked
	At     time.Time `json:"at"`
	// Until, when set, ends the kick by itself.
	Until *time.Time `json:"until,omitempty"`
	// Source is SourcePolicy for a kick the ledger's policy engine put
	// (docs/policy.md); empty for an operator's. A policy kick never
	// replaces an operator's, and the policy key can only lift its own.
	Source string `json:"source,omitempty"`
}

// SourcePolicy marks a kick put by the ledger's policy engine.
const SourcePolicy = "policy"

// Active reports whether the kick still holds at now.
func (e Entry) Active(now time.Time) bool { return e.Until == nil || now.Before(*e.Until) }

// MaxUser is the longest user name the list holds: ocserv itself caps
// user names at 64 bytes (MAX_USERNAME_SIZE), and the hex file name must
// fit in 255 bytes.
const MaxUser = 120

// fileName maps a user name to its entry's file name.
func fileName(user string) string { return hex.EncodeToString([]byte(user)) }

// Check returns the user's entry when a kick is in force. It is on every
// login's path: one openat(2) relative to the spool directory. A missing
// list directory means nobody is kicked. An unreadable entry counts as a
// kick (with the error): an operator asked for it, and a damaged file
// must not silently let the user back in.
func Check(spoolDir, user string, now time.Time) (*Entry, error) {
	if user == "" || len(user) > MaxUser {
		return nil, nil // no such entry can exist (Add refuses these)
	}
	p := filepath.Join(spoolDir, Dir, fileName(user))
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return nil, nil
	}
	if err != nil {
		return &Entry{User: user}, fmt.Errorf("read kick entry %s: %w", p, err)
	}
	defer unix.Close(fd)
	var buf [4096]byte
	n, err := unix.Read(fd, buf[:])
	if err != nil {
		return &Entry{User: user}, fmt.Errorf("read kick entry %s: %w", p, err)
	}
	var e Entry
	if err := json.Unmarshal(buf[:n], &e); err != nil || e.User != user {
		return &Entry{User: user}, fmt.Errorf("kick entry %s is damaged; treating %q as kicked", p, user)
	}
	if !e.Active(now) {
		return nil, nil
	}
	return &e, nil
}

// Add puts e on the list, replacing an earlier entry for the same user.
// The file is written to a temporary name and renamed, so the hook never
// reads half an entry.
func Add(spoolDir string, e Entry) error {
	if e.User == "" || len(e.User) > MaxUser {
		return fmt.Errorf("kick: user name must be 1 to %d bytes", MaxUser)
	}
	dir := filepath.Join(spoolDir, Dir)
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("kick %q: %w", e.User, err)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("kick %q: %w", e.User, err)
	}
	if len(b) > 4096 {
		return fmt.Errorf("kick %q: entry larger than 4096 bytes (reason too long?)", e.User)
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("kick %q: %w", e.User, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly after a successful rename
	err = f.Chmod(0o640) // CreateTemp makes 0600; the hook's group may read it
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
		err = os.Rename(tmp, filepath.Join(dir, fileName(e.User)))
	}
	if err != nil {
		return fmt.Errorf("kick %q: %w", e.User, err)
	}
	return nil
}

// Remove takes user off the list; removing a user who is not on it is not
// an error (the result is the same).
func Remove(spoolDir, user string) (bool, error) {
	err := os.Remove(filepath.Join(spoolDir, Dir, fileName(user)))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("unkick %q: %w", user, err)
	}
	return true, nil
}

// List returns every entry, expired ones included (the caller decides), sorted by user.
func List(spoolDir string) ([]Entry, error) {
	dir := filepath.Join(spoolDir, Dir)
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list kicked users: %w", err)
	}
	var out []Entry
	for _, de := range des {
		if strings.HasPrefix(de.Name(), ".") || !de.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			return nil, fmt.Errorf("list kicked users: %w", err)
		}
		var e Entry
		if err := json.Unmarshal(b, &e); err != nil {
			return nil, fmt.Errorf("list kicked users: %s is damaged: %w", de.Name(), err)
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
	return out, nil
}
