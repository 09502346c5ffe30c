//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocpasswd"
	"github.com/ocserv-telemetry/ocserv-telemetry/userconf"
)

// TestOcpasswdUsersLogIn: a user added through package ocpasswd (the real
// ocpasswd on the bed's password file, while ocserv runs) logs in with a
// real openconnect; locked, the next login is refused; unlocked, it works
// again; deleted, it is refused.
func TestOcpasswdUsersLogIn(t *testing.T) {
	testbed.RequireRoot(t)
	b := testbed.New(t, testbed.Options{})
	bin, err := b.OcpasswdBinary()
	if err != nil {
		t.Fatal(err)
	}
	p := &ocpasswd.Passwd{File: b.PasswdFile(), Binary: bin, Timeout: 20 * time.Second}
	ctx := context.Background()
	const pw = "dave pw; $(not a shell) 4"

	// Control: before the add, dave cannot log in.
	refused(t, b, "dave", pw, "dave before being added")
	if err := p.Add(ctx, "dave", "staff", pw); err != nil {
		t.Fatal(err)
	}
	c, err := b.Connect("dave", pw)
	if err != nil {
		t.Fatalf("login of the added user: %v", err)
	}
	evs := b.WaitEvents(testbed.Count(testbed.Match{Type: events.Connect, Username: "dave"}, 1), eventWait)
	ce := one(t, evs, testbed.Match{Type: events.Connect, Username: "dave"})
	if ce.Session.Groupname != "staff" {
		t.Errorf("dave's group %q, want staff", ce.Session.Groupname)
	}
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}
	if err := p.Add(ctx, "dave", "", "other"); !errors.Is(err, ocpasswd.ErrExists) {
		t.Errorf("second add: %v", err)
	}
	// A wrong password is refused (the login above was really checked).
	refused(t, b, "dave", "wrong-password", "dave with a wrong password")

	if err := p.Lock(ctx, "dave"); err != nil {
		t.Fatal(err)
	}
	refused(t, b, "dave", pw, "a locked user")
	if err := p.Unlock(ctx, "dave"); err != nil {
		t.Fatal(err)
	}
	c, err = b.Connect("dave", pw)
	if err != nil {
		t.Fatalf("login after unlock: %v", err)
	}
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}

	const pw2 = "dave-second-pw"
	if err := p.SetPassword(ctx, "dave", pw2); err != nil {
		t.Fatal(err)
	}
	refused(t, b, "dave", pw, "dave with the old password after passwd")
	c, err = b.Connect("dave", pw2)
	if err != nil {
		t.Fatalf("login with the new password: %v", err)
	}
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}

	if err := p.Delete(ctx, "dave"); err != nil {
		t.Fatal(err)
	}
	refused(t, b, "dave", pw2, "a deleted user")
}

// refused asserts that a login fails, and fails at authentication
// (openconnect's "Login failed."), not for a reason of the bed.
func refused(t *testing.T, b *testbed.Bed, user, password, who string) {
	t.Helper()
	c, err := b.Connect(user, password, testbed.ConnectOptions{Timeout: 20 * time.Second})
	if err == nil {
		t.Errorf("%s logged in", who)
		return
	}
	if c == nil || !strings.Contains(c.Output(), "Login failed.") {
		t.Errorf("login of %s failed, but not at authentication: %v", who, err)
	}
}

// TestUserconfRouteAppliesAtNextLogin: a per-user route set through
// package userconf while ocserv runs is what the user gets at the next
// login (ocserv's sec-mod reads the file then; no reload), seen in the
// connect event's policy and in the routes openconnect received; an
// invalid value is refused before anything is written and the user's
// logins keep working.
func TestUserconfRouteAppliesAtNextLogin(t *testing.T) {
	testbed.RequireRoot(t)
	b := testbed.New(t, testbed.Options{PerUserDir: true})
	s := &userconf.Store{UserDir: b.PerUserDir(), BackupDir: filepath.Join(b.Dir(), "userconf-backup")}
	alice := testbed.Match{Type: events.Connect, Username: "alice"}

	login := func(n int) events.Event {
		t.Helper()
		c, err := b.Connect("alice", b.Password("alice"))
		if err != nil {
			t.Fatalf("login %d of alice: %v", n, err)
		}
		evs := b.WaitEvents(testbed.Count(alice, n), eventWait)
		ce := testbed.Filter(evs, alice)[n-1]
		if ce.Admitted == nil || !*ce.Admitted {
			t.Fatalf("login %d: not admitted", n)
		}
		if err := c.Disconnect(); err != nil {
			t.Fatal(err)
		}
		b.WaitEvents(testbed.Count(testbed.Match{Type: events.Disconnect, Username: "alice"}, n), eventWait)
		return ce
	}
	routes := func(e events.Event) []string {
		if e.Policy == nil {
			return nil
		}
		return e.Policy.Routes
	}

	// Before: the global route.
	if r := routes(login(1)); !slices.Equal(r, []string{"10.10.10.0/24"}) {
		t.Fatalf("routes before the change: %q, want the global [10.10.10.0/24]", r)
	}

	ch, err := s.Set(userconf.User, "alice", "route", []string{"192.168.77.0/24", "172.20.0.0/255.255.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	if !ch.Changed {
		t.Fatalf("Set reported no change")
	}
	// ocserv overrides the global routes with the per-user ones and hands
	// them to the script as prefixes.
	if r := routes(login(2)); !slices.Equal(r, []string{"192.168.77.0/24", "172.20.0.0/16"}) {
		t.Errorf("routes after the change: %q, want [192.168.77.0/24 172.20.0.0/16]", r)
	}

	// Invalid values: refused, the file unchanged byte for byte.
	path := filepath.Join(b.PerUserDir(), "alice")
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fiBefore, _ := os.Stat(path)
	for _, bad := range [][]string{
		{"192.168.77.0/33"},
		{"0.0.0.0/0"},
		{"192.168.77.0/24\nrestrict-user-to-routes = true"},
		{"192.168.77.0/24; echo"},
	} {
		if _, err := s.Set(userconf.User, "alice", "route", bad); !errors.Is(err, userconf.ErrInvalidValue) {
			t.Errorf("Set route %q: %v, want ErrInvalidValue", bad, err)
		}
	}
	if _, err := s.Set(userconf.User, "../ocserv.conf", "route", []string{"10.0.0.0/8"}); !errors.Is(err, userconf.ErrInvalidName) {
		t.Errorf("Set for ../ocserv.conf: %v", err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fiAfter, _ := os.Stat(path)
	if !bytes.Equal(before, after) || !fiAfter.ModTime().Equal(fiBefore.ModTime()) || !os.SameFile(fiBefore, fiAfter) {
		t.Errorf("refused values touched the file:\nbefore %q\nafter  %q", before, after)
	}
	if r := routes(login(3)); !slices.Equal(r, []string{"192.168.77.0/24", "172.20.0.0/16"}) {
		t.Errorf("routes after the refused changes: %q", r)
	}

	// Delete the key: back to the global route at the next login.
	if _, err := s.Delete(userconf.User, "alice", "route"); err != nil {
		t.Fatal(err)
	}
	if r := routes(login(4)); !slices.Equal(r, []string{"10.10.10.0/24"}) {
		t.Errorf("routes after deleting the key: %q, want the global one again", r)
	}
	if data, _ := os.ReadFile(path); strings.Contains(string(data), "route") {
		t.Errorf("route still in the file: %q", data)
	}
}

// TestUserconfGroupRouteAndBadFile: a per-group route set through
// userconf reaches a member of the group at the next login; and the
// premise of validating first: a per-user file with a value ocserv 1.1.6
// cannot parse (written by hand, around userconf) refuses that user's
// login, which userconf.Get reports as a problem of the file.
func TestUserconfGroupRouteAndBadFile(t *testing.T) {
	testbed.RequireRoot(t)
	b := testbed.New(t, testbed.Options{PerUserDir: true, PerGroupDir: true})
	s := &userconf.Store{UserDir: b.PerUserDir(), GroupDir: b.PerGroupDir(), BackupDir: filepath.Join(b.Dir(), "userconf-backup")}

	if _, err := s.Set(userconf.Group, "staff", "route", []string{"192.168.88.0/24"}); err != nil {
		t.Fatal(err)
	}
	c, err := b.Connect("bob", b.Password("bob"))
	if err != nil {
		t.Fatalf("bob (group staff): %v", err)
	}
	m := testbed.Match{Type: events.Connect, Username: "bob"}
	ce := one(t, b.WaitEvents(testbed.Count(m, 1), eventWait), m)
	if ce.Policy == nil || !slices.Equal(ce.Policy.Routes, []string{"192.168.88.0/24"}) {
		t.Errorf("bob's policy %+v, want routes [192.168.88.0/24] from the staff file", ce.Policy)
	}
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}

	// A value userconf refuses, written around it: ocserv refuses the login.
	bad := filepath.Join(b.PerUserDir(), "alice")
	if err := os.WriteFile(bad, []byte("route = 10.0.0.0/33\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	cfg, err := s.Get(userconf.User, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Entries) != 1 || cfg.Entries[0].Problem == "" {
		t.Errorf("Get does not report the bad value: %+v", cfg.Entries)
	}
	if _, err := b.Connect("alice", b.Password("alice"), testbed.ConnectOptions{Timeout: 20 * time.Second}); err == nil {
		t.Fatalf("alice logged in with an unparsable per-user file: the premise of validating first does not hold")
	}
	// Repaired through userconf, she logs in again (no reload).
	if _, err := s.Set(userconf.User, "alice", "route", []string{"10.0.0.0/8"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Connect("alice", b.Password("alice")); err != nil {
		t.Fatalf("alice after the repair: %v", err)
	}
}
