package livestate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/syncbuf"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// runNATS starts an embedded JetStream server; maxPayload 0 keeps the
// default.
func runNATS(t *testing.T, maxPayload int32) *server.Server {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true, MaxPayload: maxPayload}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// fakeOcctl is a shell script that answers like occtl 1.1.6 from files in
// dir ("show users" → show-users.json); a file "down" makes it fail as
// occtl does when ocserv is not running.
func fakeOcctl(t *testing.T, users []byte) (path, dir string) {
	t.Helper()
	dir = t.TempDir()
	fx := filepath.Join("..", "testdata", "occtl-1.1.6-json")
	for _, f := range []string{"show-status.json", "show-ip-bans.json", "show-ip-ban-points.json"} {
		b, err := os.ReadFile(filepath.Join(fx, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if users == nil {
		var err error
		if users, err = os.ReadFile(filepath.Join(fx, "show-users.json")); err != nil {
			t.Fatal(err)
		}
	}
	setUsers(t, dir, users)
	script := `#!/bin/sh
d='` + dir + `'
while [ "$1" = "-s" ] || [ "$1" = "-j" ]; do
	[ "$1" = "-s" ] && shift
	shift
done
if [ "$1" = "--version" ]; then echo "OpenConnect server control (occtl) version 1.1.6"; exit 0; fi
if [ -e "$d/down" ]; then echo "error connecting to ocserv socket '/run/ocserv.socket': No such file or directory" >&2; exit 1; fi
f="$d/$(echo "$*" | tr ' ' '-').json"
if [ -e "$f" ]; then cat "$f"; else echo "[ ]"; exit 2; fi
`
	path = filepath.Join(dir, "occtl")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

func setUsers(t *testing.T, dir string, users []byte) {
	t.Helper()
	tmp := filepath.Join(dir, ".users.tmp")
	if err := os.WriteFile(tmp, users, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "show-users.json")); err != nil {
		t.Fatal(err)
	}
}

// manyUsers builds show users output for n workers in occtl 1.1.6's form.
func manyUsers(n int, rx uint64) []byte {
	var b strings.Builder
	b.WriteString("[\n")
	for i := range n {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `  {
    "ID":  %d, "Username":  "user%d", "Groupname":  "(none)", "State":  "connected",
    "vhost":  "default", "Device":  "vpns%d", "MTU":  "1434", "Remote IP":  "10.98.0.%d",
    "IPv4":  "192.168.250.%d", "P-t-P IPv4":  "192.168.250.1", "User-Agent":  "Open AnyConnect VPN Agent v9.01-3",
    "RX":  "%d", "TX":  "%d", "Connected at":  "2026-11-22 05:25",
    "Full session":  "Sess%05dAAAAAAAAAAAAAAAAAAAAA=", "Session":  "Sess%02d",
    "DNS":	["192.168.250.1"], "Routes":	["10.10.10.0/255.255.255.0"], "Restricted to routes":  "True"
  }`, 1000+i, i, i, i%250+1, i%250+2, rx+uint64(i), 2*rx, i, i%100)
	}
	b.WriteString("\n]\n")
	return []byte(b.String())
}

type harness struct {
	t      *testing.T
	sp     *spool.Spool
	svc    *Service
	log    *syncbuf.Buffer
	cancel context.CancelFunc
	done   chan struct{}
}

func openSpool(t *testing.T, dir string) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(dir, spool.Options{Create: true, LockWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

// start runs a Service over spoolDir with occtl at occtlPath; nc nil runs
// without NATS.
func start(t *testing.T, spoolDir, occtlPath, serverID string, nc *nats.Conn, hostname string) *harness {
	t.Helper()
	sp := openSpool(t, spoolDir)
	lb := &syncbuf.Buffer{}
	o := Options{
		Occtl: &ocserv.Occtl{Path: occtlPath, Location: time.UTC}, Spool: sp, ServerID: serverID, Prefix: "ocserv",
		Log:      slog.New(slog.NewTextHandler(lb, nil)),
		Interval: 200 * time.Millisecond, AccountingInterval: time.Hour,
		StreamName: "OCSERV_SNAPSHOTS", History: 50, Bucket: "ocserv_state", Create: true,
		Hostname: hostname, Version: "test", Grace: 300 * time.Millisecond, MaxBackoff: 400 * time.Millisecond,
	}
	if nc != nil {
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		o.JS, o.MaxPayload = js, nc.MaxPayload
	}
	h := &harness{t: t, sp: sp, log: lb, done: make(chan struct{})}
	h.svc = New(o)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { defer close(h.done); h.svc.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		h.t.Error("service did not stop within 10s")
	}
	if h.t.Failed() {
		h.t.Logf("service log:\n%s", h.log.String())
	}
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func connect(t *testing.T, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// Snapshots of every kind reach their subjects with the part headers, the
// bucket holds the latest state, and the claim names this spool.
func TestSnapshotsAndLatestState(t *testing.T) {
	srv := runNATS(t, 0)
	nc, js := connect(t, srv)
	occtl, _ := fakeOcctl(t, nil)
	h := start(t, t.TempDir(), occtl, "vpn1", nc, "host-a")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The kinds of one reading are written one after the other: wait for
	// the last of them.
	waitUntil(t, "a snapshot of every kind in the bucket", 15*time.Second, func() bool {
		kv, err := js.KeyValue(ctx, "ocserv_state")
		if err != nil {
			return false
		}
		for _, k := range Kinds {
			if _, err := kv.Get(ctx, "vpn1."+k); err != nil {
				return false
			}
		}
		return true
	})
	kv, _ := js.KeyValue(ctx, "ocserv_state")
	snap, err := ReadLatest(ctx, kv, "vpn1", KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	ips := map[string]string{}
	for _, it := range snap.Items {
		var u UserItem
		if err := json.Unmarshal(it, &u); err != nil {
			t.Fatal(err)
		}
		ips[u.Username] = u.IPv4
	}
	if ips["alice"] != "192.168.250.50" || ips["bob"] != "192.168.250.106" || len(ips) != 2 {
		t.Errorf("users snapshot tunnel IPs %v, want alice .50 and bob .106", ips)
	}
	if snap.Count != 2 || snap.Parts != 1 || snap.OcservVersion != "1.1.6" || snap.SpoolID != h.sp.Meta().SpoolID {
		t.Errorf("users snapshot envelope %+v", snap)
	}
	st, err := ReadLatest(ctx, kv, "vpn1", KindStatus)
	if err != nil || len(st.Items) != 1 || !strings.Contains(string(st.Items[0]), `"online":true`) {
		t.Errorf("status snapshot %+v %v", st, err)
	}
	for _, k := range []string{KindBans, KindBanPoints} {
		if s, err := ReadLatest(ctx, kv, "vpn1", k); err != nil || s.Count != 0 {
			t.Errorf("%s snapshot %+v %v", k, s, err)
		}
	}
	e, err := kv.Get(ctx, "vpn1.claim")
	if err != nil {
		t.Fatal(err)
	}
	var c Claim
	json.Unmarshal(e.Value(), &c)
	if c.SpoolID != h.sp.Meta().SpoolID || c.Hostname != "host-a" || c.Released {
		t.Errorf("claim %+v", c)
	}
	// The stream keeps each kind under its subject, with the headers.
	stream, err := js.Stream(ctx, "OCSERV_SNAPSHOTS")
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(ctx, "ocserv.snapshots.vpn1.users")
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(HdrPart) != "1" || m.Header.Get(HdrParts) != "1" || m.Header.Get(HdrKind) != "users" || m.Header.Get(HdrSnapshotID) == "" ||
		m.Header.Get("Nats-Msg-Id") != m.Header.Get(HdrSnapshotID)+".1" {
		t.Errorf("headers %v", m.Header)
	}
	info, _ := stream.Info(ctx)
	if info.Config.MaxMsgsPerSubject != 50 {
		t.Errorf("created stream keeps %d per subject, want SNAPSHOT_HISTORY 50", info.Config.MaxMsgsPerSubject)
	}
	if s := h.svc.Status(); s.Claim != ClaimOwned || s.Occtl != OcctlOK || s.Snapshots == 0 || s.Sessions != 2 {
		t.Errorf("status %+v", s)
	}
}

// With a small max_payload, a large users snapshot is split between items:
// every message fits, parts are numbered, and the parts' items add up to
// the whole; a later smaller snapshot removes the extra parts' keys.
func TestSnapshotSplitSmallMaxPayload(t *testing.T) {
	const maxPayload = 4096
	srv := runNATS(t, maxPayload)
	nc, js := connect(t, srv)
	if nc.MaxPayload() != maxPayload {
		t.Fatalf("server max payload %d", nc.MaxPayload())
	}
	occtl, dir := fakeOcctl(t, manyUsers(40, 1000))
	start(t, t.TempDir(), occtl, "big", nc, "h")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var kv jetstream.KeyValue
	waitUntil(t, "a split users snapshot", 15*time.Second, func() bool {
		var err error
		if kv, err = js.KeyValue(ctx, "ocserv_state"); err != nil {
			return false
		}
		_, err = kv.Get(ctx, "big.users.2")
		return err == nil
	})
	snap, err := ReadLatest(ctx, kv, "big", KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Parts < 2 || len(snap.Items) != 40 || snap.Count != 40 {
		t.Fatalf("latest users: %d parts, %d items, count %d; want ≥2 parts, 40 items", snap.Parts, len(snap.Items), snap.Count)
	}
	ids := map[int]bool{}
	for _, it := range snap.Items {
		var u UserItem
		json.Unmarshal(it, &u)
		ids[u.ID] = true
	}
	if len(ids) != 40 {
		t.Errorf("%d distinct workers across parts, want 40", len(ids))
	}
	// Every message of one snapshot on the stream fits and is numbered.
	stream, _ := js.Stream(ctx, "OCSERV_SNAPSHOTS")
	last, err := stream.GetLastMsgForSubject(ctx, "ocserv.snapshots.big.users")
	if err != nil {
		t.Fatal(err)
	}
	parts, _ := strconv.Atoi(last.Header.Get(HdrParts))
	id := last.Header.Get(HdrSnapshotID)
	got := 0
	for seq := last.Sequence; seq > 0 && seq+uint64(parts) > last.Sequence; seq-- {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil || m.Subject != "ocserv.snapshots.big.users" {
			continue
		}
		if m.Header.Get(HdrSnapshotID) != id {
			continue
		}
		size := len(m.Data)
		for k, v := range m.Header {
			size += len(k) + len(v[0]) + 4
		}
		if size > maxPayload {
			t.Errorf("part %s is %d bytes with headers, over %d", m.Header.Get(HdrPart), size, maxPayload)
		}
		var s Snapshot
		if err := json.Unmarshal(m.Data, &s); err != nil || s.SnapshotID != id || s.Parts != parts {
			t.Errorf("part %d does not decode as a part of %s: %v", seq, id, err)
		}
		got++
	}
	if got != parts || parts < 2 {
		t.Errorf("found %d messages of snapshot %s, header says %d parts", got, id, parts)
	}
	// Fewer users: one part, and the extra keys go.
	setUsers(t, dir, manyUsers(2, 5))
	waitUntil(t, "a one-part users snapshot", 15*time.Second, func() bool {
		s, err := ReadLatest(ctx, kv, "big", KindUsers)
		return err == nil && s.Parts == 1 && len(s.Items) == 2
	})
	waitUntil(t, "the extra parts removed", 5*time.Second, func() bool {
		_, err := kv.Get(ctx, "big.users.2")
		return err != nil
	})
}

func TestSplitUnit(t *testing.T) {
	items := []json.RawMessage{json.RawMessage(`{"a":1}`), json.RawMessage(`{"b":"` + strings.Repeat("x", 300) + `"}`), json.RawMessage(`{"c":3}`)}
	head := Snapshot{V: 1, ServerID: "s", Kind: "users", Time: "t", SnapshotID: "id"}
	parts, dropped, err := Split(head, items, 360)
	if err != nil {
		t.Fatal(err)
	}
	if dropped != 1 {
		t.Errorf("dropped %d, want the item larger than a message", dropped)
	}
	var total int
	for i, p := range parts {
		if len(p) > 360 {
			t.Errorf("part %d is %d bytes", i+1, len(p))
		}
		var s Snapshot
		if err := json.Unmarshal(p, &s); err != nil {
			t.Fatal(err)
		}
		if s.Part != i+1 || s.Parts != len(parts) || s.Count != 2 || s.Dropped != 1 {
			t.Errorf("part %+v", s)
		}
		total += len(s.Items)
	}
	if total != 2 {
		t.Errorf("%d items across parts, want 2", total)
	}
	parts, _, _ = Split(head, nil, 360)
	if len(parts) != 1 || !strings.Contains(string(parts[0]), `"items":[]`) {
		t.Errorf("an empty snapshot is one part with no items: %s", parts)
	}
}

// Two hosts with one server_id: the second is told loudly, publishes no
// snapshots or state, and does not overwrite the first's claim; when the
// first stops cleanly (releasing its claim) the second takes over.
func TestCloneDetection(t *testing.T) {
	srv := runNATS(t, 0)
	nc, js := connect(t, srv)
	occtl, _ := fakeOcctl(t, nil)
	a := start(t, t.TempDir(), occtl, "twin", nc, "host-a")
	waitUntil(t, "host a owns the claim", 15*time.Second, func() bool { return a.svc.Status().Claim == ClaimOwned })
	nc2, _ := connect(t, srv)
	b := start(t, t.TempDir(), occtl, "twin", nc2, "host-a") // a cloned image: same host name
	waitUntil(t, "host b sees the conflict", 15*time.Second, func() bool { return b.svc.Status().Claim == ClaimConflict })
	// Five more checks of the claim, each a chance to publish or to log
	// the conflict again.
	checks := b.svc.Status().ClaimChecks
	waitUntil(t, "five more claim checks by b", 15*time.Second, func() bool { return b.svc.Status().ClaimChecks >= checks+5 })
	st := b.svc.Status()
	if st.ClaimHolder == nil || st.ClaimHolder.SpoolID != a.sp.Meta().SpoolID {
		t.Errorf("b's status names holder %+v, want a's spool %s", st.ClaimHolder, a.sp.Meta().SpoolID)
	}
	if st.Snapshots != 0 {
		t.Errorf("b published %d snapshots while in conflict", st.Snapshots)
	}
	if n := strings.Count(b.log.String(), "claimed by another live host"); n != 1 {
		t.Errorf("b logged the conflict %d times, want once (per change):\n%s", n, b.log.String())
	}
	if !strings.Contains(b.log.String(), "level=ERROR") {
		t.Error("the conflict is not logged as an error")
	}
	if a.svc.Status().Claim != ClaimOwned {
		t.Errorf("a lost its claim: %+v", a.svc.Status())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, _ := js.KeyValue(ctx, "ocserv_state")
	e, _ := kv.Get(ctx, "twin.claim")
	var c Claim
	json.Unmarshal(e.Value(), &c)
	if c.SpoolID != a.sp.Meta().SpoolID {
		t.Errorf("claim overwritten: %+v", c)
	}
	snap, err := ReadLatest(ctx, kv, "twin", KindUsers)
	if err != nil || snap.SpoolID != a.sp.Meta().SpoolID {
		t.Errorf("latest users written by %s (%v), want only a's", snap.SpoolID, err)
	}
	a.stop()
	waitUntil(t, "b takes over the released claim", 15*time.Second, func() bool { return b.svc.Status().Claim == ClaimOwned })
	if !strings.Contains(b.log.String(), "released by its holder") {
		t.Errorf("takeover not logged:\n%s", b.log.String())
	}
}

// The claim logic on its own: a stale claim of another spool is taken over,
// a fresh one is a conflict, a restart on the same host takes its own.
func TestClaimRules(t *testing.T) {
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	ours := Claim{SpoolID: "s1", Hostname: "h", BootID: "b1", RefreshS: 30}
	fresh := Claim{SpoolID: "s2", Hostname: "h2", BootID: "b2", RefreshS: 30, RefreshedAt: now.Add(-time.Minute).Format(time.RFC3339Nano)}
	if fresh.stale(now) {
		t.Error("a claim refreshed a minute ago (30s interval) is not stale")
	}
	old := fresh
	old.RefreshedAt = now.Add(-3 * time.Minute).Format(time.RFC3339Nano)
	if !old.stale(now) {
		t.Error("a claim not refreshed for 3 minutes (30s interval) is stale")
	}
	rel := fresh
	rel.Released = true
	if !rel.stale(now) {
		t.Error("a released claim is free")
	}
	restarted := ours
	restarted.Instance = "other-process"
	if !ours.sameHost(restarted) {
		t.Error("same spool, host and boot is a restart")
	}
	clone := ours
	clone.BootID = "b9"
	if ours.sameHost(clone) {
		t.Error("same spool on another boot id is not taken over at once")
	}
}

// occtl failing (ocserv down) shows in the status, is logged once, is
// published as an offline status, and recovers.
func TestOcctlDownAndRecover(t *testing.T) {
	srv := runNATS(t, 0)
	nc, js := connect(t, srv)
	occtl, dir := fakeOcctl(t, nil)
	if err := os.WriteFile(filepath.Join(dir, "down"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h := start(t, t.TempDir(), occtl, "down1", nc, "h")
	waitUntil(t, "ocserv-down in the status", 10*time.Second, func() bool {
		s := h.svc.Status()
		return s.Occtl == OcctlServerDown && s.OcctlFailures >= 3
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	waitUntil(t, "an offline status in the bucket", 10*time.Second, func() bool {
		kv, err := js.KeyValue(ctx, "ocserv_state")
		if err != nil {
			return false
		}
		s, err := ReadLatest(ctx, kv, "down1", KindStatus)
		return err == nil && len(s.Items) == 1 && strings.Contains(string(s.Items[0]), `"status":"ocserv-down"`)
	})
	if n := strings.Count(h.log.String(), "occtl fails"); n != 1 {
		t.Errorf("%d log lines for one outage, want 1:\n%s", n, h.log.String())
	}
	os.Remove(filepath.Join(dir, "down"))
	waitUntil(t, "recovery", 10*time.Second, func() bool { return h.svc.Status().Occtl == OcctlOK })
	if !strings.Contains(h.log.String(), "occtl recovered") {
		t.Errorf("recovery not logged:\n%s", h.log.String())
	}
}

func TestOcctlMissing(t *testing.T) {
	h := start(t, t.TempDir(), filepath.Join(t.TempDir(), "no-occtl"), "m", nil, "h")
	waitUntil(t, "occtl-missing", 10*time.Second, func() bool { return h.svc.Status().Occtl == OcctlMissing })
}

func TestClassify(t *testing.T) {
	cases := map[string]string{
		"occtl show users: exit 1: error connecting to ocserv socket '/x': Permission denied":         OcctlNoAccess,
		"occtl show users: exit 1: error connecting to ocserv socket '/x': No such file or directory": OcctlServerDown,
		"occtl show users: exit 1: error connecting to ocserv socket '/x': Connection refused":        OcctlServerDown,
		"occtl show users: exit 255: exec of \"occtl\" failed: No such file or directory":             OcctlMissing,
		"occtl show users: no answer within 10s (killed)":                                             OcctlTimeout,
		"occtl show users: exit 3: something else":                                                    OcctlError,
	}
	for msg, want := range cases {
		if got := Classify(fmt.Errorf("%s", msg)); got != want {
			t.Errorf("%q → %s, want %s", msg, got, want)
		}
	}
}

func readSpool(t *testing.T, dir string) []events.Event {
	t.Helper()
	var out []events.Event
	files, _ := filepath.Glob(filepath.Join(dir, "pending", "*.ndjson"))
	files = append(files, filepath.Join(dir, spool.QueueFile))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var e events.Event
			if err := json.Unmarshal(line, &e); err != nil {
				t.Fatalf("spool line %q: %v", line, err)
			}
			out = append(out, e)
		}
	}
	return out
}

// Sessions without hook records are reconciled through the spool (as
// numbered events of this spool), the uid is left for the hook, and a
// restarted service writes nothing again.
func TestServiceReconcileThroughSpoolAndRestart(t *testing.T) {
	occtl, _ := fakeOcctl(t, nil)
	dir := t.TempDir()
	h := start(t, dir, occtl, "r1", nil, "h")
	// The fixture's sessions started days ago: each has one reconcile and,
	// with an hourly interval, one accounting event for the current slot.
	waitUntil(t, "four events in the spool", 10*time.Second, func() bool { return len(readSpool(t, dir)) >= 4 })
	h.stop()
	all := readSpool(t, dir)
	var evs []events.Event
	for _, e := range all {
		if e.Type == events.Reconcile {
			evs = append(evs, e)
		}
	}
	if len(evs) != 2 || len(all) != 4 {
		t.Fatalf("%d events, %d reconcile; want 4 and 2 (alice and bob seen)", len(all), len(evs))
	}
	for _, e := range evs {
		if e.Seq == 0 || e.SpoolID != h.sp.Meta().SpoolID || e.ServerID != "r1" || e.Reconcile == nil {
			t.Errorf("event %+v", e)
		}
		key := spool.SessionKey(e.Session.ID, e.Session.Device)
		uid, ok, err := h.sp.LoadSession(key)
		if err != nil || !ok || uid != e.SessionUID {
			t.Errorf("hook record %s = %q, want the reconcile's session_uid %s", key, uid, e.SessionUID)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, StateFileName)); err != nil {
		t.Errorf("no state file: %v", err)
	}
	h2 := start(t, dir, occtl, "r1", nil, "h")
	waitUntil(t, "five readings after the restart", 15*time.Second, func() bool { return h2.svc.Status().Readings >= 5 })
	h2.stop()
	if n := len(readSpool(t, dir)); n != 4 {
		t.Errorf("%d events after a restart, want still 4", n)
	}
}
