package console

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/sys/unix"
)

// Role is what a console account may do.
type Role string

const (
	// Viewer sees every page and acts on nothing.
	Viewer Role = "viewer"
	// Operator also disconnects, kicks and unkicks.
	Operator Role = "operator"
)

// CanAct reports whether the role may run actions.
func (r Role) CanAct() bool { return r == Operator }

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	switch Role(s) {
	case Viewer, Operator:
		return Role(s), nil
	}
	return "", fmt.Errorf("role %q is not viewer or operator", short(s))
}

// Account is one line of the accounts file.
type Account struct {
	Name string
	Role Role
	Hash string // argon2id in the PHC string format
}

// Argon2 parameters (RFC 9106's second recommended option, with the
// parallelism of a small machine). They travel inside each hash, so
// changing them here affects new passwords only.
type Argon2Params struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
}

// DefaultArgon2 costs about 100 ms and 64 MiB per check on a small server:
// slow for a guesser, fine for a person logging in. Concurrent checks are
// bounded (hashSlots) so a burst of logins cannot exhaust memory.
var DefaultArgon2 = Argon2Params{Memory: 64 * 1024, Time: 3, Threads: 2}

const (
	saltLen = 16
	keyLen  = 32
	// MinPassword is the shortest password accepted for a new account.
	MinPassword = 12
	maxPassword = 1024
)

// HashPassword returns the argon2id hash of pw with a fresh salt.
func HashPassword(pw string, p Argon2Params) (string, error) {
	if err := checkPassword(pw); err != nil {
		return "", err
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, keyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

func checkPassword(pw string) error {
	switch {
	case len(pw) < MinPassword:
		return fmt.Errorf("the password must be at least %d characters", MinPassword)
	case len(pw) > maxPassword:
		return fmt.Errorf("the password must be at most %d bytes", maxPassword)
	}
	return nil
}

// parseHash reads "$argon2id$v=19$m=…,t=…,p=…$salt$key".
func parseHash(h string) (Argon2Params, []byte, []byte, error) {
	var p Argon2Params
	f := strings.Split(h, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" {
		return p, nil, nil, errors.New("not an argon2id hash")
	}
	var v int
	if _, err := fmt.Sscanf(f[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, fmt.Errorf("argon2 version %q is not %d", f[2], argon2.Version)
	}
	if _, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return p, nil, nil, fmt.Errorf("argon2 parameters %q do not parse", f[3])
	}
	// Bounds, so a hand-edited file cannot make one login cost gigabytes.
	if p.Memory < 8 || p.Memory > 1<<20 || p.Time < 1 || p.Time > 16 || p.Threads < 1 || p.Threads > 16 {
		return p, nil, nil, fmt.Errorf("argon2 parameters %q are out of bounds", f[3])
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(f[4])
	key, err2 := b64.DecodeString(f[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(key) < 16 {
		return p, nil, nil, errors.New("argon2 salt or key is not base64 of a sane length")
	}
	return p, salt, key, nil
}

// CheckHash reports whether pw matches hash, in constant time.
func CheckHash(hash, pw string) bool {
	p, salt, key, err := parseHash(hash)
	if err != nil || len(pw) > maxPassword {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1
}

// ValidUsername accepts console account names: 1 to 64 bytes of letters,
// digits and . _ @ + -, not starting with '-' or '.'.
func ValidUsername(s string) error {
	if s == "" || len(s) > 64 {
		return errors.New("a user name is 1 to 64 characters")
	}
	if s[0] == '-' || s[0] == '.' {
		return errors.New("a user name must not start with '-' or '.'")
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._@+-", r)) {
			return fmt.Errorf("a user name has letters, digits and . _ @ + - only, not %q", r)
		}
	}
	return nil
}

// ParseAccounts reads the accounts file, one account per line:
//
//	# name   role      argon2id hash
//	admin    operator  $argon2id$v=19$m=65536,t=3,p=2$…$…
//
// Any bad line fails the whole file: a typo must not silently drop or
// widen someone's access.
func ParseAccounts(b []byte) (map[string]Account, error) {
	out := map[string]Account{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want \"<name> <role> <argon2id hash>\"", n)
		}
		if err := ValidUsername(f[0]); err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		role, err := ParseRole(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		if _, _, _, err := parseHash(f[2]); err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		if _, dup := out[f[0]]; dup {
			return nil, fmt.Errorf("line %d: user %s listed twice", n, f[0])
		}
		out[f[0]] = Account{Name: f[0], Role: role, Hash: f[2]}
	}
	return out, sc.Err()
}

// FormatAccounts writes accounts in the file's format, sorted by name.
func FormatAccounts(accts map[string]Account) []byte {
	names := make([]string, 0, len(accts))
	for n := range accts {
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	b.WriteString("# ocserv-telemetry console accounts: <name> <role: viewer|operator> <argon2id hash>\n")
	b.WriteString("# Managed with `ledger console-user add|passwd|delete`; read again when it changes.\n")
	for _, n := range names {
		a := accts[n]
		fmt.Fprintf(&b, "%s %s %s\n", a.Name, a.Role, a.Hash)
	}
	return b.Bytes()
}

// Accounts is the accounts file, read again whenever its size or
// modification time changes, so `ledger console-user` takes effect at the
// next request without a restart. A file others may read or write is
// refused: it holds password hashes.
type Accounts struct {
	path string

	mu    sync.Mutex
	mtime time.Time
	size  int64
	accts map[string]Account
	err   error
}

// LoadAccounts reads path; a missing or bad file is an error here, so the
// console does not start with nobody able to log in by mistake.
func LoadAccounts(path string) (*Accounts, error) {
	a := &Accounts{path: path}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.refreshLocked(); err != nil {
		return nil, err
	}
	return a, nil
}

// Lookup returns name's account. err is set when the file became
// unreadable or invalid: then nobody can log in (fail closed).
func (a *Accounts) Lookup(name string) (Account, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.refreshLocked(); err != nil {
		return Account{}, false, err
	}
	acct, ok := a.accts[name]
	return acct, ok, nil
}

func (a *Accounts) refreshLocked() error {
	fi, err := os.Stat(a.path)
	if err != nil {
		a.accts, a.err = nil, fmt.Errorf("console accounts file: %w", err)
		return a.err
	}
	if fi.ModTime().Equal(a.mtime) && fi.Size() == a.size && a.accts != nil {
		return nil
	}
	if fi.Mode().Perm()&0o037 != 0 {
		a.accts, a.err = nil, fmt.Errorf("console accounts file %s is readable by others or writable by its group (mode %v); make it 0600 or 0640", a.path, fi.Mode().Perm())
		return a.err
	}
	b, err := os.ReadFile(a.path)
	if err != nil {
		a.accts, a.err = nil, fmt.Errorf("console accounts file: %w", err)
		return a.err
	}
	accts, err := ParseAccounts(b)
	if err != nil {
		a.accts, a.err = nil, fmt.Errorf("console accounts file %s: %w", a.path, err)
		return a.err
	}
	a.accts, a.err, a.mtime, a.size = accts, nil, fi.ModTime(), fi.Size()
	return nil
}

// EditAccounts changes the accounts file under an exclusive lock (a lock
// file beside it): read (a missing file is empty), fn, then write to a
// temporary file in the same directory, sync, rename. The file is 0600.
func EditAccounts(path string, fn func(map[string]Account) error) error {
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR|unix.O_NOFOLLOW|os.O_SYNC, 0o600)
	if err != nil {
		return fmt.Errorf("lock accounts file: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock accounts file: %w", err)
	}
	accts := map[string]Account{}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read accounts file: %w", err)
	default:
		if accts, err = ParseAccounts(b); err != nil {
			return fmt.Errorf("accounts file %s: %w", path, err)
		}
	}
	if err := fn(accts); err != nil {
		return err
	}
	return writeFileAtomic(path, FormatAccounts(accts), 0o600)
}

// writeFileAtomic writes data to a temporary file beside path, syncs it,
// renames it over path and syncs the directory; the temporary file is
// removed on any error.
func writeFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func short(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
