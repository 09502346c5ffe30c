package opauth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/nats-io/nkeys"
	"golang.org/x/sys/unix"
)

// TrustedKey is one line of the trusted keys file.
type TrustedKey struct {
	Key  string `json:"key"`
	Role Role   `json:"role"`
	Name string `json:"name,omitempty"`
}

// Trusted is the trusted keys file, one key per line:
//
//	# role       public key                                                 name (optional)
//	read-write   UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4   alice@ops
//	read-only    UA6KOMQ67XOE3FHE37W4OXADVXVYISBNLTBUT2LSY5VFKAIJ7CRDR2RZ   grafana
//
// Roles: read-only (ro), read-write (rw), or policy (the ledger's key:
// disconnect, kick and unkick only; docs/policy.md). The file decides who may run
// commands as root, so whoever can change it is root in effect. It is
// trusted only when nobody else could have written it:
//   - the file itself, not a symbolic link, a regular file, owned by root
//     or by the service's own user, not writable by group or others;
//   - its directory owned by root or the service's user and not writable by
//     group or others (or someone could replace the file);
//   - every directory above it (as written and as resolved) owned by root
//     or the service's user, and writable by group or others only with the
//     sticky bit (as /tmp), which keeps others from renaming its entries.
//
// These are checked at every lookup, on the open file (no race between the
// check and the read). The file is parsed again whenever it changes
// (inode, size, modification or change time: a chmod or chown changes the
// last, which its owner cannot set back), so removing a key takes effect at
// the next command without a restart. Any failure trusts nobody, with an
// error naming the file and the reason.
type Trusted struct {
	path string

	mu   sync.Mutex
	id   fileID
	keys map[string]TrustedKey
	err  error
}

// fileID tells whether the file changed since it was parsed.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // ns
}

// maxTrustedFile bounds what is read: a line is under 100 bytes.
const maxTrustedFile = 1 << 20

// LoadTrusted reads path; a missing or bad file is an error here, so the
// service does not start with nobody able to reach it by mistake.
func LoadTrusted(path string) (*Trusted, error) {
	t := &Trusted{path: path}
	if err := t.refresh(); err != nil {
		return nil, err
	}
	return t, nil
}

// Lookup returns the key's entry. err is set when the file became
// unreadable, invalid or unsafe: then no key is trusted (fail closed).
func (t *Trusted) Lookup(key string) (TrustedKey, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.refreshLocked(); err != nil {
		return TrustedKey{}, false, err
	}
	k, ok := t.keys[key]
	return k, ok, nil
}

// Keys returns every trusted key.
func (t *Trusted) Keys() []TrustedKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]TrustedKey, 0, len(t.keys))
	for _, k := range t.keys {
		out = append(out, k)
	}
	return out
}

func (t *Trusted) refresh() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.refreshLocked()
}

func (t *Trusted) refreshLocked() error {
	keys, id, err := t.read()
	if err != nil {
		t.keys, t.err, t.id = nil, fmt.Errorf("trusted keys file %s: %w", t.path, err), fileID{}
		return t.err
	}
	if keys != nil {
		t.keys, t.id = keys, id
	}
	t.err = nil
	return nil
}

// read checks the file and its directories and parses the file when it
// changed since t.id; keys is nil when it did not.
func (t *Trusted) read() (map[string]TrustedKey, fileID, error) {
	if err := checkDirs(filepath.Dir(t.path)); err != nil {
		return nil, fileID{}, err
	}
	fd, err := unix.Open(t.path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err == unix.ELOOP {
		return nil, fileID{}, errors.New("is a symbolic link; point CMD_TRUSTED_KEYS at the file itself")
	}
	if err != nil {
		return nil, fileID{}, err
	}
	f := os.NewFile(uintptr(fd), t.path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fileID{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fileID{}, errors.New("is not a regular file")
	}
	if err := trustedOwner(st.Uid, "it is"); err != nil {
		return nil, fileID{}, err
	}
	if st.Mode&0o022 != 0 {
		return nil, fileID{}, fmt.Errorf("is writable by group or others (mode %v); make it 0644 or stricter", os.FileMode(st.Mode&0o777))
	}
	id := fileID{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
	if id == t.id && t.keys != nil {
		return nil, id, nil
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTrustedFile+1))
	if err != nil {
		return nil, fileID{}, err
	}
	if len(b) > maxTrustedFile {
		return nil, fileID{}, fmt.Errorf("larger than %d bytes", maxTrustedFile)
	}
	keys, err := ParseTrusted(b)
	if err != nil {
		return nil, fileID{}, err
	}
	return keys, id, nil
}

// trustedOwner accepts root and the service's own user.
func trustedOwner(uid uint32, what string) error {
	if uid == 0 || int(uid) == os.Geteuid() {
		return nil
	}
	return fmt.Errorf("%s owned by uid %d, neither root nor this service's user (uid %d), who could then grant itself any role; chown root", what, uid, os.Geteuid())
}

// checkDirs checks dir (strictly) and every directory above it, both as
// written and with symbolic links resolved.
func checkDirs(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("its directory: %w", err)
	}
	for _, chain := range []string{dir, real} {
		for d, strict := chain, true; ; d, strict = filepath.Dir(d), false {
			if err := checkDir(d, strict); err != nil {
				return err
			}
			if d == "/" || d == "." {
				break
			}
		}
	}
	return nil
}

func checkDir(d string, strict bool) error {
	var st unix.Stat_t
	if err := unix.Lstat(d, &st); err != nil {
		return fmt.Errorf("directory %s: %w", d, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return nil // its own directory, checked next, decides who can change it; its target is checked in the resolved chain
	}
	if err := trustedOwner(st.Uid, "directory "+d+" is"); err != nil {
		return err
	}
	if st.Mode&0o022 == 0 {
		return nil
	}
	if !strict && st.Mode&unix.S_ISVTX != 0 {
		return nil // sticky: others cannot rename or remove what is not theirs
	}
	what := "its directory"
	if !strict {
		what = "directory above it"
	}
	return fmt.Errorf("%s %s is writable by group or others (mode %v), so its files could be replaced; chmod go-w %s", what, d, os.FileMode(st.Mode&0o777), d)
}

// ParseTrusted reads the file's content. Any bad line fails the whole
// file: a typo must not silently drop or widen someone's access.
func ParseTrusted(b []byte) (map[string]TrustedKey, error) {
	keys := map[string]TrustedKey{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || len(f) > 3 {
			return nil, fmt.Errorf("line %d: want \"<role> <public key> [name]\"", n)
		}
		var role Role
		switch f[0] {
		case "read-only", "ro":
			role = ReadOnly
		case "read-write", "rw":
			role = ReadWrite
		case "policy":
			role = Policy
		default:
			return nil, fmt.Errorf("line %d: role %q is not read-only (ro), read-write (rw) or policy", n, f[0])
		}
		if !nkeys.IsValidPublicUserKey(f[1]) {
			return nil, fmt.Errorf("line %d: %q is not an nkeys user public key (U…; ctl keygen prints one)", n, f[1])
		}
		if _, dup := keys[f[1]]; dup {
			return nil, fmt.Errorf("line %d: key %s listed twice", n, f[1])
		}
		k := TrustedKey{Key: f[1], Role: role}
		if len(f) == 3 {
			k.Name = f[2]
		}
		keys[f[1]] = k
	}
	return keys, sc.Err()
}
