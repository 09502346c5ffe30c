//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/api"
)

// ledgerBed runs the real bin/ledger (SQLite) on the test's NATS and
// bin/ctl with a key the ledger trusts.
type ledgerBed struct {
	t       *testing.T
	bin     string
	ctlEnv  []string
	ledger  *exec.Cmd
	log     *bytes.Buffer
	cfgPath string
}

func startLedger(t *testing.T, natsURL string) *ledgerBed {
	t.Helper()
	hook, err := testbed.HookBinary()
	if err != nil {
		t.Fatal(err)
	}
	lb := &ledgerBed{t: t, bin: filepath.Dir(hook), log: &bytes.Buffer{}}
	dir := t.TempDir()
	ctlCfg := filepath.Join(dir, "ctl.env")
	os.WriteFile(ctlCfg, []byte("NATS_URL="+natsURL+"\nOPERATOR_KEY="+filepath.Join(dir, "op.nk")+"\nCTL_TIMEOUT=10s\n"), 0o600)
	lb.ctlEnv = append(os.Environ(), "OCSERV_CTL_CONFIG="+ctlCfg, "HOME="+dir)
	key, err := lb.run(lb.ctlEnv, "ctl", "keygen", "--name", "e2e", "--role", "read-only")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "operators.keys"), []byte(key), 0o600)
	lb.cfgPath = filepath.Join(dir, "ledger.env")
	os.WriteFile(lb.cfgPath, []byte(fmt.Sprintf("NATS_URL=%s\nLEDGER_DATABASE=%s\nLEDGER_TRUSTED_KEYS=%s\nLEDGER_NONCE_FILE=%s\n",
		natsURL, filepath.Join(dir, "ledger.db"), filepath.Join(dir, "operators.keys"), filepath.Join(dir, "nonces"))), 0o600)
	if out, err := lb.run(nil, "ledger", "migrate", "--config", lb.cfgPath); err != nil {
		t.Fatalf("ledger migrate: %v %s", err, out)
	}
	lb.ledger = exec.Command(filepath.Join(lb.bin, "ledger"), "serve", "--config", lb.cfgPath)
	lb.ledger.Stdout, lb.ledger.Stderr = lb.log, lb.log
	lb.ledger.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := lb.ledger.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		lb.ledger.Process.Signal(syscall.SIGTERM)
		lb.ledger.Wait()
		if t.Failed() {
			t.Logf("ledger log:\n%s", lb.log.String())
		}
	})
	return lb
}

func (lb *ledgerBed) run(env []string, bin string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(lb.bin, bin), args...)
	cmd.Env = env
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %v: %v: %s", bin, args, err, errb.String())
	}
	return string(out), nil
}

// ctlJSON runs a ctl ledger command with --json into v.
func (lb *ledgerBed) ctlJSON(v any, args ...string) {
	lb.t.Helper()
	out, err := lb.run(lb.ctlEnv, "ctl", append(args, "--json")...)
	if err != nil {
		lb.t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		lb.t.Fatalf("ctl %v: %v\n%s", args, err, out)
	}
}

// TestLedgerTwoServers: two real ocserv servers (two beds) shipping to one
// NATS, the real ledger consuming both. alice is connected to both at once
// and sends traffic on each; on the first server her client roams (a new
// worker joined to the first by its cookie) and sends more; then bob gets
// the same VPN address on that server after she left. ctl usage must equal
// the sum of the disconnect statistics (within 1 KiB per session), and
// ctl who --ip must name alice's roamed worker and then bob.
func TestLedgerTwoServers(t *testing.T) {
	testbed.RequireRoot(t)
	srv := natstest.Run(t)
	// One address for both users on the first server, so the next user
	// reuses it.
	const shared = "192.168.250.77"
	perUser := map[string][]string{"alice": {"explicit-ipv4 = " + shared}, "bob": {"explicit-ipv4 = " + shared}}
	b1 := testbed.New(t, testbed.Options{PerUser: perUser})
	b2 := testbed.New(t, testbed.Options{})
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	col1, col2 := collect(t, nc, b1.ServerID()), collect(t, nc, b2.ServerID())
	startShipperConfig(t, liveConfig(t, b1, srv.ClientURL()))
	startShipperConfig(t, liveConfig(t, b2, srv.ClientURL()))
	lb := startLedger(t, srv.ClientURL())

	a1, err := b1.Connect("alice", b1.Password("alice"), testbed.ConnectOptions{VPNCScript: true})
	if err != nil {
		t.Fatal(err)
	}
	a2, err := b2.Connect("alice", b2.Password("alice"), testbed.ConnectOptions{VPNCScript: true})
	if err != nil {
		t.Fatal(err)
	}
	if a1.TunnelIP() != shared {
		t.Fatalf("alice's address on %s is %s, want the configured %s", b1.ServerID(), a1.TunnelIP(), shared)
	}
	if err := a1.SendTraffic(400_000); err != nil {
		t.Fatal(err)
	}
	if err := a2.SendTraffic(700_000); err != nil {
		t.Fatal(err)
	}
	// An interim sample with the traffic before the roam, so usage comes
	// from samples and disconnects both.
	col1.wait(t, "an accounting sample of alice's traffic", func(evs []events.Event) bool {
		for _, e := range evs {
			if e.Type == events.Accounting && e.Session != nil && e.Session.Username == "alice" {
				var a struct {
					BytesIn uint64 `json:"bytes_in"`
				}
				json.Unmarshal(*e.Accounting, &a)
				if a.BytesIn >= 400_000 {
					return true
				}
			}
		}
		return false
	})
	if err := a1.Roam(); err != nil {
		t.Fatal(err)
	}
	col1.wait(t, "alice's second worker joined", func(evs []events.Event) bool {
		return len(reconcileEvents(t, evs, "joined", "alice")) >= 1
	})
	if err := a1.SendTraffic(300_000); err != nil {
		t.Fatal(err)
	}
	roamedAt := time.Now().UTC()
	time.Sleep(1100 * time.Millisecond) // distinct instants for the two users of the address
	if err := a1.Disconnect(); err != nil {
		t.Fatal(err)
	}
	if err := a2.Disconnect(); err != nil {
		t.Fatal(err)
	}
	col1.wait(t, "alice's disconnects on the first server", testbed.Count(testbed.Match{Type: events.Disconnect, Username: "alice"}, 2))
	col2.wait(t, "alice's disconnect on the second server", testbed.Count(testbed.Match{Type: events.Disconnect, Username: "alice"}, 1))
	time.Sleep(1100 * time.Millisecond)
	bob, err := b1.Connect("bob", b1.Password("bob"), testbed.ConnectOptions{VPNCScript: true})
	if err != nil {
		t.Fatal(err)
	}
	if bob.TunnelIP() != shared {
		t.Fatalf("bob's address is %s, want the reused %s", bob.TunnelIP(), shared)
	}
	bobAt := time.Now().UTC()
	col1.wait(t, "bob's connect", testbed.Count(testbed.Match{Type: events.Connect, Username: "bob"}, 1))

	// The ledger has applied everything published when its history shows
	// alice's three sessions ended and bob's open.
	waitCond(t, "the ledger caught up", 60*time.Second, func() bool {
		var h api.HistoryResult
		out, err := lb.run(lb.ctlEnv, "ctl", "history", "--json")
		if err != nil || json.Unmarshal([]byte(out), &h) != nil {
			return false
		}
		ended, open := 0, 0
		for _, s := range h.Sessions {
			switch {
			case s.Username == "alice" && s.State == ledger.StateDisconnect:
				ended++
			case s.Username == "bob" && s.State == ledger.StateOpen:
				open++
			}
		}
		return ended == 3 && open == 1
	})

	// Usage: the sum of the disconnects' statistics.
	var sumIn, sumOut int64
	var disconnects []events.Event
	for _, c := range []*collector{col1, col2} {
		disconnects = append(disconnects, testbed.Filter(c.all(), testbed.Match{Type: events.Disconnect, Username: "alice"})...)
	}
	for _, d := range disconnects {
		sumIn += int64(d.Stats.BytesIn)
		sumOut += int64(d.Stats.BytesOut)
	}
	if sumIn < 1_400_000 {
		t.Fatalf("the disconnects count %d bytes in, less than the 1.4 MB alice sent", sumIn)
	}
	var u api.UsageResult
	day := time.Now().UTC()
	lb.ctlJSON(&u, "usage", "--user", "alice", "--from", day.AddDate(0, 0, -1).Format(time.DateOnly), "--to", day.AddDate(0, 0, 2).Format(time.DateOnly))
	if len(u.Rows) != 1 {
		t.Fatalf("usage rows for alice: %+v", u.Rows)
	}
	tol := int64(1024 * len(disconnects))
	if r := u.Rows[0]; abs(r.BytesIn-sumIn) > tol || abs(r.BytesOut-sumOut) > tol || r.Sessions != 3 {
		t.Errorf("ctl usage for alice: in %d out %d sessions %d; the disconnects say in %d out %d over 3 sessions (tolerance %d bytes)",
			r.BytesIn, r.BytesOut, r.Sessions, sumIn, sumOut, tol)
	}
	var per api.UsageResult
	lb.ctlJSON(&per, "usage", "--user", "alice", "--per-server", "--from", day.AddDate(0, 0, -1).Format(time.DateOnly), "--to", day.AddDate(0, 0, 2).Format(time.DateOnly))
	if len(per.Rows) != 2 {
		t.Errorf("alice's usage per server: %+v, want a row for each server", per.Rows)
	}

	// who: the roamed worker, then the next user of the address.
	var w api.WhoResult
	lb.ctlJSON(&w, "who", "--ip", shared, "--at", roamedAt.Format(time.RFC3339Nano))
	joined := reconcileEvents(t, col1.all(), "joined", "alice")[0]
	if len(w.Sessions) != 1 || w.Sessions[0].Username != "alice" || w.Sessions[0].UID != joined.SessionUID ||
		w.Sessions[0].LogicalUID == w.Sessions[0].UID || w.Sessions[0].ServerID != b1.ServerID() {
		t.Errorf("who %s at the roamed session's time: %+v, want alice's second worker (%s) joined to her first", shared, w.Sessions, joined.SessionUID)
	}
	lb.ctlJSON(&w, "who", "--ip", shared, "--at", bobAt.Format(time.RFC3339Nano))
	if len(w.Sessions) != 1 || w.Sessions[0].Username != "bob" {
		t.Errorf("who %s after alice left: %+v, want bob alone", shared, w.Sessions)
	}
	// The table form, as an operator reads it.
	out, err := lb.run(lb.ctlEnv, "ctl", "who", "--ip", shared, "--at", roamedAt.Format(time.RFC3339Nano))
	if err != nil || !strings.Contains(out, "alice") || !strings.Contains(out, "roamed from") {
		t.Errorf("ctl who (table): %v\n%s", err, out)
	}
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
