//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
	"github.com/ocserv-telemetry/ocserv-telemetry/kick"
)

// A kick must stick against a client that comes back with its session
// cookie, which `occtl disconnect` leaves valid (openconnect 9.01 exits on
// the server's BYE, but other clients reconnect with the cookie; SIGUSR2
// makes openconnect do exactly that). The hook runs on every connect,
// cookie resumptions included, so with the user on the kick list the
// resumption is refused; off the list, the user logs in again.
func TestKickSticksAcrossCookieReconnect(t *testing.T) {
	testbed.RequireRoot(t)
	b := testbed.New(t, testbed.Options{})
	isAlice := func(e events.Event) bool {
		return e.Type == events.Connect && e.Session != nil && e.Session.Username == "alice"
	}

	// Control: without a kick, a cookie resumption is admitted, no password.
	alice, err := b.Connect("alice", b.Password("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Roam(); err != nil {
		t.Fatal(err)
	}
	b.WaitEvents(testbed.Count(testbed.Match{Type: events.Connect, Username: "alice"}, 2), eventWait)
	if alice.PasswordPrompts() != 1 {
		t.Fatalf("the resumption asked for a password: %d prompts", alice.PasswordPrompts())
	}

	// Kicked: the next resumption is refused by the hook.
	if err := kick.Add(b.SpoolDir(), kick.Entry{User: "alice", Reason: "e2e", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := alice.Roam(); err == nil {
		t.Fatal("the kicked client resumed its session with the cookie")
	}
	evs := b.WaitEvents(func(evs []events.Event) bool {
		for _, e := range evs {
			if isAlice(e) && e.Admitted != nil && !*e.Admitted {
				return true
			}
		}
		return false
	}, eventWait)
	admitted := 0
	for _, e := range evs {
		if !isAlice(e) {
			continue
		}
		if *e.Admitted {
			admitted++
		} else if !strings.HasPrefix(e.Refusal, "kicked by an operator: e2e") {
			t.Errorf("refusal %q", e.Refusal)
		}
	}
	if admitted != 2 {
		t.Errorf("%d admitted connects for alice, want the 2 before the kick", admitted)
	}
	// The session stays gone whatever openconnect retries.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		users, err := b.OcctlUsers()
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range users {
			if u.Username == "alice" {
				t.Fatalf("alice is back in occtl's list (worker %d): the kick did not stick", u.ID)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	alice.Disconnect()

	// Unkicked: a fresh login works again.
	if ok, err := kick.Remove(b.SpoolDir(), "alice"); !ok || err != nil {
		t.Fatalf("unkick: %v, %v", ok, err)
	}
	again, err := b.Connect("alice", b.Password("alice"))
	if err != nil {
		t.Fatalf("login after unkick: %v", err)
	}
	again.Disconnect()
}
