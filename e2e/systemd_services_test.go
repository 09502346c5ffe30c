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
	"github.com/ocserv-telemetry/ocserv-telemetry/firewall"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/distro"
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
	// Each service's sandbox, seen from inside it: the commander writes
	// only the spool, its state and ocserv's per-user config; the ledger
	// only its own state directory (its SQLite database), not the host's
	// spool or configuration.
	h.checkSandbox(sandbox{unit: commanderUnit, bounding: capDACOverride | capNetAdmin | capNetRaw | capChown, exact: true,
		readOnly: sandboxReadOnly, writable: []string{instSpool, "/var/lib/ocserv-telemetry", "/etc/ocserv"}})
	h.checkSandbox(sandbox{unit: ledgerUnit,
		readOnly: append(sandboxReadOnly, "/etc/ocserv/ocserv-telemetry-probe", instSpool+"/probe", "/var/lib/ocserv-telemetry/probe"),
		writable: []string{"/var/lib/ocserv-telemetry-ledger"}})

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
	return c.input("", args...)
}

// input is run with stdin on ctl's standard input.
func (c *ctlRun) input(stdin string, args ...string) (string, string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, append([]string{"--config", c.cfg}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.t.TempDir()}
	cmd.Stdin = strings.NewReader(stdin)
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

// TestSystemdFirewallOn: install.sh --firewall=on on the container's real
// root, with the operator's restrict-user-to-routes set: the version is
// detected from the container's own ocserv and wired as that version
// needs (1.1.6, 1.3.0: its compiled-in fw script diverted with the real
// dpkg-divert; 1.5.0: OCSERV_FW_SCRIPT in a drop-in that the real
// systemd gives ocserv after the restart install.sh asks for). A real
// login is then admitted with the hook's rules in the container's
// network namespace and none of ocserv-fw's, the events say so, the
// disconnect removes the rules, and --uninstall gives Debian's fw script
// back: the tree as after the operator's edit.
func TestSystemdFirewallOn(t *testing.T) {
	testbed.RequireRoot(t)
	s := selectedSuite(t)
	t.Run(s.Suite, func(t *testing.T) { systemdFirewallOn(t, s) })
}

func systemdFirewallOn(t *testing.T, s sdSuite) {
	rel, err := distro.Selected()
	if err != nil {
		t.Fatal(err)
	}
	// A host whose operator restricts users has what the fw script of
	// Debian's ocserv runs: iptables (1.1.6's and 1.3.0's ocserv-fw) and
	// nftables (1.5.0's; priority "important", so on every real Debian
	// install but not in minbase). They are also what install.sh
	// --firewall=on would install, which it cannot here: the container
	// has no way to Debian's archive. And after --uninstall, Debian's
	// ocserv-fw, back in charge, must admit alice.
	h := newSDHost(t, s, "iptables", "nftables")
	// The operator's edit: restricted users (Debian's ocserv.conf has
	// routes and a no-route), then a restart.
	conf := h.hostPath(ocservConf)
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if hasActiveLine(string(data), "restrict-user-to-routes") {
		t.Fatalf("Debian's %s already sets restrict-user-to-routes", ocservConf)
	}
	if err := os.WriteFile(conf, append(data, "\n# The site: users reach only the routes.\nrestrict-user-to-routes = true\n"...), 0); err != nil {
		t.Fatal(err)
	}
	h.exec(30*time.Second, "systemctl", "restart", "ocserv.service")
	h.waitOcserv()
	before := sdManifest(t, h)

	out := h.exec(3*time.Minute, sdRelease+"/install.sh", "--bin-dir", sdRelease+"/bin", "--firewall=on")
	t.Logf("install.sh --firewall=on:\n%s", out)
	if !strings.Contains(out, "packages: nothing missing") {
		t.Errorf("install.sh wanted packages on a host that has them")
	}
	way := "ocserv " + rel.Version + " runs " + rel.FwScript + " and ignores OCSERV_FW_SCRIPT (read from /usr/sbin/ocserv)"
	if rel.FwScriptEnv {
		way = "ocserv " + rel.Version + " runs $OCSERV_FW_SCRIPT when set (read from /usr/sbin/ocserv)"
	}
	if !strings.Contains(out, way) {
		t.Errorf("install.sh did not detect ocserv %s and wire it as %q", rel.Version, way)
	}
	if rel.FwScriptEnv {
		// What install.sh tells the operator to do next.
		if !strings.Contains(out, "restart ocserv (systemctl restart ocserv;") {
			t.Errorf("install.sh does not ask for ocserv's restart the drop-in needs")
		}
		h.exec(30*time.Second, "systemctl", "restart", "ocserv.service")
		env := h.exec(10*time.Second, "systemctl", "show", "--property=Environment", "ocserv.service")
		if !strings.Contains(env, "OCSERV_FW_SCRIPT="+instFwSh) {
			t.Errorf("systemd gives ocserv no OCSERV_FW_SCRIPT=%s: %s", instFwSh, env)
		}
	} else {
		div := h.exec(10*time.Second, "dpkg-divert", "--list", rel.FwScript)
		if !strings.Contains(div, "local diversion of "+rel.FwScript+" to "+rel.FwScript+".distrib") {
			t.Errorf("dpkg-divert --list %s: %q", rel.FwScript, div)
		}
	}
	h.waitOcserv()
	h.setNATS()
	h.checkNotify()

	from := h.ev.count()
	alice, err := h.bed.Connect("alice", h.bed.Password("alice"))
	if err != nil {
		t.Fatalf("restricted login refused with --firewall=on: %v\n%s", err, h.m.Journal("ocserv.service"))
	}
	conn := h.ev.wait(t, "restricted login", from, events.Connect, "alice")
	if f := conn.Firewall; f == nil || f.Mode != "on" || f.Action != "applied" || f.Backend != firewall.KindNftables {
		t.Errorf("connect event: firewall %+v, want mode on, action applied by nftables (ocserv ran the hook as its fw script)", f)
	}
	if p := conn.Policy; p == nil || !p.RestrictToRoutes || len(p.Routes) == 0 {
		t.Errorf("connect event: policy %+v, want restricted to Debian's routes", p)
	}
	rs, err := h.bed.InServerNSRuleset()
	if err != nil {
		t.Fatal(err)
	}
	dev := conn.Session.Device
	if !strings.Contains(rs, firewall.TablePrefix+dev) && !strings.Contains(rs, ":"+firewall.ChainPrefix+dev+" ") {
		t.Errorf("no rules of ours for %s in the container's namespace:\n%s", dev, rs)
	}
	if testbed.HasOcservFw(rs) {
		t.Errorf("ocserv-fw's rules in the container's namespace although the hook is the fw script:\n%s", rs)
	}
	if err := alice.Disconnect(); err != nil {
		t.Fatal(err)
	}
	d := h.ev.wait(t, "restricted logout", from, events.Disconnect, "alice")
	if d.Firewall == nil || d.Firewall.Action != "removed" {
		t.Errorf("disconnect event: firewall %+v, want removed", d.Firewall)
	}
	if rs, err := h.bed.InServerNSRuleset(); err != nil || hasOurs(rs) {
		t.Errorf("rules of ours left after the disconnect (%v):\n%s", err, rs)
	}

	out = h.exec(3*time.Minute, sdRelease+"/install.sh", "--uninstall")
	t.Logf("install.sh --uninstall:\n%s", out)
	if div := h.exec(10*time.Second, "dpkg-divert", "--list"); strings.Contains(div, "ocserv-fw") {
		t.Errorf("a diversion of ocserv-fw left after --uninstall: %q", div)
	}
	if rel.FwScriptEnv {
		h.exec(30*time.Second, "systemctl", "restart", "ocserv.service")
	}
	h.checkRemoved(before, kept{"/var/lib/dpkg/diversions-old", "dpkg-divert's backup of its list, rewritten by every change"})
}
