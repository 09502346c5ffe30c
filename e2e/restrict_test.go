//go:build e2e

package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
)

// TestRestrictToRoutesWrapperAdmits: with restrict-user-to-routes, ocserv
// runs its ocserv-fw (/usr/bin/ocserv-fw in 1.1.6, /usr/libexec/ocserv-fw
// later), which builds its rules and then runs the configured script as
// `/bin/sh "$OCSERV_NEXT_SCRIPT"`. The documented
// install layout (a /bin/sh wrapper exec'ing the hook) must admit the user
// and record the session.
func TestRestrictToRoutesWrapperAdmits(t *testing.T) {
	testbed.RequireRoot(t)
	b := testbed.New(t, testbed.Options{RestrictToRoutes: true})

	c, err := b.Connect("bob", b.Password("bob"))
	if err != nil {
		t.Fatalf("restricted login through the wrapper failed: %v", err)
	}
	us, err := b.OcctlUsers()
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 1 || us[0].Username != "bob" {
		t.Fatalf("occtl show users: %+v, want bob alone", us)
	}
	o := us[0]

	evs := b.WaitEvents(testbed.Count(testbed.Match{Type: events.Connect, Username: "bob"}, 1), eventWait)
	ce := one(t, evs, testbed.Match{Type: events.Connect, Username: "bob"})
	checkSession(t, b, ce, c, o)
	if ce.Admitted == nil || !*ce.Admitted {
		t.Errorf("connect: admitted = %v, want true", ce.Admitted)
	}
	p := ce.Policy
	if p == nil {
		t.Fatalf("connect event has no policy")
	}
	if !p.RestrictToRoutes {
		t.Errorf("policy.restrict_to_routes = false; ocserv passed OCSERV_RESTRICT_TO_ROUTES=1")
	}
	// ocserv hands routes over as addr/dotted-netmask; the event holds
	// them as prefixes.
	if !slices.Equal(p.Routes, []string{"10.10.10.0/24"}) || !slices.Equal(p.NoRoutes, []string{"10.10.10.128/25"}) ||
		!slices.Equal(p.DNS, []string{testbed.PushedDNS}) {
		t.Errorf("policy = routes %q no_routes %q dns %q, want [10.10.10.0/24] [10.10.10.128/25] [%s]",
			p.Routes, p.NoRoutes, p.DNS, testbed.PushedDNS)
	}

	// The login really went through ocserv-fw (not straight to our
	// script): its chain for the device exists in the server namespace.
	rules, err := b.InServerNSRuleset()
	if err != nil {
		t.Fatal(err)
	}
	if mark := b.OcservFwMark(o.Device); !strings.Contains(rules, mark) {
		t.Errorf("no %q in the server namespace, so ocserv-fw did not run:\n%s", mark, rules)
	}

	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}
	evs = b.WaitEvents(testbed.Count(testbed.Match{Type: events.Disconnect, ID: o.ID}, 1), eventWait)
	de := one(t, evs, testbed.Match{Type: events.Disconnect, ID: o.ID})
	if de.SessionUID != ce.SessionUID {
		t.Errorf("disconnect session_uid %q, connect had %q", de.SessionUID, ce.SessionUID)
	}
	if de.Stats == nil {
		t.Errorf("disconnect through ocserv-fw has no stats")
	}
}

// TestRestrictToRoutesDirectBinaryRefused is the regression test for the
// install layout: the compiled hook configured directly as connect-script
// works in ocserv's normal mode, but with restrict-user-to-routes ocserv-fw
// runs it with /bin/sh, which cannot run an ELF binary, so every login
// fails and no connect is recorded. This is why the hook is installed
// behind a /bin/sh wrapper.
func TestRestrictToRoutesDirectBinaryRefused(t *testing.T) {
	testbed.RequireRoot(t)

	// Control: the very same direct wiring admits users without the
	// restriction, so the refusal below is caused by ocserv-fw's /bin/sh
	// and nothing else.
	t.Run("unrestricted admits", func(t *testing.T) {
		b := testbed.New(t, testbed.Options{HookDirect: true})
		if _, err := b.Connect("alice", b.Password("alice")); err != nil {
			t.Fatalf("direct hook without restriction: %v", err)
		}
		evs := b.WaitEvents(testbed.Count(testbed.Match{Type: events.Connect, Username: "alice"}, 1), eventWait)
		ce := one(t, evs, testbed.Match{Type: events.Connect, Username: "alice"})
		if ce.Admitted == nil || !*ce.Admitted {
			t.Errorf("connect: admitted = %v, want true", ce.Admitted)
		}
		if ce.ServerID != b.ServerID() {
			t.Errorf("server_id %q, want %q: the hook did not read the bed's agent.env", ce.ServerID, b.ServerID())
		}
	})

	t.Run("restricted refuses", func(t *testing.T) {
		b := testbed.New(t, testbed.Options{HookDirect: true, RestrictToRoutes: true})
		c, err := b.Connect("alice", b.Password("alice"))
		if err == nil {
			t.Fatalf("login succeeded with the compiled hook as connect-script under restrict-user-to-routes; ocserv-fw should have failed to run it with /bin/sh")
		}
		if c == nil || !c.Exited() {
			t.Fatalf("openconnect did not give up: %v", err)
		}
		// ocserv answers the login only after the connect script has
		// ended, so any event of this login is already in the spool.
		evs, err := b.Events()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range testbed.Filter(evs, testbed.Match{Type: events.Connect}) {
			if e.Admitted != nil && *e.Admitted {
				t.Errorf("a connect was recorded as admitted although the login failed:\n%s", testbed.Summarize(evs))
			}
		}
		us, err := b.OcctlUsers()
		if err != nil {
			t.Fatal(err)
		}
		if len(us) != 0 {
			t.Errorf("occtl lists sessions after the refused login: %+v", us)
		}
		// The password was accepted and the refusal came from /bin/sh
		// failing on the binary (dash names the file it could not parse).
		log := b.OcservLog()
		for _, want := range []string{"initiating session for user 'alice'", b.ScriptPath() + ": ", "failed cookie authentication attempt"} {
			if !strings.Contains(log, want) {
				t.Errorf("ocserv log lacks %q:\n%s", want, log)
			}
		}
	})
}
