package main

// The shipper's performance goals (docs/design.md), measured against
// baselines taken in the same run: scripts/bench-shipper.sh runs this with
// SHIPPER_BENCH=1; each test appends its section to SHIPPER_BENCH_OUT (the
// block of docs/benchmarks-shipper.md) and one clause to
// SHIPPER_BENCH_SUMMARY (the README's). Nothing here asserts a threshold;
// the figures are for people.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/natsjs"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

func benchEnv(t *testing.T) {
	if os.Getenv("SHIPPER_BENCH") == "" {
		t.Skip("set SHIPPER_BENCH=1 (scripts/bench-shipper.sh) to run the shipper benchmarks")
	}
}

func benchInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// hookLikeEvent is an event as the hook writes it for a real connect
// (testdata/ocserv-hook-env/connect.env), so payload sizes are realistic.
func hookLikeEvent(t *testing.T) events.Event {
	env, err := readEnvFile("../../testdata/ocserv-hook-env/connect.env")
	if err != nil {
		t.Fatal(err)
	}
	ev := events.FromEnv(events.Connect, env)
	ev.ServerID = "vpn-test"
	ev.Time = time.Now().UTC().Format(time.RFC3339Nano)
	ev.BootID = spool.BootID()
	ev.SessionUID = uuid.NewString()
	ev.Firewall = &events.Firewall{Mode: "off", Action: "none"}
	ok := true
	ev.Admitted = &ok
	ev.Hook = &events.HookInfo{Version: "bench", ElapsedUS: 812}
	return *ev
}

func readEnvFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			env[k] = v
		}
	}
	return env, nil
}

// fillSpool writes n events as rotated chunks of about 4 MiB, the way the
// shipper leaves them while NATS is away, and returns the lines. The first
// event goes through Append so the spool is initialised like any other.
func fillSpool(t *testing.T, s *site, n int, keep bool) (lines [][]byte, size int64) {
	t.Helper()
	sp := s.openSpool()
	tmpl := hookLikeEvent(t)
	var spoolID string
	enc := func(seq uint64) []byte {
		ev := tmpl
		ev.EventID = uuid.Must(uuid.NewV7()).String()
		ev.Seq, ev.SpoolID = seq, spoolID
		b, err := ev.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, err := sp.Append(func(st spool.Stamp) ([]byte, error) {
		spoolID = st.SpoolID
		return enc(st.Seq), nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sp.Rotate(); err != nil {
		t.Fatal(err)
	}
	var buf []byte
	flush := func(last uint64) {
		name := filepath.Join(s.spoolDir, spool.PendingDir, fmt.Sprintf("%020d.ndjson", last))
		if err := os.WriteFile(name, buf, 0o640); err != nil {
			t.Fatal(err)
		}
		size += int64(len(buf))
		buf = buf[:0]
	}
	for seq := uint64(2); seq <= uint64(n); seq++ {
		l := enc(seq)
		if keep {
			lines = append(lines, l[:len(l)-1])
		}
		buf = append(buf, l...)
		if len(buf) >= 4<<20 {
			flush(seq)
		}
	}
	if len(buf) > 0 {
		flush(uint64(n))
	}
	return lines, size
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return -1
}

// report appends a section to SHIPPER_BENCH_OUT and a clause to
// SHIPPER_BENCH_SUMMARY, when they are set.
func report(t *testing.T, section, clause string) {
	t.Log("\n" + section)
	for env, text := range map[string]string{"SHIPPER_BENCH_OUT": section, "SHIPPER_BENCH_SUMMARY": clause} {
		out := os.Getenv(env)
		if out == "" {
			continue
		}
		f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(f, text)
		f.Close()
	}
}

// rawPublish is the baseline: a PublishMsgAsync loop of the same payloads
// with the same Nats-Msg-Id header and the same bound in flight, to a
// stream of the same settings, until every ack is in.
func rawPublish(t *testing.T, url string, lines [][]byte) time.Duration {
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	js.DeleteStream(ctx, "RAW")
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i, l := range lines {
		m := &nats.Msg{Subject: "raw.events.vpn-test.connect", Data: l, Header: nats.Header{}}
		m.Header[jetstream.MsgIDHeader] = []string{strconv.Itoa(i)}
		// Wait for room as long as it takes, as the shipper does with its
		// own window: the client's default 200 ms stall wait turns a busy
		// machine into a failed baseline, not a slower one.
		if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("raw publish did not complete")
	}
	d := time.Since(start)
	js.DeleteStream(ctx, "RAW")
	return d
}

// drain runs the shipper on a filled spool until the stream holds want
// messages; it returns the time from exec to that moment and the
// process's peak RSS.
func drain(t *testing.T, s *site, url string, want uint64) (time.Duration, int64) {
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js.DeleteStream(ctx, stream)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{"ocserv.events.>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	st, _ := js.Stream(ctx, stream)
	start := time.Now()
	p := s.start()
	for {
		// A context per reading: the drain may outlast any one deadline.
		ictx, icancel := context.WithTimeout(context.Background(), 5*time.Second)
		info, err := st.Info(ictx)
		icancel()
		if err == nil && info.State.Msgs >= want {
			break
		}
		if time.Since(start) > 10*time.Minute {
			t.Fatal("drain did not finish in 10 minutes")
		}
		time.Sleep(2 * time.Millisecond)
	}
	d := time.Since(start)
	hwm := vmHWM(p.cmd.Process.Pid)
	p.stop()
	return d, hwm
}

func TestBenchThroughput(t *testing.T) {
	benchEnv(t)
	n := benchInt("SHIPPER_BENCH_EVENTS", 100000)
	runs := benchInt("SHIPPER_BENCH_RUNS", 5)
	srv := startServer(t, 0, t.TempDir())
	var raw, ship []float64
	var payload int64
	for r := 0; r < runs; r++ {
		s := newSite(t, srv.ClientURL(), nil)
		lines, size := fillSpool(t, s, n, true)
		payload = size / int64(n)
		d := rawPublish(t, srv.ClientURL(), lines)
		raw = append(raw, float64(len(lines))/d.Seconds())
		d, _ = drain(t, s, srv.ClientURL(), uint64(n))
		ship = append(ship, float64(n)/d.Seconds())
		t.Logf("run %d: raw %.0f/s, shipper %.0f/s", r+1, raw[r], ship[r])
	}
	report(t, fmt.Sprintf("## Throughput: spool → acknowledged\n\n%d events of %d bytes (a real connect event), %d runs, one embedded nats-server, file storage.\n\n"+
		"| | median events/s | runs |\n|---|---|---|\n| raw PublishMsgAsync loop (same payloads, Nats-Msg-Id, 1024 in flight) | %.0f | %s |\n| shipper process (exec → last ack stored) | %.0f | %s |\n\n"+
		"**Ratio shipper / raw: %.2f** (goal ≥ 0.5)\n", n, payload, runs, median(raw), fmtList(raw), median(ship), fmtList(ship), median(ship)/median(raw)),
		fmt.Sprintf("spool to acknowledged JetStream messages at **%.2fx** the rate of a raw PublishMsgAsync loop of the same payloads (goal ≥ 0.5x)", median(ship)/median(raw)))
}

func fmtList(xs []float64) string {
	var s []string
	for _, x := range xs {
		s = append(s, strconv.FormatFloat(x, 'f', 0, 64))
	}
	return strings.Join(s, ", ")
}

func TestBenchLatency(t *testing.T) {
	benchEnv(t)
	rate := 100
	secs := benchInt("SHIPPER_BENCH_LATENCY_SECONDS", 10)
	srv := startServer(t, 0, t.TempDir())
	s := newSite(t, srv.ClientURL(), map[string]string{"SPOOL_FSYNC": "on"})
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	recv := map[string]time.Time{}
	if _, err := nc.Subscribe("ocserv.events.>", func(m *nats.Msg) {
		now := time.Now()
		mu.Lock()
		recv[m.Header.Get(natsjs.HeaderSeq)] = now
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	p := s.start()
	p.waitNote("READY=1", 5*time.Second)
	s.hook("connect", "warmup", 1) // the stream is created on the first check
	waitFor(t, 10*time.Second, "the warm-up event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		_, ok := recv["1"]
		return ok
	})

	type run struct{ start, exit time.Time }
	var runs []run
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := 0; i < rate*secs; i++ {
		<-tick.C
		start := time.Now()
		cmd := exec.Command(hookBin)
		cmd.Env = []string{"REASON=connect", "USERNAME=u" + strconv.Itoa(i), "ID=" + strconv.Itoa(2000+i%500), "DEVICE=vpns" + strconv.Itoa(i%500),
			"IP_REAL=192.0.2.1", "IP_REMOTE=10.0.0.2", "VHOST=default", "OCSERV_TELEMETRY_CONFIG=" + s.cfgPath}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("hook: %v: %s", err, out)
		}
		runs = append(runs, run{start, time.Now()})
	}
	waitFor(t, 10*time.Second, "every event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(recv) == len(runs)+1
	})
	p.stop()
	var fromExit, fromStart []float64
	mu.Lock()
	for i, r := range runs {
		at, ok := recv[strconv.Itoa(i+2)] // seq 1 was the warm-up
		if !ok {
			t.Fatalf("event of hook run %d (seq %d) never received", i, i+2)
		}
		fromExit = append(fromExit, float64(at.Sub(r.exit).Microseconds())/1000)
		fromStart = append(fromStart, float64(at.Sub(r.start).Microseconds())/1000)
	}
	mu.Unlock()
	report(t, fmt.Sprintf("## Latency: hook → subscriber\n\n%d real hook processes at %d/s (SPOOL_FSYNC=on), a core subscriber on ocserv.events.>.\n"+
		"Negative figures: the event reached the subscriber before the hook process had exited and been reaped.\n\n"+
		"| measured from | p50 ms | p99 ms | max ms |\n|---|---|---|---|\n| hook exit | %.2f | %.2f | %.2f |\n| hook start (exec) | %.2f | %.2f | %.2f |\n\n"+
		"Goal: p50 ≤ 10 ms, p99 ≤ 50 ms from hook exit.\n",
		len(runs), rate, pct(fromExit, 50), pct(fromExit, 99), pct(fromExit, 100), pct(fromStart, 50), pct(fromStart, 99), pct(fromStart, 100)),
		fmt.Sprintf("from a hook's exit to a subscriber p50 **%.2f ms** and p99 **%.2f ms** at %d events/s (goals ≤ 10 ms and ≤ 50 ms)", pct(fromExit, 50), pct(fromExit, 99), rate))
}

func pct(xs []float64, p float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

func TestBenchDrainMemory(t *testing.T) {
	benchEnv(t)
	big := benchInt("SHIPPER_BENCH_BACKLOG", 1000000)
	srv := startServer(t, 0, t.TempDir())
	var rows []string
	var lastHWM int64
	for _, n := range []int{big / 10, big} {
		s := newSite(t, srv.ClientURL(), nil)
		_, size := fillSpool(t, s, n, false)
		d, hwm := drain(t, s, srv.ClientURL(), uint64(n))
		rows = append(rows, fmt.Sprintf("| %d | %d MiB | %.1f s | %.0f | %.1f MiB |", n, size>>20, d.Seconds(), float64(n)/d.Seconds(), float64(hwm)/(1<<20)))
		lastHWM = hwm
		os.RemoveAll(s.dir)
	}
	report(t, "## Drain of a backlog: time and the shipper's own peak RSS\n\nVmHWM from /proc/<pid>/status of the shipper process (the server runs in the test process).\n\n"+
		"| backlog events | spool size | drain time | events/s | shipper VmHWM |\n|---|---|---|---|---|\n"+strings.Join(rows, "\n")+"\n\nGoal: under 64 MiB, flat in the backlog size.\n",
		fmt.Sprintf("a backlog of %d events drained with the shipper's peak RSS at **%.1f MiB** (goal < 64 MiB)", big, float64(lastHWM)/(1<<20)))
}
