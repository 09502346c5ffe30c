package spool

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The hook keeps each live ocserv worker's session_uid in sessions/, keyed
// by "<ID>-<DEVICE>", from its connect to its disconnect. These writes are
// not synced: after a power loss the sessions are gone anyway, and a
// missing entry only means a fresh session_uid.

// SessionKey makes the file name for a worker. The caller has validated
// both parts (a positive PID and a kernel interface name), so the key can
// never name anything outside sessions/. strconv, not fmt: the hook calls
// this on every event, and a process's first fmt call sets up fmt's
// printer state (a third of the session_uid step in the hook's profile).
func SessionKey(id int, device string) string { return strconv.Itoa(id) + "-" + device }

func sessionPath(key string) (string, error) {
	if key == "" || strings.ContainsAny(key, "/\x00") || key == "." || key == ".." {
		return "", fmt.Errorf("bad session key %q", key)
	}
	return SessionsDir + "/" + key, nil
}

// LoadSession returns the session_uid stored under key.
func (s *Spool) LoadSession(key string) (string, bool, error) {
	p, err := sessionPath(key)
	if err != nil {
		return "", false, err
	}
	b, err := readFileAt(s.dirfd, p, 128)
	if errors.Is(err, unix.ENOENT) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read %s: %w", p, err)
	}
	uid, _, _ := strings.Cut(string(b), "\n")
	if len(uid) != 36 || !validToken(uid, 36) {
		return "", false, fmt.Errorf("read %s: not a session_uid", p)
	}
	return uid, true, nil
}

// StoreSession records uid under key, replacing what was there (ocserv
// reuses worker PIDs, so a connect always overwrites). It writes in place,
// not through a temporary file and a rename, and without O_TRUNC (a journal
// transaction on ext4): this is on every login's path, every uid has the
// same length, and a torn or stale file only fails LoadSession's check,
// which means a fresh session_uid, the same as a lost one.
func (s *Spool) StoreSession(key, uid string) error {
	p, err := sessionPath(key)
	if err != nil {
		return err
	}
	if len(uid) != 36 {
		return fmt.Errorf("write %s: session_uid %q is not a UUID", p, uid)
	}
	fd, _, err := openOrCreate(s.dirfd, p, unix.O_WRONLY, StateMode)
	if err == unix.ENOENT { // sessions/ itself is missing
		if err = mkdirAt(s.dirfd, SessionsDir); err == nil {
			fd, _, err = openOrCreate(s.dirfd, p, unix.O_WRONLY, StateMode)
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	defer unix.Close(fd)
	if _, err := unix.Pwrite(fd, []byte(uid+"\n"), 0); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// DropSession forgets key (at disconnect).
func (s *Spool) DropSession(key string) error {
	p, err := sessionPath(key)
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(s.dirfd, p, 0); err != nil && err != unix.ENOENT {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}
