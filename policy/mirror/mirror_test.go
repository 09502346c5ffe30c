package mirror

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
)

func open(t *testing.T) (string, *Mirror) {
	t.Helper()
	spool := t.TempDir()
	m, err := Open(spool)
	if err != nil {
		t.Fatal(err)
	}
	return spool, m
}

func TestPutLookupDelete(t *testing.T) {
	spool, m := open(t)
	now := time.Now()
	if r := Lookup(spool, "alice", now, time.Minute); r.State != StateMissing || r.Verdict != nil {
		t.Fatalf("never synced: %+v", r)
	}
	until := now.Add(time.Hour).UTC().Truncate(time.Second)
	v := policy.Verdict{V: 1, User: "alice", Reason: policy.ReasonQuota, Message: "used", Until: &until, Decided: now.UTC()}
	if err := m.Put(v); err != nil {
		t.Fatal(err)
	}
	if err := m.Touch(now.Add(-10*time.Second), now); err != nil {
		t.Fatal(err)
	}
	r := Lookup(spool, "alice", now, time.Minute)
	if r.State != StateFresh || r.Verdict == nil || !r.Verdict.Equal(&v) || r.Age < 9*time.Second || r.Age > 11*time.Second {
		t.Fatalf("lookup %+v", r)
	}
	if r := Lookup(spool, "bob", now, time.Minute); r.State != StateFresh || r.Verdict != nil {
		t.Fatalf("a user without an entry: %+v", r)
	}
	if r := Lookup(spool, "alice", now, 5*time.Second); r.State != StateStale {
		t.Fatalf("past its max age: %+v", r)
	}
	for _, p := range []string{"", FileName("alice"), FreshFile} {
		fi, err := os.Lstat(filepath.Join(m.Dir(), p))
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o640)
		if p == "" {
			want = 0o750 | os.ModeDir
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", filepath.Join(Dir, p), fi.Mode(), want)
		}
	}
	users, odd, err := m.Users()
	if err != nil || !slices.Equal(users, []string{"alice"}) || len(odd) != 0 {
		t.Fatalf("users %v odd %v %v", users, odd, err)
	}
	if err := m.Delete("alice"); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete("alice"); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
	if r := Lookup(spool, "alice", now, time.Minute); r.Verdict != nil {
		t.Fatalf("after delete: %+v", r)
	}
}

// A ledger clock ahead of the host must not stretch the mirror's
// freshness.
func TestTouchCappedAtNow(t *testing.T) {
	spool, m := open(t)
	now := time.Now()
	if err := m.Touch(now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	if r := Lookup(spool, "x", now.Add(2*time.Minute), time.Minute); r.State != StateStale {
		t.Fatalf("a stamp from the future must count from now: %+v", r)
	}
}

func TestDamagedEntries(t *testing.T) {
	spool, m := open(t)
	now := time.Now()
	m.Touch(now, now)
	p := filepath.Join(m.Dir(), FileName("alice"))
	cases := map[string]func(){
		"garbage":        func() { os.WriteFile(p, []byte("not json"), 0o640) },
		"another user's": func() { os.WriteFile(p, []byte(`{"v":1,"user":"bob","allowed":false}`), 0o640) },
		"group-writable": func() {
			m.Put(policy.Verdict{V: 1, User: "alice", Allowed: true})
			os.Chmod(p, 0o660)
		},
		"a symlink": func() {
			other := filepath.Join(t.TempDir(), "v")
			os.WriteFile(other, []byte(`{"v":1,"user":"alice","allowed":true}`), 0o640)
			os.Symlink(other, p)
		},
		"a FIFO (must not block)": func() { syscall.Mkfifo(p, 0o640) },
		"a directory":             func() { os.Mkdir(p, 0o750) },
	}
	for name, setup := range cases {
		t.Run(name, func(t *testing.T) {
			os.RemoveAll(p)
			setup()
			done := make(chan Result, 1)
			go func() { done <- Lookup(spool, "alice", now, time.Minute) }()
			select {
			case r := <-done:
				if r.State != StateDamaged || r.Err == nil || r.Verdict != nil {
					t.Fatalf("%+v, want damaged with an error", r)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Lookup blocked")
			}
		})
	}
	os.RemoveAll(p)
	os.WriteFile(filepath.Join(m.Dir(), ".tmp-123"), nil, 0o600)
	os.WriteFile(filepath.Join(m.Dir(), "zz-not-hex"), nil, 0o600)
	_, odd, _ := m.Users()
	slices.Sort(odd)
	if !slices.Equal(odd, []string{".tmp-123", "zz-not-hex"}) {
		t.Errorf("odd files %v", odd)
	}
}

func TestOpenRefusesAWritableDir(t *testing.T) {
	spool := t.TempDir()
	os.Mkdir(filepath.Join(spool, Dir), 0o777)
	os.Chmod(filepath.Join(spool, Dir), 0o777)
	if _, err := Open(spool); err == nil {
		t.Fatal("a mirror directory others can write must be refused")
	}
	// Any name ocserv can pass is a file name of hex inside the directory:
	// a path in it goes nowhere else.
	dir := t.TempDir()
	m := &Mirror{dir: dir}
	if err := m.Put(policy.Verdict{V: policy.VerdictVersion, User: "../../etc/passwd"}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 || ents[0].Name() != FileName("../../etc/passwd") || strings.ContainsAny(ents[0].Name(), "./") {
		t.Fatalf("mirror directory holds %v", ents)
	}
	if err := m.Put(policy.Verdict{V: policy.VerdictVersion, User: "a\nb"}); err == nil {
		t.Fatal("a user name with a control character must be refused")
	}
}
