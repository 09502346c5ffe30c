//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/api"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
)

// The two other services under a real systemd (docs/install.md, "Tested
// under a real systemd"): install.sh --commands --ledger on the
// container's real root, then, as the operator does, NATS_URL in
// agent.env, an operator key in operators.keys, and the units restarted.
// The command service is then driven for real with the host's bin/ctl over
// NATS (ctl users sees a real openconnect session through the unit's
// sandbox and ocserv's occtl socket; ctl kick ends it and the hook refuses
// the user's next login until ctl unkick), and the ledger, started by
// systemd as its own user, reaches READY=1 and answers signed queries
// (ctl history, ctl audit) with what the shipper delivered.
// --uninstall then leaves the tree as it was but for what it keeps by
// design. The container, and every service in it, goes when the test
// ends, also on failure (package nspawn).

const (
	commanderUnit = "ocserv-telemetry-commander.service"
	ledgerUnit    = "ocserv-telemetry-ledger.service"
	trustedKeys   = "/etc/ocserv-telemetry/operators.keys"
)

func TestSystemdCommandsAndLedger(t *testing.T) {
	testbed.RequireRoot(t)
	s := selectedSuite(t)
	t.Run(s.Suite, func(t *testing.T) { systemdCommandsAndLedger(t, s) })
}

func systemdCommandsAndLedger(t *testing.T, s sdSuite) {
	h := newSDHost(t, s)
	before := sdManifest(t, h)

	install := []string{sdRelease + "/install.sh", "--bin-dir", sdRelease + "/bin", "--commands", "--ledger"}
	out := h.exec(3*time.Minute, install...)
	t.Logf("install.sh --commands --ledger:\n%s", out)
	for _, u := range []string{shipperUnit, commanderUnit, ledgerUnit} {
		if st := strings.TrimSpace(h.exec(10*time.Second, "systemctl", "is-enabled", u)); st != "enabled" {
			t.Errorf("%s is %s after install.sh", u, st)
		}
	}

	// The operator's key, made on the operator's machine (the host), and
	// its line in the server's trusted keys file.
	c := newCtl(t, h.nats.ClientURL())
	line, _ := c.ok("keygen", "--name", "e2e-operator")
	f, err := os.OpenFile(h.hostPath(trustedKeys), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	h.setNATS()
	for _, u := range []string{commanderUnit, ledgerUnit} {
		if out, err := h.m.Systemctl("restart", u); err != nil {
			t.Fatalf("systemctl restart %s: %v\n%s\n%s", u, err, out, h.m.Journal(u))
		}
	}
	h.checkNotify()
	for _, u := range []string{commanderUnit, ledgerUnit} {
		h.checkNotifyService(u)
	}
	// The ledger runs as its own user, not root.
	if p, err := h.m.Show(ledgerUnit, "User"); err != nil || p["User"] != "ocserv-telemetry-ledger" {
		t.Errorf("%s: User=%q (%v), want ocserv-telemetry-ledger", ledgerUnit, p["User"], err)
	}

	// A real session: the command service sees it (occtl inside the
	// unit's sandbox), the ledger records it from the stream.
	from := h.ev.count()
	alice, err := h.bed.Connect("alice", h.bed.Password("alice"))
	if err != nil {
		t.Fatalf("login: %v\n%s", err, h.m.Journal("ocserv.service"))
	}
	conn := h.ev.wait(t, "login before ctl", from, events.Connect, "alice")
	if us := c.users(); !hasUser(us, "alice") {
		t.Fatalf("ctl users through %s does not show alice: %+v", commanderUnit, us)
	}
	c.waitHistory("alice's open session", func(ss []ledger.Session) bool {
		for _, x := range ss {
			if x.UID == conn.SessionUID && x.ServerID == sdServerID && x.EndedAt.IsZero() {
				return true
			}
		}
		return false
	})

	// ctl kick through the unit: the session ends, the client's cookie
	// reconnect and a fresh login are both refused by the hook.
	from = h.ev.count()
	c.ok("kick", "alice", "--server", sdServerID, "--reason", "e2e systemd kick", "--force")
	deadline := time.Now().Add(eventWait)
	for hasUser(c.users(), "alice") {
		if time.Now().After(deadline) {
			t.Fatal("alice still connected after ctl kick")
		}
		time.Sleep(200 * time.Millisecond)
	}
	h.ev.wait(t, "after ctl kick", from, events.Disconnect, "alice")
	if !alice.Exited() {
		if err := alice.Roam(); err == nil {
			t.Fatal("the kicked client resumed its session with its cookie")
		}
	}
	if cl, err := h.bed.Connect("alice", h.bed.Password("alice"), testbed.ConnectOptions{Timeout: 20 * time.Second}); err == nil {
		cl.Disconnect()
		t.Fatal("a kicked user logged in with the password")
	}
	refused := h.ev.wait(t, "login after ctl kick", from, events.Connect, "alice")
	if refused.Admitted == nil || *refused.Admitted || !strings.HasPrefix(refused.Refusal, "kicked by an operator: e2e systemd kick") {
		t.Errorf("connect after the kick: admitted=%v refusal=%q", refused.Admitted, refused.Refusal)
	}
	// The command service audited the kick through the spool; the
	// shipper delivered it; the ledger answers for it.
	a := c.waitAudit("the kick", func(e ledger.AuditEntry) bool { return e.Action == "kick" && e.OK })
	if a.KeyName != "e2e-operator" || a.Role != "read-write" {
		t.Errorf("the kick's audit entry names key %q role %q, want e2e-operator, read-write: %+v", a.KeyName, a.Role, a)
	}

	c.ok("unkick", "alice", "--server", sdServerID, "--force")
	h.loginShips("after ctl unkick")
	alice.Disconnect()

	out = h.exec(3*time.Minute, sdRelease+"/install.sh", "--uninstall")
	t.Logf("install.sh --uninstall:\n%s", out)
	for _, u := range []string{commanderUnit, ledgerUnit} {
		if out, err := h.m.Systemctl("cat", u); err == nil {
			t.Errorf("%s still known to systemd after --uninstall:\n%s", u, out)
		}
	}
	h.checkRemoved(before,
		kept{"/etc/ocserv-telemetry/operators.keys", "the operator's trusted keys are kept like agent.env"},
		kept{"/etc/ocserv-telemetry/ledger.env", "the ledger's configuration is kept (docs/install.md)"},
		kept{"/var/lib/ocserv-telemetry", "the command service's state (curve key operators seal to, nonce cache against replays) is kept; checkRemoved checks the install state under it is gone"},
		kept{"/var/lib/ocserv-telemetry-ledger", "the ledger's database: --uninstall never touches it (docs/install.md)"},
		kept{"/etc/passwd", "the ledger's system user stays (docs/install.md)"},
		kept{"/etc/group", "the ledger's system group stays"},
		kept{"/etc/shadow", "the ledger's system user stays"},
		kept{"/etc/gshadow", "the ledger's system group stays"},
		kept{"/etc/passwd-", "useradd's backup"},
		kept{"/etc/group-", "useradd's backup"},
		kept{"/etc/shadow-", "useradd's backup"},
		kept{"/etc/gshadow-", "useradd's backup"},
	)
}

// checkNotifyService: unit is a Type=notify service systemd saw READY=1
// from (it keeps such a service "activating" until then) and runs.
func (h *sdHost) checkNotifyService(unit string) {
	t := h.t
	t.Helper()
	p, err := h.m.WaitUnit(unit, 30*time.Second, func(p map[string]string) bool {
		return p["ActiveState"] == "active" && p["SubState"] == "running"
	}, "Type", "ActiveState", "SubState", "MainPID", "NRestarts", "StatusText")
	if err != nil {
		t.Fatalf("%v\n%s", err, h.m.Journal(unit))
	}
	if p["Type"] != "notify" {
		t.Errorf("%s: Type=%s, want notify", unit, p["Type"])
	}
	t.Logf("%s: %v", unit, p)
}

// ctlRun is the host's bin/ctl with an operator key of its own and the
// host's NATS server (which the container's services reach).
type ctlRun struct {
	t   *testing.T
	bin string
	cfg string
}

func newCtl(t *testing.T, natsURL string) *ctlRun {
	t.Helper()
	dir := t.TempDir()
	c := &ctlRun{t: t, bin: filepath.Join(repoRoot(t), "bin", "ctl"), cfg: filepath.Join(dir, "ctl.env")}
	env := "NATS_URL=" + natsURL + "\nOPERATOR_KEY=" + filepath.Join(dir, "operator.nk") + "\nCTL_TIMEOUT=20s\n"
	if err := os.WriteFile(c.cfg, []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// run runs ctl without a terminal, bounded, and returns stdout, stderr
// and the exit code.
func (c *ctlRun) run(args ...string) (string, string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, append([]string{"--config", c.cfg}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.t.TempDir()}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func (c *ctlRun) ok(args ...string) (string, string) {
	c.t.Helper()
	out, errs, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("ctl %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errs)
	}
	return out, errs
}

// users is ctl users --json for the container's server.
func (c *ctlRun) users() []ocserv.User {
	c.t.Helper()
	out, _ := c.ok("users", "--server", sdServerID, "--json")
	var g gathered
	if err := json.Unmarshal([]byte(out), &g); err != nil || len(g.Servers) != 1 || !g.Servers[0].OK {
		c.t.Fatalf("ctl users --json: %v\n%s", err, out)
	}
	var us []ocserv.User
	if err := json.Unmarshal(g.Servers[0].Result, &us); err != nil {
		c.t.Fatalf("ctl users --json result: %v\n%s", err, out)
	}
	return us
}

// waitHistory asks the ledger (ctl history --user alice --json) until
// cond holds of the sessions it returns; the ledger ingests the stream
// asynchronously, so the first answers may not have them yet.
func (c *ctlRun) waitHistory(what string, cond func([]ledger.Session) bool) {
	c.t.Helper()
	deadline := time.Now().Add(eventWait)
	for {
		out, _ := c.ok("history", "--user", "alice", "--json")
		var res api.HistoryResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			c.t.Fatalf("ctl history --json: %v\n%s", err, out)
		}
		if cond(res.Sessions) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the ledger's history has no %s within %s:\n%s", what, eventWait, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitAudit asks the ledger (ctl audit --json) until it lists an entry of
// this host for which cond holds, and returns it.
func (c *ctlRun) waitAudit(what string, cond func(ledger.AuditEntry) bool) ledger.AuditEntry {
	c.t.Helper()
	deadline := time.Now().Add(eventWait)
	for {
		out, _ := c.ok("audit", "--json")
		var res api.AuditResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			c.t.Fatalf("ctl audit --json: %v\n%s", err, out)
		}
		for _, e := range res.Entries {
			if e.ServerID == sdServerID && cond(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the ledger's audit has no %s within %s:\n%s", what, eventWait, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
