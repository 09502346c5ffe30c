package natsperm

// The bed: the documented nats-server, the real hook and shipper binaries
// as processes, connections as the documented users that keep the
// permission violations the server reports to them.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/hooktest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/syncbuf"
)

var shipperBin, hookBin, ctlBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "natsperm-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		root, err := hooktest.Root()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if hookBin, err = hooktest.Build(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		shipperBin, ctlBin = filepath.Join(dir, "shipper"), filepath.Join(dir, "ctl")
		for bin, pkg := range map[string]string{shipperBin: "./cmd/shipper", ctlBin: "./cmd/ctl"} {
			cmd := exec.Command("go", "build", "-o", bin, pkg)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// startServer runs nats-server with exactly the block docs/nats.md gives
// operators.
func startServer(t *testing.T) *server.Server {
	t.Helper()
	return natstest.RunDocumented(t, "../../docs/nats.md")
}

// client is a connection as one documented user; viol keeps every
// permissions violation the server reported to it.
type client struct {
	nc   *nats.Conn
	mu   sync.Mutex
	viol []string
	seen chan struct{}
}

func connect(t *testing.T, s *server.Server, user, inbox string) *client {
	t.Helper()
	c := &client{seen: make(chan struct{}, 1)}
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(user, user+"-secret"), nats.CustomInboxPrefix(inbox),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			c.viol = append(c.viol, err.Error())
			c.mu.Unlock()
			select {
			case c.seen <- struct{}{}:
			default:
			}
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	c.nc = nc
	t.Cleanup(nc.Close)
	return c
}

func (c *client) violations() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.viol...)
}

// refused waits for the server's permissions violation naming subject
// (publish or subscription), reported after the action that caused it.
func (c *client) refused(t *testing.T, what, subject string) {
	t.Helper()
	want := `"` + subject + `"`
	deadline := time.After(10 * time.Second)
	for {
		for _, v := range c.violations() {
			if strings.Contains(v, "Permissions Violation") && strings.Contains(v, want) {
				return
			}
		}
		select {
		case <-c.seen:
		case <-deadline:
			t.Errorf("%s: no permissions violation for %s from the server (violations: %q)", what, subject, c.violations())
			return
		}
	}
}

// site is one VPN host: its agent.env (read by the hook and the shipper),
// its spool and a fake occtl answering from occtl 1.1.6's real output.
type site struct {
	t        *testing.T
	srv      *server.Server
	dir      string
	cfg      string
	serverID string
	occtl    string
	opPub    string // the operator key its command service trusts
}

func newSite(t *testing.T, s *server.Server, serverID, user string, extra ...string) *site {
	t.Helper()
	dir := t.TempDir()
	st := &site{t: t, srv: s, dir: dir, cfg: filepath.Join(dir, "agent.env"), serverID: serverID}
	occtl := fakeOcctl(t, filepath.Join(dir, "occtl"))
	st.occtl = occtl
	lines := []string{
		"SERVER_ID=" + serverID,
		"SPOOL_DIR=" + filepath.Join(dir, "spool"),
		"SPOOL_FSYNC=off",
		"HOOK_BUDGET=10s",
		"NATS_URL=" + s.ClientURL(),
		"NATS_USER=" + user,
		"NATS_PASSWORD=" + user + "-secret",
		"NATS_INBOX_PREFIX=_INBOX_" + user,
		"NATS_CREATE_STREAMS=off",
		"CMD_OCCTL=" + occtl,
		"SNAPSHOT_INTERVAL=1s",
		"SHIPPER_STATUS_INTERVAL=200ms",
	}
	for _, e := range extra { // an extra line replaces the default of its key
		k, _, _ := strings.Cut(e, "=")
		lines = slices.DeleteFunc(lines, func(l string) bool { return strings.HasPrefix(l, k+"=") })
		lines = append(lines, e)
	}
	if err := os.WriteFile(st.cfg, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return st
}

// fakeOcctl answers like occtl 1.1.6 from the fixtures of its real JSON
// output (two users, alice and bob, one status, bans).
func fakeOcctl(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fx := filepath.Join("..", "..", "testdata", "occtl-1.1.6-json")
	for _, f := range []string{"show-users.json", "show-status.json", "show-ip-bans.json", "show-ip-ban-points.json"} {
		b, err := os.ReadFile(filepath.Join(fx, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script := `#!/bin/sh
d='` + dir + `'
while [ "$1" = "-s" ] || [ "$1" = "-j" ]; do
	[ "$1" = "-s" ] && shift
	shift
done
if [ "$1" = "--version" ]; then echo "OpenConnect server control (occtl) version 1.1.6"; exit 0; fi
f="$d/$(echo "$*" | tr ' ' '-').json"
if [ -e "$f" ]; then cat "$f"; else echo "[ ]"; exit 2; fi
`
	path := filepath.Join(dir, "occtl")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// hook runs bin/hook once as ocserv would, with this site's config.
func (st *site) hook(reason, user string, id int) {
	st.t.Helper()
	env := []string{
		"REASON=" + reason, "USERNAME=" + user, "ID=" + fmt.Sprint(id), "DEVICE=vpns" + fmt.Sprint(id%100),
		"IP_REAL=192.0.2." + fmt.Sprint(id%250+1), "IP_REMOTE=10.8.0." + fmt.Sprint(id%250+1), "IP_LOCAL=10.8.0.254", "VHOST=default",
		"OCSERV_TELEMETRY_CONFIG=" + st.cfg, "PATH=/usr/bin:/bin",
	}
	if reason == "disconnect" {
		env = append(env, "STATS_BYTES_IN=1000", "STATS_BYTES_OUT=2000", "STATS_DURATION=60")
	}
	cmd := exec.Command(hookBin)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		st.t.Fatalf("hook %s %s: %v: %s", reason, user, err, out)
	}
}

// proc is a running bin/shipper.
type proc struct {
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{}
}

func (st *site) ship() *proc {
	st.t.Helper()
	p := &proc{out: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(shipperBin, "--config", st.cfg, "--drain-timeout", "3s")
	p.cmd.Env = []string{"PATH=/usr/bin:/bin"}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		st.t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	st.t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if st.t.Failed() {
			st.t.Logf("shipper %s output:\n%s", st.serverID, p.out.String())
		}
	})
	return p
}

// stop ends the shipper as systemd does (SIGTERM, drain) and waits.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the shipper did not stop within 20s of SIGTERM")
	}
}

// ctl runs bin/ctl with cfg (an operator's ctl.env) and returns its
// standard output, failing the test on a non-zero exit.
func ctl(t *testing.T, cfg string, args ...string) string {
	t.Helper()
	cmd := exec.Command(ctlBin, append([]string{"--config", cfg}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("ctl %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tctx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
