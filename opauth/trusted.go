package opauth

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nkeys"
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
// disconnect, kick and unkick only; docs/policy.md). The file is read again whenever
// its size or modification time changes, so removing a key takes effect at
// the next command without a restart. A file that others may write is
// refused: it decides who may run commands as root.
type Trusted struct {
	path string

	mu    sync.Mutex
	mtime time.Time
	size  int64
	keys  map[string]TrustedKey
	err   error
}

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
// unreadable or invalid: then no key is trusted (fail closed).
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
	fi, err := os.Stat(t.path)
	if err != nil {
		t.keys, t.err = nil, fmt.Errorf("trusted keys file: %w", err)
		return t.err
	}
	if fi.ModTime().Equal(t.mtime) && fi.Size() == t.size && t.keys != nil {
		return nil
	}
	if fi.Mode().Perm()&0o022 != 0 {
		t.keys, t.err = nil, fmt.Errorf("trusted keys file %s is writable by group or others (mode %v); make it 0644 or stricter", t.path, fi.Mode().Perm())
		return t.err
	}
	b, err := os.ReadFile(t.path)
	if err != nil {
		t.keys, t.err = nil, fmt.Errorf("trusted keys file: %w", err)
		return t.err
	}
	keys, err := ParseTrusted(b)
	if err != nil {
		t.keys, t.err = nil, fmt.Errorf("trusted keys file %s: %w", t.path, err)
		return t.err
	}
	t.keys, t.err, t.mtime, t.size = keys, nil, fi.ModTime(), fi.Size()
	return nil
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
