//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
	"github.com/ocserv-telemetry/ocserv-telemetry/livestate"
)

const liveWait = 30 * time.Second

// liveConfig writes a shipper configuration for the bed: its agent.env
// plus NATS, one-second snapshots, two-second accounting, the bed's occtl
// (through a wrapper that enters the server namespace) and extra lines.
func liveConfig(t *testing.T, b *testbed.Bed, natsURL string, extra ...string) string {
	t.Helper()
	base, err := os.ReadFile(b.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	wrapper, err := b.OcctlWrapper()
	if err != nil {
		t.Fatal(err)
	}
	lines := []string{
		"NATS_URL=" + natsURL,
		"SNAPSHOT_INTERVAL=1s",
		"ACCOUNTING_INTERVAL=2s",
		"SHIPPER_STATUS_INTERVAL=300ms",
		"CMD_OCCTL=" + wrapper,
		"CMD_OCCTL_SOCKET=" + b.OcctlSocket(),
	}
	body := string(base) + "\n" + strings.Join(append(lines, extra...), "\n") + "\n"
	p := filepath.Join(t.TempDir(), "shipper.env")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func startShipperConfig(t *testing.T, cfg string) *shipperProc {
	t.Helper()
	hook, err := testbed.HookBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(filepath.Dir(hook), "shipper"), "--config", cfg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &shipperProc{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start shipper: %v", err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("shipper (%s) log:\n%s", cfg, p.stderr.String())
		}
	})
	return p
}

// stopClean sends SIGTERM (the claim is released, the state saved) and
// waits for the exit.
func (p *shipperProc) stopClean(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("shipper did not stop within 15s of SIGTERM")
	}
}

// liveStatus reads live_state from a spool's status.json.
func liveStatus(t *testing.T, spoolDir string) (livestate.Status, bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(spoolDir, "status.json"))
	if err != nil {
		return livestate.Status{}, false
	}
	var st struct {
		Live *livestate.Status `json:"live_state"`
	}
	if json.Unmarshal(b, &st) != nil || st.Live == nil {
		return livestate.Status{}, false
	}
	return *st.Live, true
}

// collector keeps every event published on the server's subjects, in
// arrival order, duplicates included: the spool loses delivered events, and
// a core subscriber sees every publish (JetStream's de-duplication hides
// repeats from the stream, not from it).
type collector struct {
	mu  sync.Mutex
	evs []events.Event
}

func collect(t *testing.T, nc *nats.Conn, serverID string) *collector {
	t.Helper()
	c := &collector{}
	sub, err := nc.Subscribe("ocserv.events."+serverID+".>", func(m *nats.Msg) {
		var e events.Event
		if json.Unmarshal(m.Data, &e) == nil {
			c.mu.Lock()
			c.evs = append(c.evs, e)
			c.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return c
}

func (c *collector) all() []events.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]events.Event(nil), c.evs...)
}

func (c *collector) wait(t *testing.T, what string, pred func([]events.Event) bool) []events.Event {
	t.Helper()
	var evs []events.Event
	waitCond(t, what, liveWait, func() bool { evs = c.all(); return pred(evs) })
	return evs
}

func waitCond(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func payload[T any](t *testing.T, raw *json.RawMessage) T {
	t.Helper()
	var v T
	if raw == nil {
		t.Fatal("event without its payload")
	}
	if err := json.Unmarshal(*raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func reconcileEvents(t *testing.T, evs []events.Event, action string, user string) []events.Event {
	var out []events.Event
	for _, e := range evs {
		if e.Type != events.Reconcile {
			continue
		}
		r := payload[livestate.Reconcile](t, e.Reconcile)
		if r.Action == action && (user == "" || e.Session != nil && e.Session.Username == user) {
			out = append(out, e)
		}
	}
	return out
}

// The live state against a real ocserv 1.1.6 and real openconnect clients:
// snapshots list the clients with their tunnel addresses; a client that
// sends traffic gets accounting events with growing counts; a session
// that started before the shipper, without a hook record, is reconciled
// exactly once, also across a shipper restart, and its disconnect carries
// the reconciled session_uid; a roaming client's workers are joined;
// stopping ocserv shows in the status and recovers when it returns.
func TestLiveStateWithRealOcserv(t *testing.T) {
	testbed.RequireRoot(t)
	srv := natstest.Run(t)
	b := testbed.New(t, testbed.Options{})

	alice, err := b.Connect("alice", b.Password("alice"), testbed.ConnectOptions{VPNCScript: true})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := b.Connect("bob", b.Password("bob"))
	if err != nil {
		t.Fatal(err)
	}
	evs := b.WaitEvents(testbed.Count(testbed.Match{Type: events.Connect}, 2), eventWait)
	aliceConnect := testbed.Filter(evs, testbed.Match{Type: events.Connect, Username: "alice"})[0]
	bobConnect := testbed.Filter(evs, testbed.Match{Type: events.Connect, Username: "bob"})[0]
	// Alice's session started before the agent knew of it: no hook record.
	aliceKey := filepath.Join(b.SpoolDir(), "sessions", strconv.Itoa(aliceConnect.Session.ID)+"-"+aliceConnect.Session.Device)
	if err := os.Remove(aliceKey); err != nil {
		t.Fatalf("remove alice's hook record: %v", err)
	}

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	col := collect(t, nc, b.ServerID())

	cfg := liveConfig(t, b, srv.ClientURL(), "METRICS_LISTEN=127.0.0.1:0")
	sh := startShipperConfig(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Snapshots: the bucket's latest users list both clients with the
	// tunnel addresses openconnect configured.
	var kv jetstream.KeyValue
	var users livestate.Snapshot
	waitCond(t, "a users snapshot with both clients", liveWait, func() bool {
		if kv == nil {
			if kv, err = js.KeyValue(ctx, "ocserv_state"); err != nil {
				kv = nil
				return false
			}
		}
		users, err = livestate.ReadLatest(ctx, kv, b.ServerID(), livestate.KindUsers)
		return err == nil && len(users.Items) == 2
	})
	occ, err := b.OcctlUsers()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, u := range occ {
		want[u.Username] = u.IPv4
	}
	for _, it := range users.Items {
		var u livestate.UserItem
		json.Unmarshal(it, &u)
		if u.IPv4 == "" || u.IPv4 != want[u.Username] {
			t.Errorf("snapshot %s has tunnel IP %q, occtl says %q", u.Username, u.IPv4, want[u.Username])
		}
		if u.Username == "alice" && u.IPv4 != alice.TunnelIP() {
			t.Errorf("alice's snapshot IP %s, openconnect configured %s", u.IPv4, alice.TunnelIP())
		}
		if u.Username == "bob" && u.SessionUID != bobConnect.SessionUID {
			t.Errorf("bob's snapshot links session_uid %q, his connect event has %s", u.SessionUID, bobConnect.SessionUID)
		}
	}
	stream, err := js.Stream(ctx, "OCSERV_SNAPSHOTS")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.GetLastMsgForSubject(ctx, "ocserv.snapshots."+b.ServerID()+".users"); err != nil {
		t.Errorf("no message on the users snapshot subject: %v", err)
	}

	// Alice is reconciled ("seen") once; bob, recorded by the hook, not.
	evs = col.wait(t, "alice's reconcile", func(evs []events.Event) bool { return len(reconcileEvents(t, evs, livestate.ActionSeen, "alice")) >= 1 })
	seen := reconcileEvents(t, evs, livestate.ActionSeen, "alice")[0]
	if n := len(reconcileEvents(t, evs, "", "bob")); n != 0 {
		t.Errorf("bob (recorded by the hook) reconciled %d times", n)
	}

	// Accounting with growing counts while alice sends traffic.
	if err := alice.SendTraffic(300_000); err != nil {
		t.Fatal(err)
	}
	acct := func(evs []events.Event) []livestate.Accounting {
		var out []livestate.Accounting
		for _, e := range evs {
			if e.Type == events.Accounting && e.SessionUID == seen.SessionUID {
				out = append(out, payload[livestate.Accounting](t, e.Accounting))
			}
		}
		return out
	}
	evs = col.wait(t, "accounting with alice's traffic", func(evs []events.Event) bool {
		a := acct(evs)
		return len(a) >= 2 && a[len(a)-1].BytesIn >= 300_000
	})
	if err := alice.SendTraffic(200_000); err != nil {
		t.Fatal(err)
	}
	prevIn := acct(evs)[len(acct(evs))-1].BytesIn
	evs = col.wait(t, "accounting with more of alice's traffic", func(evs []events.Event) bool {
		a := acct(evs)
		return a[len(a)-1].BytesIn >= prevIn+200_000
	})
	as := acct(evs)
	for i := 1; i < len(as); i++ {
		if as[i].BytesIn < as[i-1].BytesIn || as[i].Interim != as[i-1].Interim+1 {
			t.Errorf("accounting %d after %d: bytes_in %d after %d, interim %d after %d", i, i-1, as[i].BytesIn, as[i-1].BytesIn, as[i].Interim, as[i-1].Interim)
		}
		if as[i].DeltaIn != as[i].BytesIn-as[i-1].BytesIn {
			t.Errorf("accounting %d: delta_in %d, totals %d → %d", i, as[i].DeltaIn, as[i-1].BytesIn, as[i].BytesIn)
		}
	}

	// A restart re-emits nothing: still one reconcile for alice.
	sh.stopClean(t)
	sh2 := startShipperConfig(t, cfg)
	waitCond(t, "five readings by the restarted shipper, every event it wrote delivered", liveWait, func() bool {
		raw, err := os.ReadFile(filepath.Join(b.SpoolDir(), "status.json"))
		var st struct {
			PID     int               `json:"pid"`
			Backlog int64             `json:"backlog_events"`
			Live    *livestate.Status `json:"live_state"`
		}
		return err == nil && json.Unmarshal(raw, &st) == nil && st.PID == sh2.cmd.Process.Pid &&
			st.Live != nil && st.Live.Readings >= 5 && st.Backlog == 0
	})
	evs = col.all()
	if n := len(reconcileEvents(t, evs, livestate.ActionSeen, "alice")); n != 1 {
		t.Errorf("alice reconciled %d times after a restart, want once", n)
	}
	ids := map[string]int{}
	for _, e := range evs {
		ids[e.EventID]++
		if ids[e.EventID] > 1 {
			t.Errorf("event %s (%s) published twice", e.EventID, e.Type)
		}
	}

	// The roaming client's new worker is joined to its first one.
	if err := bob.Roam(); err != nil {
		t.Fatal(err)
	}
	evs = col.wait(t, "bob joined", func(evs []events.Event) bool {
		return len(reconcileEvents(t, evs, livestate.ActionJoined, "bob")) >= 1 &&
			len(testbed.Filter(evs, testbed.Match{Type: events.Connect, Username: "bob"})) >= 2
	})
	j := reconcileEvents(t, evs, livestate.ActionJoined, "bob")[0]
	jp := payload[livestate.Reconcile](t, j.Reconcile)
	bobConnects := testbed.Filter(evs, testbed.Match{Type: events.Connect, Username: "bob"})
	if len(bobConnects) != 2 {
		t.Fatalf("%d connect events for bob after roaming, want 2", len(bobConnects))
	}
	if j.SessionUID != bobConnects[1].SessionUID || jp.LogicalSessionUID != bobConnect.SessionUID ||
		len(jp.JoinedSessionUIDs) != 1 || jp.JoinedSessionUIDs[0] != bobConnect.SessionUID {
		t.Errorf("joined event session_uid %s payload %+v; want the second connect's uid %s joined to the first's %s",
			j.SessionUID, jp, bobConnects[1].SessionUID, bobConnect.SessionUID)
	}

	// Alice's disconnect carries the reconciled session_uid.
	if err := alice.Disconnect(); err != nil {
		t.Fatal(err)
	}
	evs = col.wait(t, "alice's disconnect", testbed.Count(testbed.Match{Type: events.Disconnect, Username: "alice"}, 1))
	if d := testbed.Filter(evs, testbed.Match{Type: events.Disconnect, Username: "alice"})[0]; d.SessionUID != seen.SessionUID {
		t.Errorf("alice's disconnect has session_uid %s, the reconcile made %s", d.SessionUID, seen.SessionUID)
	}

	// ocserv stopped: the status says so, and recovers when it returns.
	if err := b.StopOcserv(); err != nil {
		t.Fatal(err)
	}
	waitCond(t, "ocserv-down in status.json", liveWait, func() bool {
		st, ok := liveStatus(t, b.SpoolDir())
		return ok && st.Occtl == livestate.OcctlServerDown
	})
	if err := b.StartOcserv(); err != nil {
		t.Fatal(err)
	}
	waitCond(t, "occtl ok again in status.json", liveWait+30*time.Second, func() bool {
		st, ok := liveStatus(t, b.SpoolDir())
		return ok && st.Occtl == livestate.OcctlOK
	})
}

// Two shippers claiming one server_id (a cloned image): the second is
// caught (error log, status, no snapshots) and the first keeps its claim.
func TestLiveStateCloneCaught(t *testing.T) {
	testbed.RequireRoot(t)
	srv := natstest.Run(t)
	b := testbed.New(t, testbed.Options{})
	first := startShipperConfig(t, liveConfig(t, b, srv.ClientURL()))
	waitCond(t, "the first shipper owns the claim", liveWait, func() bool {
		st, ok := liveStatus(t, b.SpoolDir())
		return ok && st.Claim == livestate.ClaimOwned
	})
	cloneSpool := filepath.Join(t.TempDir(), "spool")
	second := startShipperConfig(t, liveConfig(t, b, srv.ClientURL(), "SPOOL_DIR="+cloneSpool))
	waitCond(t, "the second shipper reports the conflict", liveWait, func() bool {
		st, ok := liveStatus(t, cloneSpool)
		return ok && st.Claim == livestate.ClaimConflict
	})
	st, _ := liveStatus(t, cloneSpool)
	firstSt, _ := liveStatus(t, b.SpoolDir())
	if st.ClaimHolder == nil || firstSt.Claim != livestate.ClaimOwned {
		t.Errorf("second %+v, first %+v", st, firstSt)
	}
	if !strings.Contains(second.stderr.String(), "claimed by another live host") || !strings.Contains(second.stderr.String(), "level=ERROR") {
		t.Errorf("the conflict is not logged as an error:\n%s", second.stderr.String())
	}
	if strings.Contains(first.stderr.String(), "claimed by another live host") {
		t.Error("the first shipper reports a conflict too")
	}
	if st.Snapshots != 0 {
		t.Errorf("the second shipper published %d snapshots", st.Snapshots)
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, "ocserv_state")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, livestate.ClaimKey(b.ServerID()))
	if err != nil {
		t.Fatal(err)
	}
	var c livestate.Claim
	json.Unmarshal(e.Value(), &c)
	if c.SpoolID != spoolIDOf(t, b.SpoolDir()) {
		t.Errorf("claim names spool %s, want the first shipper's", c.SpoolID)
	}
}

// spoolIDOf reads a spool's id from its VERSION file.
func spoolIDOf(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "spool_id="); ok {
			return v
		}
	}
	t.Fatalf("no spool_id in %s", dir)
	return ""
}
