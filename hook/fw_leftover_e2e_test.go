//go:build e2e

package hook_test

import (
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/hooktest"
)

// With FIREWALL=on, ocserv runs the fw script only for restricted users;
// an unrestricted user's connect comes through the plain wrapper. Rules a
// missed disconnect left on that device name must go then, or they would
// restrict a user ocserv did not restrict. With FIREWALL=off the hook never
// touches rules (ocserv-fw, or nobody, owns them).
func TestFwLeftoversClearedForUnrestrictedUser(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			ns := newFwNS(t, "vpns4")
			sb := fwSandbox(t, backend)
			if r := ns.run(t, sb, restrictedEnv(t, "connect", ns.dev), nil, "--fw"); r.Code != 0 {
				t.Fatalf("restricted connect: exit %d: %s", r.Code, r.Stderr)
			}
			if ns.ours(t) == "" {
				t.Fatal("no rules after a restricted connect: nothing to leave behind")
			}
			// The disconnect is missed. A new, unrestricted user gets vpns4.
			plain := refEnv(t, "connect")
			plain["DEVICE"] = ns.dev
			plain["USERNAME"] = "dave"
			for _, k := range []string{"OCSERV_RESTRICT_TO_ROUTES", "OCSERV_ALLOW_PORTS", "OCSERV_DENY_PORTS"} {
				delete(plain, k)
			}
			off := hookSandboxOff(t, sb)
			if r := ns.run(t, off, plain, nil); r.Code != 0 {
				t.Fatalf("FIREWALL=off connect: exit %d: %s", r.Code, r.Stderr)
			}
			if ns.ours(t) == "" {
				t.Fatal("FIREWALL=off touched the rules")
			}
			r := ns.run(t, sb, plain, nil)
			if r.Code != 0 {
				t.Fatalf("unrestricted connect: exit %d: %s", r.Code, r.Stderr)
			}
			if left := ns.ours(t); left != "" {
				t.Errorf("leftover rules still on %s after an unrestricted connect:\n%s", ns.dev, left)
			}
			e := r.only(t)
			wantAdmitted(t, e, true)
			if e.Firewall == nil || e.Firewall.Action != "none" || e.Firewall.Backend != backend {
				t.Errorf("firewall = %+v, want action none with backend %s", e.Firewall, backend)
			}
		})
	}
}

// hookSandboxOff is a sandbox on the same spool with FIREWALL=off.
func hookSandboxOff(t *testing.T, on *hooktest.Sandbox) *hooktest.Sandbox {
	t.Helper()
	off := hooktest.NewSandbox(t, "FIREWALL=off\nSPOOL_DIR="+on.Spool+"\n")
	return off
}
