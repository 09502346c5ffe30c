package hook

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/firewall"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/syncbuf"
)

// hangingBackend stands for a firewall whose every call hangs until the
// test ends (a stuck kernel or helper), ignoring its context.
type hangingBackend struct{ release chan struct{} }

func (h hangingBackend) Name() string { return "hanging" }
func (h hangingBackend) Apply(context.Context, string, firewall.Owner, *events.Policy) error {
	<-h.release
	return nil
}
func (h hangingBackend) RejectAll(context.Context, string, firewall.Owner) error {
	<-h.release
	return nil
}
func (h hangingBackend) Remove(context.Context, string, firewall.Owner) error {
	<-h.release
	return nil
}
func (h hangingBackend) Clear(context.Context, string) error { <-h.release; return nil }
func (h hangingBackend) RemoveAll(context.Context) error     { <-h.release; return nil }

// TestInvalidPolicyFailsClosedOnBudget: issue 11 defect 8. ocserv's
// restrict-user-to-ports = "tcp()" reaches the fw script as an entry that
// does not parse: the policy is invalid but does not look restricted (no
// port made it through). When the budget runs out while its fail-closed
// rules are going in, the login must be refused like a restricted
// user's, never admitted with no rules. The control: a user with nothing
// to enforce is admitted on the same path.
func TestInvalidPolicyFailsClosedOnBudget(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want int
	}{
		{"invalid, not restricted", map[string]string{"OCSERV_ALLOW_PORTS": "tcp "}, ExitRefuse},
		{"restricted", map[string]string{"OCSERV_RESTRICT_TO_ROUTES": "1", "OCSERV_ROUTES": "10.1.0.0/16 "}, ExitRefuse},
		{"nothing to enforce (control)", map[string]string{}, ExitAdmit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "agent.env")
			if err := os.WriteFile(cfg, []byte("SPOOL_DIR="+filepath.Join(dir, "spool")+
				"\nFIREWALL=on\nHOOK_BUDGET=150ms\nHOOK_FIREWALL_BUDGET=10s\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			env := map[string]string{"REASON": "connect", "ID": "77", "DEVICE": "vpns0", "USERNAME": "erin"}
			for k, v := range tc.env {
				env[k] = v
			}
			if p := events.FromEnv(events.Connect, env).Policy; tc.name == "invalid, not restricted" && (!p.Invalid || p.Restricted()) {
				t.Fatalf("fixture: policy %+v should be invalid and not restricted", p)
			}
			release := make(chan struct{})
			exited := make(chan int, 1)
			done := make(chan struct{})
			defer func() { close(release); <-done }()
			var stderr syncbuf.Buffer
			r := &Run{
				Args: []string{"--config", cfg, "--fw"}, Env: env, Stderr: &stderr, Start: time.Now(),
				Exit:    func(code int) { exited <- code },
				backend: func(string) (firewall.Backend, error) { return hangingBackend{release}, nil },
			}
			go func() { r.Main(); close(done) }()
			select {
			case code := <-exited:
				if code != tc.want {
					t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.want, stderr.String())
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the run did not end within 5 s of a 150 ms budget")
			}
			if tc.want == ExitRefuse && !strings.Contains(stderr.String(), "refusing the login rather than letting the user in unrestricted") {
				t.Errorf("the refusal did not come from the budget timer: %s", stderr.String())
			}
		})
	}
}
