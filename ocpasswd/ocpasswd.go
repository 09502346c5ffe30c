// Package ocpasswd manages ocserv's plain password file (auth =
// "plain[passwd=FILE]") through the real ocpasswd binary.
//
// Every change runs ocpasswd with an argv (never a shell) and a timeout;
// passwords go to its stdin and never to its argv, a log or an error. The
// one change ocpasswd cannot make without a password, moving a user to
// another group, is written by this package with ocpasswd's own protocol
// (see SetGroup).
//
// ocpasswd (1.1.6, and upstream since) rewrites the file as FILE.tmp and
// renames that over FILE; it refuses to start while FILE.tmp exists ("file
// is locked") and only stat()s it before opening it, so two ocpasswd runs
// can race. An ocpasswd killed between the two steps leaves a .tmp behind
// and every later run fails. The Passwd type therefore
//
//   - serialises its calls with a semaphore and an flock(2) (gofrs/flock) on a lock file of
//     its own (FILE.lock by default), so two calls from one service, or
//     two processes using this package, never overlap;
//   - before each run, removes a FILE.tmp older than StaleAfter that no
//     process holds open (it is a crashed run's leftover; the real file is
//     intact because the rename never happened), logging what it removed;
//     a younger or held one is waited for, up to the call's deadline.
//
// What ocpasswd itself does not check, this package does: lock, unlock,
// delete and passwd of an unknown user exit 0 in ocpasswd and are
// ErrNotFound here; add of an existing user silently replaces its password
// in ocpasswd and is ErrExists here; a password change without -g resets
// the user's group to none in ocpasswd and keeps it here; names with ':'
// or a newline corrupt the file in ocpasswd and are refused here.
//
// Facts checked against ocpasswd 1.1.6: lines are user:group:hash with "*"
// for no group; a locked entry has '!' right after the second ':' (before
// the hash), which unlock removes; with stdin not a terminal ocpasswd
// reads ONE line as the password (no confirmation); new files are 0600;
// lines without ':' (comments) are dropped by every rewrite.
package ocpasswd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gofrs/flock"
	"golang.org/x/sync/semaphore"
)

// Defaults of Passwd.
const (
	DefaultTimeout    = 10 * time.Second
	DefaultStaleAfter = 30 * time.Second
	// DefaultFile is ocpasswd's compiled-in password file.
	DefaultFile = "/etc/ocserv/ocpasswd"
	maxOutput   = 64 << 10
	maxFileSize = 64 << 20
)

// Errors to test with errors.Is (besides ErrInvalidArgument).
var (
	// ErrExists: Add of a user the file already has.
	ErrExists = errors.New("user exists")
	// ErrNotFound: the user is not in the file.
	ErrNotFound = errors.New("no such user")
	// ErrBusy: FILE.tmp is held by another process (an ocpasswd run
	// outside this package) past the call's deadline.
	ErrBusy = errors.New("password file is being rewritten by another process")
)

// Error is a failed operation: "ocpasswd add alice: user exists". Err is
// one of the Err* values (possibly wrapped) or a failure of ocpasswd or
// the file system; it never contains a password.
type Error struct {
	Op   string // add, passwd, delete, lock, unlock, group, list
	User string
	Err  error
}

func (e *Error) Error() string {
	if e.User == "" {
		return "ocpasswd " + e.Op + ": " + e.Err.Error()
	}
	return "ocpasswd " + e.Op + " " + e.User + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Entry is one line of the password file.
type Entry struct {
	User string
	// Groups is the group field split on commas; nil for "*" (no group).
	Groups []string
	// Locked: the hash starts with '!' (ocpasswd -l).
	Locked bool
}

// Group returns the group field as ocpasswd's -g takes it ("" for none).
func (e Entry) Group() string { return strings.Join(e.Groups, ",") }

// Passwd manages one password file. Set the fields before the first call
// and do not change them afterwards; the methods are safe for concurrent
// use and serialise with each other (and with other processes using this
// package on the same file).
type Passwd struct {
	// File is the password file (ocpasswd -c); "" means DefaultFile.
	File string
	// Binary is the ocpasswd executable; "" means "ocpasswd" from PATH.
	Binary string
	// LockFile is flock'ed around every call; "" means File + ".lock".
	LockFile string
	// Timeout bounds one call, waiting for the locks included; 0 means
	// DefaultTimeout. A context deadline that is earlier wins.
	Timeout time.Duration
	// StaleAfter: a FILE.tmp at least this old that no process holds
	// open is removed; 0 means DefaultStaleAfter.
	StaleAfter time.Duration
	// Logger receives the removal of stale .tmp files; nil means
	// slog.Default().
	Logger *slog.Logger

	semOnce sync.Once
	sem     *semaphore.Weighted // one call at a time in this process
}

func (p *Passwd) file() string {
	if p.File == "" {
		return DefaultFile
	}
	return p.File
}

func (p *Passwd) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

// List reads the file: every user in file order. A missing file is an
// empty list. Lines without ':' are skipped as ocpasswd does; a line with
// fewer than three fields is reported as an error (ocserv cannot use it).
func (p *Passwd) List(ctx context.Context) ([]Entry, error) {
	var out []Entry
	err := p.locked(ctx, "list", "", func(context.Context) error {
		var err error
		out, err = p.read()
		return err
	})
	return out, err
}

// Lookup returns user's entry; found is false when the file lacks it.
func (p *Passwd) Lookup(ctx context.Context, user string) (e Entry, found bool, err error) {
	if err := ValidUser(user); err != nil {
		return Entry{}, false, &Error{Op: "lookup", User: clip(user), Err: err}
	}
	err = p.locked(ctx, "lookup", user, func(context.Context) error {
		e, found, err = p.lookup(user)
		return err
	})
	return e, found, err
}

// Groups returns the distinct group names used in the file, in order of
// first appearance.
func (p *Passwd) Groups(ctx context.Context) ([]string, error) {
	es, err := p.List(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var gs []string
	for _, e := range es {
		for _, g := range e.Groups {
			if !seen[g] {
				seen[g] = true
				gs = append(gs, g)
			}
		}
	}
	return gs, nil
}

// Add creates user with password, in groups ("" for none, or
// "g1,g2"). A user the file already has is ErrExists (ocpasswd alone
// would replace the password).
func (p *Passwd) Add(ctx context.Context, user, groups, password string) error {
	if err := firstErr(ValidUser(user), ValidGroups(groups), ValidPassword(password)); err != nil {
		return &Error{Op: "add", User: clip(user), Err: err}
	}
	return p.locked(ctx, "add", user, func(ctx context.Context) error {
		if _, found, err := p.lookup(user); err != nil {
			return err
		} else if found {
			return ErrExists
		}
		return p.setPassword(ctx, user, groups, password)
	})
}

// SetPassword changes user's password and keeps its groups and its lock:
// ocpasswd writes the new hash unlocked, so a locked user is locked again
// right after (within the same file lock; the user cannot know the new
// password in between). An unknown user is ErrNotFound.
func (p *Passwd) SetPassword(ctx context.Context, user, password string) error {
	if err := firstErr(ValidUser(user), ValidPassword(password)); err != nil {
		return &Error{Op: "passwd", User: clip(user), Err: err}
	}
	return p.locked(ctx, "passwd", user, func(ctx context.Context) error {
		e, found, err := p.lookup(user)
		if err != nil {
			return err
		}
		if !found {
			return ErrNotFound
		}
		if err := p.setPassword(ctx, user, e.Group(), password); err != nil {
			return err
		}
		if e.Locked {
			return p.run(ctx, nil, "-l", user)
		}
		return nil
	})
}

// Delete removes user (ocpasswd -d); an unknown user is ErrNotFound.
func (p *Passwd) Delete(ctx context.Context, user string) error {
	return p.simple(ctx, "delete", "-d", user, func(e Entry, found bool) (bool, error) {
		if !found {
			return false, ErrNotFound
		}
		return true, nil
	})
}

// Lock stops user from logging in (ocpasswd -l). Locking a locked user
// does nothing; an unknown user is ErrNotFound. Sessions already up are
// not ended (that is occtl's job).
func (p *Passwd) Lock(ctx context.Context, user string) error {
	return p.simple(ctx, "lock", "-l", user, func(e Entry, found bool) (bool, error) {
		if !found {
			return false, ErrNotFound
		}
		return !e.Locked, nil
	})
}

// Unlock lets user log in again (ocpasswd -u). Unlocking an unlocked
// user does nothing; an unknown user is ErrNotFound.
func (p *Passwd) Unlock(ctx context.Context, user string) error {
	return p.simple(ctx, "unlock", "-u", user, func(e Entry, found bool) (bool, error) {
		if !found {
			return false, ErrNotFound
		}
		return e.Locked, nil
	})
}

// simple runs one of the password-less ocpasswd operations after check
// has decided, from the current entry, whether it is needed.
func (p *Passwd) simple(ctx context.Context, op, flag, user string, check func(Entry, bool) (bool, error)) error {
	if err := ValidUser(user); err != nil {
		return &Error{Op: op, User: clip(user), Err: err}
	}
	return p.locked(ctx, op, user, func(ctx context.Context) error {
		e, found, err := p.lookup(user)
		if err != nil {
			return err
		}
		need, err := check(e, found)
		if err != nil || !need {
			return err
		}
		if err := p.run(ctx, nil, flag, user); err != nil {
			return err
		}
		// ocpasswd exits 0 whatever it found: make sure it did it.
		after, found, err := p.lookup(user)
		if err != nil {
			return err
		}
		switch {
		case flag == "-d" && found,
			flag == "-l" && (!found || !after.Locked),
			flag == "-u" && (!found || after.Locked):
			return fmt.Errorf("ocpasswd %s exited 0 but the file does not show the change", flag)
		}
		return nil
	})
}

// setPassword runs ocpasswd [-g groups] user with the password on stdin.
func (p *Passwd) setPassword(ctx context.Context, user, groups, password string) error {
	args := []string{}
	if groups != "" {
		args = append(args, "-g", groups)
	}
	args = append(args, user)
	// Twice, as an interactive ocpasswd asks for it; from a pipe 1.1.6
	// reads only the first line.
	stdin := []byte(password + "\n" + password + "\n")
	defer clear(stdin)
	return p.run(ctx, stdin, args...)
}

// locked runs fn with the mutex and the flock held and a stale .tmp
// cleared, under the call's deadline, and wraps its error in *Error.
func (p *Passwd) locked(ctx context.Context, op, user string, fn func(context.Context) error) error {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wrap := func(err error) error {
		if err == nil {
			return nil
		}
		return &Error{Op: op, User: user, Err: err}
	}

	// This process's calls queue on a semaphore (waiting needs no
	// polling); then the file lock excludes other processes. The lock
	// file is a separate file so ocpasswd's rename never replaces it.
	p.semOnce.Do(func() { p.sem = semaphore.NewWeighted(1) })
	if err := p.sem.Acquire(ctx, 1); err != nil {
		return wrap(fmt.Errorf("waiting for another call: %w", context.Cause(ctx)))
	}
	defer p.sem.Release(1)

	lockPath := p.LockFile
	if lockPath == "" {
		lockPath = p.file() + ".lock"
	}
	fl := flock.New(lockPath, flock.SetFlag(os.O_CREATE|os.O_RDWR), flock.SetPermissions(0o600))
	// flock(2) has no timeout: gofrs/flock tries every 10ms until the
	// deadline. Another process holds this lock only for one ocpasswd run.
	locked, err := fl.TryLockContext(ctx, 10*time.Millisecond)
	if err != nil || !locked {
		if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			err = fmt.Errorf("held by another process: %w", context.Cause(ctx))
		}
		return wrap(fmt.Errorf("lock file %s: %w", lockPath, err))
	}
	defer fl.Close() // releases the lock

	if op != "list" && op != "lookup" {
		if err := p.clearStaleTmp(ctx); err != nil {
			return wrap(err)
		}
	}
	return wrap(fn(ctx))
}

// clearStaleTmp waits for FILE.tmp to go away, or removes it once it is
// stale: at least StaleAfter old and open in no process.
func (p *Passwd) clearStaleTmp(ctx context.Context) error {
	tmp := p.file() + ".tmp"
	stale := p.StaleAfter
	if stale <= 0 {
		stale = DefaultStaleAfter
	}
	for {
		fi, err := os.Lstat(tmp)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", tmp, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s exists and is not a regular file (%s); remove it by hand", tmp, fi.Mode().Type())
		}
		age := time.Since(fi.ModTime())
		var holders []string
		var herr error
		if age >= stale {
			// Only a .tmp old enough to be stale is worth a /proc scan.
			holders, herr = openedBy(tmp)
		}
		if age >= stale && herr == nil && len(holders) == 0 {
			if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("removing stale %s: %w", tmp, err)
			}
			p.logger().Warn("ocpasswd: removed a stale temporary file left by an interrupted ocpasswd run; the password file itself was not changed by that run",
				"tmp", tmp, "age", age.Round(time.Second).String(), "size", fi.Size(), "stale_after", stale.String())
			return nil
		}
		select {
		case <-ctx.Done():
			why := fmt.Sprintf("%s is %s old (stale after %s and when no process holds it)", tmp, age.Round(time.Millisecond), stale)
			if herr != nil {
				why = fmt.Sprintf("%s; cannot tell which processes hold it: %v", why, herr)
			} else if len(holders) > 0 {
				why = fmt.Sprintf("%s and open in process %s", why, strings.Join(holders, ", "))
			}
			return fmt.Errorf("%w: %s", ErrBusy, why)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// openedBy lists the PIDs of processes that have path open, from
// /proc/*/fd. Processes it may not inspect (EACCES without root) make it
// fail, so a .tmp is only ever judged unheld on complete information.
func openedBy(path string) ([]string, error) {
	want, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []string
	for _, d := range procs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		fdDir := filepath.Join("/proc", d.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue // exited meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fdDir, err)
		}
		for _, fd := range fds {
			fi, err := os.Stat(filepath.Join(fdDir, fd.Name()))
			if err == nil && os.SameFile(fi, want) {
				pids = append(pids, d.Name())
				break
			}
		}
	}
	return pids, nil
}

// run runs ocpasswd -c FILE args with stdin; a non-zero exit is an error
// with ocpasswd's message.
func (p *Passwd) run(ctx context.Context, stdin []byte, args ...string) error {
	bin := p.Binary
	if bin == "" {
		bin = "ocpasswd"
	}
	argv := append([]string{"-c", p.file()}, args...)
	cmd := exec.CommandContext(ctx, bin, argv...)
	cmd.WaitDelay = time.Second
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out limited
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	msg := strings.Join(strings.Fields(out.String()), " ")
	if stdin != nil {
		// ocpasswd never echoes the password; make sure of it anyway.
		if pw, _, ok := strings.Cut(string(stdin), "\n"); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "[redacted]")
		}
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("ocpasswd %s did not finish in time (killed): %w", args[0], context.Cause(ctx))
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if msg == "" {
			msg = "no output"
		}
		return fmt.Errorf("ocpasswd exited with %s: %s", ee.ProcessState, msg)
	}
	if err != nil {
		return fmt.Errorf("running ocpasswd: %w", err)
	}
	return nil
}

type limited struct{ bytes.Buffer }

func (l *limited) Write(b []byte) (int, error) {
	if room := maxOutput - l.Len(); room > 0 {
		l.Buffer.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}

// read parses the file.
func (p *Passwd) read() ([]Entry, error) {
	f, err := os.Open(p.file())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(io.LimitReader(f, maxFileSize))
}

// Parse reads a password file's content. Lines without ':' are skipped
// (ocpasswd ignores and drops them); a line with a user but fewer than
// three fields is an error.
func Parse(r io.Reader) ([]Entry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var es []Entry
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if !strings.Contains(line, ":") {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) < 3 {
			return nil, fmt.Errorf("line %d: %d fields, want user:group:hash", n, len(parts))
		}
		e := Entry{User: parts[0], Locked: strings.HasPrefix(parts[2], "!")}
		if g := parts[1]; g != "*" && g != "" {
			e.Groups = strings.Split(g, ",")
		}
		es = append(es, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return es, nil
}

func (p *Passwd) lookup(user string) (Entry, bool, error) {
	es, err := p.read()
	if err != nil {
		return Entry{}, false, err
	}
	for _, e := range es {
		if e.User == user {
			return e, true, nil
		}
	}
	return Entry{}, false, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
