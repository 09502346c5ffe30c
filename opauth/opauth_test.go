package opauth

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

func TestParseTrusted(t *testing.T) {
	u, _ := nkeys.CreateUser()
	pub, _ := u.PublicKey()
	acc, _ := nkeys.CreateAccount()
	apub, _ := acc.PublicKey()
	good := "# comment\n\nrw " + pub + " alice@ops\n"
	keys, err := ParseTrusted([]byte(good))
	if err != nil || keys[pub].Role != ReadWrite || keys[pub].Name != "alice@ops" {
		t.Fatalf("%v %+v", err, keys)
	}
	for name, in := range map[string]string{
		"bad role":    "admin " + pub,
		"account key": "ro " + apub,
		"not a key":   "ro hello",
		"duplicate":   "ro " + pub + "\nrw " + pub,
		"extra field": "ro " + pub + " a b",
		"key only":    pub,
	} {
		if _, err := ParseTrusted([]byte(in)); err == nil || !strings.Contains(err.Error(), "line ") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestTrustedFileReloadAndMode(t *testing.T) {
	u, _ := nkeys.CreateUser()
	pub, _ := u.PublicKey()
	p := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(p, []byte("rw "+pub+"\n"), 0o644)
	tr, err := LoadTrusted(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := tr.Lookup(pub); !ok || err != nil {
		t.Fatalf("%v %v", ok, err)
	}
	// Removing the key takes effect without a restart.
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(p, []byte("# nobody\n"), 0o644)
	os.Chtimes(p, time.Now().Add(time.Second), time.Now().Add(time.Second))
	if _, ok, _ := tr.Lookup(pub); ok {
		t.Fatal("a removed key is still trusted")
	}
	// A file others may write trusts nobody.
	os.WriteFile(p, []byte("rw "+pub+"\n"), 0o644)
	os.Chmod(p, 0o666)
	os.Chtimes(p, time.Now().Add(2*time.Second), time.Now().Add(2*time.Second))
	if _, ok, err := tr.Lookup(pub); ok || err == nil || !strings.Contains(err.Error(), "writable") {
		t.Fatalf("world-writable file: %v %v", ok, err)
	}
}

func TestNonceCachePersistsExpiresAndBounds(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state", "nonces")
	now := time.Now()
	lim := NonceLimits{PerKey: 3, PerRole: 100}
	c, err := OpenNonceCache(p, lim, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Use("K", "n1", ReadWrite, now.Add(time.Minute), now); err != nil {
		t.Fatal(err)
	}
	if err := c.Use("K", "n2", ReadWrite, now.Add(time.Second), now); err != nil {
		t.Fatal(err)
	}
	if err := c.Use("K", "n1", ReadWrite, now.Add(time.Minute), now); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replay: %v", err)
	}
	if !c.Seen("K", "n1", now) || c.Seen("K", "n9", now) || c.Seen("K", "n2", now.Add(2*time.Second)) {
		t.Fatal("Seen disagrees with Use")
	}
	// One process owns the file: a second service on it is refused.
	if _, err := OpenNonceCache(p, lim, now); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second open of a held cache: %v", err)
	}
	c.Close()
	// Torn last line, as after a crash mid-write; and a line written
	// before roles were recorded (three fields).
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(strconv.FormatInt(now.Add(time.Minute).UnixMilli(), 10) + " OLD n0\n")
	f.WriteString("99999999999999 K tor")
	f.Close()

	later := now.Add(2 * time.Second) // n2 expired
	c, err = OpenNonceCache(p, lim, later)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Len() != 2 || c.KeyLen("K") != 1 || c.KeyLen("OLD") != 1 {
		t.Fatalf("%d live entries after reopen (K %d, OLD %d), want n1 and the old line", c.Len(), c.KeyLen("K"), c.KeyLen("OLD"))
	}
	if err := c.Use("K", "n1", ReadWrite, later.Add(time.Minute), later); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replay after restart: %v", err)
	}
	if err := c.Use("OLD", "n0", ReadWrite, later.Add(time.Minute), later); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replay of an entry in the old format: %v", err)
	}
	if err := c.Use("K", "n2", ReadWrite, later.Add(time.Minute), later); err != nil {
		t.Fatalf("an expired nonce is forgotten (its command can no longer pass the expiry check): %v", err)
	}
	c.Use("K", "n3", ReadWrite, later.Add(time.Minute), later)
	// K holds its quota of live entries: refuse rather than forget one;
	// another key is not affected.
	if err := c.Use("K", "n4", ReadWrite, later.Add(time.Minute), later); !errors.Is(err, ErrKeyQuota) {
		t.Fatalf("full key: %v", err)
	}
	if err := c.Use("L", "n4", ReadWrite, later.Add(time.Minute), later); err != nil {
		t.Fatalf("another key while K is full: %v", err)
	}
	if err := c.Use("K", "n4", ReadWrite, later.Add(2*time.Minute), later.Add(90*time.Second)); err != nil {
		t.Fatalf("after expiry frees room: %v", err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("nonce file mode %v", fi.Mode().Perm())
	}
}

// The read-only keys together cannot take the read-write keys' room.
func TestNonceCacheRolePools(t *testing.T) {
	now := time.Now()
	c, err := OpenNonceCache(filepath.Join(t.TempDir(), "nonces"), NonceLimits{PerKey: 1000, PerRole: 10}, now)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 10; i++ {
		if err := c.Use("RO"+strconv.Itoa(i%3), "n"+strconv.Itoa(i), ReadOnly, now.Add(time.Hour), now); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Use("RO9", "x", ReadOnly, now.Add(time.Hour), now); !errors.Is(err, ErrRoleQuota) {
		t.Fatalf("read-only pool full: %v", err)
	}
	for i := 0; i < 10; i++ {
		if err := c.Use("RW", "n"+strconv.Itoa(i), ReadWrite, now.Add(time.Hour), now); err != nil {
			t.Fatalf("read-write command %d with the read-only pool full: %v", i, err)
		}
	}
}

func TestSealOpen(t *testing.T) {
	srv, _ := nkeys.CreateCurveKeys()
	other, _ := nkeys.CreateCurveKeys()
	spub, _ := srv.PublicKey()
	args := map[string]string{"user": "dave"}
	if err := Seal(args, "password", "s3cret pass", spub); err != nil {
		t.Fatal(err)
	}
	for k, v := range args {
		if strings.Contains(v, "s3cret") {
			t.Fatalf("secret in clear in %s", k)
		}
	}
	pt, err := Open(srv, args, "password")
	if err != nil || string(pt) != "s3cret pass" {
		t.Fatalf("%q %v", pt, err)
	}
	if _, err := Open(other, args, "password"); err == nil {
		t.Fatal("opened with another server's key")
	}
	if _, err := Open(srv, map[string]string{"password": "x"}, "password"); err == nil || !strings.Contains(err.Error(), "never sent in clear") {
		t.Fatalf("clear password: %v", err)
	}
	if err := Seal(args, "other", "x", spub); err == nil {
		t.Fatal("two secrets sealed into one command")
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	u, _ := nkeys.CreateUser()
	pub, _ := u.PublicKey()
	dir := t.TempDir()
	kf := filepath.Join(dir, "keys")
	os.WriteFile(kf, []byte("ro "+pub+" me\n"), 0o600)
	tr, _ := LoadTrusted(kf)
	nc, _ := OpenNonceCache(filepath.Join(dir, "n"), NonceLimits{}, time.Now())
	defer nc.Close()
	v := &Verifier{Trusted: tr, Nonces: nc, MaxSkew: time.Second, MaxValidity: time.Minute}
	body, err := Sign(u, NewCommand("p.cmd.s.users", "users", nil, time.Now(), 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got, rerr := v.Verify("p.cmd.s.users", "users", ReadOnly, body)
	if rerr != nil || got.Key.Name != "me" || got.Cmd.Key != pub {
		t.Fatalf("%+v %v", got, rerr)
	}
	if _, rerr := v.Verify("p.cmd.s.users", "users", ReadOnly, body); rerr == nil || rerr.Code != CodeReplayed {
		t.Fatalf("replay: %v", rerr)
	}
	acc, _ := nkeys.CreateAccount()
	if _, err := Sign(acc, NewCommand("p.cmd.s.users", "users", nil, time.Now(), time.Second)); err == nil {
		t.Fatal("signed with an account key")
	}
}

func TestPolicyRole(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	keys, err := ParseTrusted([]byte("policy " + pub + " ledger\n"))
	if err != nil || keys[pub].Role != Policy {
		t.Fatalf("policy role line: %v %+v", err, keys[pub])
	}
	for _, tc := range []struct {
		action string
		need   Role
		want   bool
	}{
		{"disconnect", ReadWrite, true}, {"kick", ReadWrite, true}, {"unkick", ReadWrite, true},
		{"users", ReadOnly, false}, {"status", ReadOnly, false}, {"terminate", ReadWrite, false},
		{"user-password", ReadWrite, false}, {"reload", ReadWrite, false}, {"firewall-removeall", ReadWrite, false},
		// The ledger's own endpoints: its key cannot change or read a policy.
		{"policy-set", ReadWrite, false}, {"policy-reset", ReadWrite, false}, {"policy-delete", ReadWrite, false}, {"policy-get", ReadOnly, false},
	} {
		if got := Policy.Permits(tc.action, tc.need); got != tc.want {
			t.Errorf("policy role, %s: %v, want %v", tc.action, got, tc.want)
		}
	}
	if !ReadWrite.Permits("users", ReadOnly) || ReadOnly.Permits("kick", ReadWrite) || !ReadOnly.Permits("users", ReadOnly) {
		t.Error("the other roles must keep their rules")
	}
}

// The actor is signed: changing it after signing breaks the signature,
// and a malformed one is refused before the command runs.
func TestActorSignedAndChecked(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	dir := t.TempDir()
	trusted := filepath.Join(dir, "trusted")
	os.WriteFile(trusted, []byte("read-write "+pub+" console\n"), 0o644)
	tr, err := LoadTrusted(trusted)
	if err != nil {
		t.Fatal(err)
	}
	nonces, err := OpenNonceCache(filepath.Join(dir, "nonces"), NonceLimits{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer nonces.Close()
	v := &Verifier{Trusted: tr, Nonces: nonces, MaxSkew: time.Second, MaxValidity: time.Minute}
	sign := func(actor string) []byte {
		c := NewCommand("ocserv.cmd.vpn1.kick", "kick", map[string]string{"user": "alice"}, time.Now(), 30*time.Second)
		c.Actor = actor
		b, err := Sign(kp, c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	got, rerr := v.Verify("ocserv.cmd.vpn1.kick", "kick", ReadWrite, sign("olga"))
	if rerr != nil || got.Cmd.Actor != "olga" {
		t.Fatalf("verify: %v %+v", rerr, got.Cmd)
	}
	tampered := bytes.Replace(sign("olga"), []byte(`"actor":"olga"`), []byte(`"actor":"boss"`), 1)
	if _, rerr := v.Verify("ocserv.cmd.vpn1.kick", "kick", ReadWrite, tampered); rerr == nil || rerr.Code != CodeBadSignature {
		t.Fatalf("tampered actor: %v", rerr)
	}
	if _, rerr := v.Verify("ocserv.cmd.vpn1.kick", "kick", ReadWrite, sign("olga; rm -rf /")); rerr == nil || rerr.Code != CodeMalformed {
		t.Fatalf("malformed actor: %v", rerr)
	}
}
