//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
)

// shipperProc is a real bin/shipper process reading the bed's spool.
type shipperProc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan struct{}
}

func startShipper(t *testing.T, b *testbed.Bed) *shipperProc {
	t.Helper()
	hook, err := testbed.HookBinary()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(filepath.Dir(hook), "shipper")
	cmd := exec.Command(bin, "--config", b.ConfigPath())
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
			t.Logf("shipper log:\n%s", p.stderr.String())
		}
	})
	return p
}

func (p *shipperProc) kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// A real VPN session's events reach a NATS subscriber through the real
// shipper, and a kill -9 of the shipper in the middle loses nothing and
// duplicates nothing: the stream ends with every hook event exactly once.
func TestSessionEventsReachNATSThroughShipperCrash(t *testing.T) {
	testbed.RequireRoot(t)
	srv := natstest.Run(t)
	b := testbed.New(t, testbed.Options{AgentEnv: []string{"NATS_URL=" + srv.ClientURL()}})

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	live := map[string]events.Event{} // what a plain subscriber saw, by event_id
	sub, err := nc.Subscribe("ocserv.events."+b.ServerID()+".>", func(m *nats.Msg) {
		var e events.Event
		if json.Unmarshal(m.Data, &e) == nil {
			mu.Lock()
			live[e.EventID] = e
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	seen := func(n int) bool {
		mu.Lock()
		defer mu.Unlock()
		return len(live) >= n
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(eventWait)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	sh := startShipper(t, b)
	alice, err := b.Connect("alice", b.Password("alice"))
	if err != nil {
		t.Fatal(err)
	}
	// connect + host-update reach NATS while the shipper runs.
	waitFor("alice's connect and host-update on NATS", func() bool { return seen(2) })

	sh.kill() // SIGKILL, mid-stream
	bob, err := b.Connect("bob", b.Password("bob"))
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Disconnect(); err != nil {
		t.Fatal(err)
	}
	b.WaitEvents(testbed.Count(testbed.Match{Type: events.Disconnect, Username: "alice"}, 1), eventWait)
	if seen(3) {
		t.Fatal("events reached NATS with the shipper dead: the test is not testing the restart")
	}

	startShipper(t, b)
	if err := bob.Disconnect(); err != nil {
		t.Fatal(err)
	}
	const want = 6 // alice and bob: connect, host-update, disconnect
	waitFor(fmt.Sprintf("%d events on NATS", want), func() bool { return seen(want) })

	// The stream holds each event exactly once, seqs 1..6 without gaps.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, "OCSERV_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != want {
		t.Errorf("stream holds %d messages, want %d (each event exactly once)", info.State.Msgs, want)
	}
	var seqs []int
	ids := map[string]bool{}
	for i := uint64(1); i <= info.State.LastSeq; i++ {
		m, err := stream.GetMsg(ctx, i)
		if err != nil {
			t.Fatalf("stream message %d: %v", i, err)
		}
		var e events.Event
		if err := json.Unmarshal(m.Data, &e); err != nil {
			t.Fatalf("stream message %d is not an event: %v", i, err)
		}
		if ids[e.EventID] {
			t.Errorf("event %s twice in the stream", e.EventID)
		}
		ids[e.EventID] = true
		seqs = append(seqs, int(e.Seq))
		if got := m.Header.Get("Nats-Msg-Id"); got != e.EventID {
			t.Errorf("Nats-Msg-Id %q, want the event_id %q", got, e.EventID)
		}
		wantSubj := fmt.Sprintf("ocserv.events.%s.%s", b.ServerID(), e.Type)
		if m.Subject != wantSubj {
			t.Errorf("subject %s, want %s", m.Subject, wantSubj)
		}
	}
	sort.Ints(seqs)
	for i, s := range seqs {
		if s != i+1 {
			t.Fatalf("seqs in the stream %v, want 1..%d", seqs, want)
		}
	}
	for _, u := range []string{"alice", "bob"} {
		for _, typ := range []events.Type{events.Connect, events.HostUpdate, events.Disconnect} {
			n := 0
			mu.Lock()
			for _, e := range live {
				if e.Type == typ && e.Session != nil && e.Session.Username == u {
					n++
				}
			}
			mu.Unlock()
			if n != 1 {
				t.Errorf("%s %s: %d events on NATS, want 1", u, typ, n)
			}
		}
	}
}
