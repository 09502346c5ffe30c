//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/syncbuf"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/bucket"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/mirror"
)

// policyAcctInterval is the shipper's accounting interval in these
// tests: a quota is enforced within one of them plus 5 s.
const policyAcctInterval = 2 * time.Second

// policyFleet is the whole product around real ocserv servers: one
// embedded NATS; per server a bed (ocserv, the hook with POLICY=on), the
// real bin/shipper and bin/commander; the real bin/ledger with its policy
// engine and its own key, trusted with the policy role by every
// commander; and bin/ctl with an operator key both trust read-write.
type policyFleet struct {
	t      *testing.T
	dir    string
	srv    *server.Server
	nc     *nats.Conn
	beds   []*testbed.Bed
	ledger *daemon
	ledCfg string
	ctlBin string
	ctlCfg string
	events *policyEvents
}

// daemon is one of our long-running binaries.
type daemon struct {
	name string
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{}
}

func startDaemon(t *testing.T, name string, argv ...string) *daemon {
	t.Helper()
	d := &daemon{name: name, cmd: exec.Command(argv[0], argv[1:]...), out: &syncbuf.Buffer{}, done: make(chan struct{})}
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("%s log:\n%s", name, d.out.String())
		}
	})
	return d
}

// stop sends SIGTERM and waits (SIGKILL after 20 s).
func (d *daemon) stop(t *testing.T) {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
}

// policyEvents keeps every event published by the servers (core
// subscription: arrival order, each publish).
type policyEvents struct {
	mu      sync.Mutex
	evs     []events.Event
	arrived map[string]time.Time // event_id → when the subscriber got it
}

// arrival is when the subscriber received the event (zero: not yet).
func (l *policyEvents) arrival(id string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.arrived[id]
}

func (l *policyEvents) all() []events.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]events.Event(nil), l.evs...)
}

func newPolicyFleet(t *testing.T, servers int, acct time.Duration) *policyFleet {
	t.Helper()
	testbed.RequireRoot(t)
	hook, err := testbed.HookBinary()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Dir(hook)
	f := &policyFleet{t: t, dir: t.TempDir(), srv: natstest.Run(t), ctlBin: filepath.Join(bin, "ctl"), events: &policyEvents{}}
	url := f.srv.ClientURL()
	if f.nc, err = nats.Connect(url); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.nc.Close)
	sub, err := f.nc.Subscribe("ocserv.events.>", func(m *nats.Msg) {
		var e events.Event
		if jsonUnmarshal(m.Data, &e) == nil {
			f.events.mu.Lock()
			f.events.evs = append(f.events.evs, e)
			if f.events.arrived == nil {
				f.events.arrived = map[string]time.Time{}
			}
			f.events.arrived[e.EventID] = time.Now()
			f.events.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })

	// The operator's key, made by ctl keygen; the ledger's policy key.
	f.ctlCfg = filepath.Join(f.dir, "ctl.env")
	opSeed := filepath.Join(f.dir, "operator.nk")
	write(t, f.ctlCfg, "NATS_URL="+url+"\nOPERATOR_KEY="+opSeed+"\nCTL_TIMEOUT=20s\n", 0o600)
	opLine := f.ctlOK("keygen", "--name", "e2e-operator")
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	polSeed := filepath.Join(f.dir, "ledger-policy.nk")
	write(t, polSeed, string(seed)+"\n", 0o600)
	trusted := filepath.Join(f.dir, "operators.keys")
	write(t, trusted, opLine+"policy "+pub+" ledger-policy\n", 0o644)

	for i := range servers {
		b := testbed.New(t, testbed.Options{VPNCScript: true, ServerID: fmt.Sprintf("pol%c-%d", 'a'+i, os.Getpid()%10000),
			AgentEnv: []string{"POLICY=on", "POLICY_MAX_AGE=5s"}})
		f.beds = append(f.beds, b)
		cfg := liveConfig(t, b, url, "ACCOUNTING_INTERVAL="+acct.String(),
			"CMD_TRUSTED_KEYS="+trusted, "CMD_XKEY_SEED="+filepath.Join(f.dir, b.ServerID()+".xkey"),
			"CMD_NONCE_FILE="+filepath.Join(f.dir, b.ServerID()+".nonces"), "CMD_OCPASSWD_FILE="+b.PasswdFile())
		startDaemon(t, "shipper "+b.ServerID(), filepath.Join(bin, "shipper"), "--config", cfg)
		startDaemon(t, "commander "+b.ServerID(), filepath.Join(bin, "commander"), "--config", cfg)
	}

	f.ledCfg = filepath.Join(f.dir, "ledger.env")
	write(t, f.ledCfg, strings.Join([]string{
		"NATS_URL=" + url, "LEDGER_DATABASE=" + filepath.Join(f.dir, "ledger.db"),
		"LEDGER_TRUSTED_KEYS=" + trusted, "LEDGER_NONCE_FILE=" + filepath.Join(f.dir, "ledger.nonces"),
		"LEDGER_POLICY=on", "LEDGER_POLICY_KEY=" + polSeed, "LEDGER_POLICY_HEARTBEAT=1s", "LEDGER_POLICY_NEWEST_HOLD=1m",
	}, "\n")+"\n", 0o600)
	if out, err := exec.Command(filepath.Join(bin, "ledger"), "migrate", "--config", f.ledCfg).CombinedOutput(); err != nil {
		t.Fatalf("ledger migrate: %v\n%s", err, out)
	}
	// The shippers make the events stream; the ledger consumes it.
	f.startLedger()
	for _, b := range f.beds {
		f.waitMirror(b, mirror.StateFresh)
	}
	return f
}

func (f *policyFleet) startLedger() {
	f.t.Helper()
	hook, _ := testbed.HookBinary()
	f.ledger = startDaemon(f.t, "ledger", filepath.Join(filepath.Dir(hook), "ledger"), "serve", "--config", f.ledCfg)
}

func write(t *testing.T, p, s string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, mode)
}

// waitMirror waits until the bed's verdicts mirror is in state.
func (f *policyFleet) waitMirror(b *testbed.Bed, state string) {
	f.t.Helper()
	waitCond(f.t, b.ServerID()+"'s mirror "+state, 60*time.Second, func() bool {
		return bucket.ReadReport(b.SpoolDir(), 5*time.Second, "admit", time.Now()).State == state
	})
}

// mirrorOf is user's verdict in the bed's mirror (nil: none).
func mirrorOf(b *testbed.Bed, user string) *mirror.Result {
	r := mirror.Lookup(b.SpoolDir(), user, time.Now(), time.Hour)
	return &r
}

func (f *policyFleet) ctl(args ...string) (string, string, int) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.ctlBin, append([]string{"--config", f.ctlCfg}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + f.dir}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		f.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func (f *policyFleet) ctlOK(args ...string) string {
	f.t.Helper()
	out, errs, code := f.ctl(args...)
	if code != 0 {
		f.t.Fatalf("ctl %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// connects are the bed's connect events of user, in order.
func connects(b *testbed.Bed, user string) []events.Event {
	evs, _ := b.Events()
	return testbed.Filter(evs, testbed.Match{Type: events.Connect, Username: user})
}

// refusedLogin asserts that the bed has a connect event of user after the
// first `before` ones, refused with a refusal starting with prefix (the
// hook ran and refused: not ocserv refusing on its own), and returns it.
func refusedLogin(t *testing.T, b *testbed.Bed, user string, before int, prefix string) events.Event {
	t.Helper()
	var last events.Event
	waitCond(t, user+"'s refused connect on "+b.ServerID(), eventWait, func() bool {
		cs := connects(b, user)
		if len(cs) <= before {
			return false
		}
		last = cs[len(cs)-1]
		return last.Admitted != nil && !*last.Admitted
	})
	if !strings.HasPrefix(last.Refusal, prefix) {
		t.Errorf("%s: refusal %q, want it to start with %q", b.ServerID(), last.Refusal, prefix)
	}
	return last
}

// gone waits until the client has exited and occtl no longer lists user
// on the bed, and returns when it noticed.
func gone(t *testing.T, b *testbed.Bed, c *testbed.Client, user string, within time.Duration) time.Time {
	t.Helper()
	var at time.Time
	waitCond(t, user+"'s session on "+b.ServerID()+" ended", within, func() bool {
		if !c.Exited() {
			return false
		}
		us, err := b.OcctlUsers()
		if err != nil {
			return false
		}
		for _, u := range us {
			if u.Username == user {
				return false
			}
		}
		at = time.Now()
		return true
	})
	return at
}
