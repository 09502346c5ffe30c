package main

// Black-box harness: the real bin/shipper and bin/hook, built once for the
// package, run as processes against embedded nats-servers.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/syncbuf"
	"github.com/ocserv-telemetry/ocserv-telemetry/natsjs"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

var shipperBin, hookBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shipper-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shipperBin, hookBin = filepath.Join(dir, "shipper"), filepath.Join(dir, "hook")
	for _, b := range [][2]string{{shipperBin, "."}, {hookBin, "../hook"}} {
		cmd := exec.Command("go", "build", "-o", b[0], b[1])
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b[1], err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// site is one VPN host: a spool, a configuration file, a server id.
type site struct {
	t        *testing.T
	dir      string
	spoolDir string
	cfgPath  string
	serverID string
	url      string
	extra    map[string]string
}

func newSite(t *testing.T, url string, extra map[string]string) *site {
	t.Helper()
	dir := t.TempDir()
	s := &site{t: t, dir: dir, spoolDir: filepath.Join(dir, "spool"), cfgPath: filepath.Join(dir, "agent.env"),
		serverID: "vpn-test", url: url, extra: extra}
	s.writeConfig()
	return s
}

func (s *site) writeConfig() {
	kv := map[string]string{
		"SERVER_ID":               s.serverID,
		"SPOOL_DIR":               s.spoolDir,
		"NATS_URL":                s.url,
		"SHIPPER_STATUS_INTERVAL": "200ms",
		"SPOOL_FSYNC":             "off", // tests kill processes, not the machine
		// The hook's longest budget: on a busy machine a hook past its
		// budget keeps its event in its log, not the spool, and these
		// tests count what reaches the stream.
		"HOOK_BUDGET": "10s",
	}
	for k, v := range s.extra {
		kv[k] = v
	}
	var b strings.Builder
	for k, v := range kv {
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	if err := os.WriteFile(s.cfgPath, []byte(b.String()), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// proc is a running shipper.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	out    *syncbuf.Buffer
	done   chan struct{}
	err    error
	notify *net.UnixConn
	notes  chan string
}

// start runs bin/shipper with a NOTIFY_SOCKET of its own; env adds
// variables (crash points, watchdog).
func (s *site) start(env ...string) *proc {
	s.t.Helper()
	sock := filepath.Join(s.dir, fmt.Sprintf("notify-%d.sock", time.Now().UnixNano()))
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		s.t.Fatal(err)
	}
	p := s.launch(sock, env...)
	p.notify, p.notes = nc, make(chan string, 1024)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			if err != nil {
				close(p.notes)
				return
			}
			for _, l := range strings.Split(string(buf[:n]), "\n") {
				select {
				case p.notes <- l:
				default: // a test that does not read notes must not block this
				}
			}
		}
	}()
	s.t.Cleanup(func() { nc.Close() })
	return p
}

// launch runs bin/shipper with NOTIFY_SOCKET=sock (a socket the caller
// made, read or not); the test's cleanup kills it.
func (s *site) launch(sock string, env ...string) *proc {
	s.t.Helper()
	p := &proc{t: s.t, out: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(shipperBin, "--config", s.cfgPath, "--drain-timeout", "3s")
	p.cmd.Env = append(append(os.Environ(), "NOTIFY_SOCKET="+sock), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	s.t.Cleanup(func() {
		p.kill()
		if s.t.Failed() {
			s.t.Logf("shipper pid %d output:\n%s", p.cmd.Process.Pid, p.out.String())
		}
	})
	return p
}

// waitNote waits for an sd_notify line starting with prefix.
func (p *proc) waitNote(prefix string, within time.Duration) string {
	p.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case l, ok := <-p.notes:
			if !ok {
				p.t.Fatalf("notify socket closed before %q", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-deadline:
			p.t.Fatalf("no sd_notify %q within %s; output:\n%s", prefix, within, p.out.String())
		}
	}
}

func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Kill()
	<-p.done
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			p.t.Fatalf("shipper exited with %v:\n%s", p.err, p.out.String())
		}
	case <-time.After(15 * time.Second):
		p.t.Fatalf("shipper did not stop within 15s of SIGTERM:\n%s", p.out.String())
	}
}

// exited reports whether the process is gone (and whether by SIGKILL).
func (p *proc) exited() (gone, killed bool) {
	select {
	case <-p.done:
		ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
		return true, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
	default:
		return false, false
	}
}

// hook runs bin/hook once as ocserv would.
func (s *site) hook(reason, user string, id int) error {
	env := []string{
		"REASON=" + reason, "USERNAME=" + user, "ID=" + strconv.Itoa(id), "DEVICE=vpns" + strconv.Itoa(id%100),
		"IP_REAL=192.0.2.1", "IP_REMOTE=10.0.0." + strconv.Itoa(id%250+1), "IP_LOCAL=10.0.0.254", "VHOST=default",
		"OCSERV_TELEMETRY_CONFIG=" + s.cfgPath, "PATH=/usr/bin:/bin",
	}
	if reason == "disconnect" {
		env = append(env, "STATS_BYTES_IN=10", "STATS_BYTES_OUT=20", "STATS_DURATION=3")
	}
	cmd := exec.Command(hookBin)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("time budget spent")) {
		return fmt.Errorf("hook %s: %v: %s", reason, err, out)
	}
	return nil
}

// openSpool opens the site's spool as the hook does.
func (s *site) openSpool() *spool.Spool {
	s.t.Helper()
	sp, err := spool.Open(s.spoolDir, spool.Options{Create: true, LockWait: 5 * time.Second})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { sp.Close() })
	return sp
}

// appendEvents appends n connect events through the spool, the way the
// hook does but without a process per event, and returns their seqs.

// appender keeps appending batches of 5 events every pause until stop.
type appender struct {
	mu   sync.Mutex
	seqs []uint64
	done chan struct{}
	wg   sync.WaitGroup
}

// appendWhile starts an appender.
func (s *site) appendWhile(pause time.Duration) *appender {
	a := &appender{done: make(chan struct{})}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for {
			select {
			case <-a.done:
				return
			default:
			}
			q := s.appendEvents(5)
			a.mu.Lock()
			a.seqs = append(a.seqs, q...)
			a.mu.Unlock()
			time.Sleep(pause)
		}
	}()
	return a
}

func (a *appender) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seqs)
}

// waitMore waits until n more events than now have been appended, so a
// phase of a test (before, during, after an outage) is a counted number of
// appends rather than a length of time.
func (a *appender) waitMore(t *testing.T, n int, what string) {
	t.Helper()
	want := a.count() + n
	waitFor(t, 20*time.Second, fmt.Sprintf("%d events appended %s", n, what), func() bool { return a.count() >= want })
}

// stop ends the appends and returns every seq appended.
func (a *appender) stop() []uint64 {
	close(a.done)
	a.wg.Wait()
	return a.seqs
}

func (s *site) appendEvents(n int) []uint64 {
	s.t.Helper()
	sp := s.openSpool()
	seqs := make([]uint64, 0, n)
	for i := 0; i < n; i++ {
		info, err := sp.Append(func(st spool.Stamp) ([]byte, error) {
			ev := events.Event{V: 1, EventID: uuid.Must(uuid.NewV7()).String(), ServerID: s.serverID,
				SpoolID: st.SpoolID, Seq: st.Seq, Type: events.Connect, Time: time.Now().UTC().Format(time.RFC3339Nano),
				Session: &events.Session{ID: 1000 + i, Username: fmt.Sprintf("user%d", i), Device: "vpns0"}}
			return ev.Marshal()
		})
		if err != nil {
			s.t.Fatal(err)
		}
		seqs = append(seqs, info.Seq)
	}
	return seqs
}

func (s *site) status() map[string]any {
	b, err := os.ReadFile(filepath.Join(s.spoolDir, spool.StatusFile))
	if err != nil {
		return nil
	}
	var m map[string]any
	if jsonUnmarshal(b, &m) != nil {
		return nil
	}
	return m
}

// statusSince is the status file if it was written after t, else nil.
func (s *site) statusSince(t time.Time) map[string]any {
	m := s.status()
	if m == nil {
		return nil
	}
	at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m["time"]))
	if err != nil || !at.After(t) {
		return nil
	}
	return m
}

// streamMsg is one stored message.
type streamMsg struct {
	Subject string
	Data    []byte
	Header  nats.Header
	Seq     uint64 // Ocserv-Seq
	ID      string
}

// readStream returns every message in the stream, in stream order.
func readStream(t *testing.T, url, name string) []streamMsg {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	total := st.CachedInfo().State.Msgs
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []streamMsg
	for uint64(len(out)) < total {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			seq, _ := strconv.ParseUint(m.Headers().Get(natsjs.HeaderSeq), 10, 64)
			out = append(out, streamMsg{Subject: m.Subject(), Data: m.Data(), Header: m.Headers(), Seq: seq, ID: m.Headers().Get(jetstream.MsgIDHeader)})
		}
		if n == 0 {
			t.Fatalf("stream %s: read %d of %d messages, then nothing", name, len(out), total)
		}
	}
	return out
}

// streamCount is the number of messages stored (0 when the stream is missing).
func streamCount(url, name string) uint64 {
	nc, err := nats.Connect(url, nats.Timeout(time.Second))
	if err != nil {
		return 0
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		return 0
	}
	return st.CachedInfo().State.Msgs
}

// waitFor polls cond every 20ms until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// seqCounts counts stored messages per Ocserv-Seq.
func seqCounts(msgs []streamMsg) map[uint64]int {
	m := map[uint64]int{}
	for _, x := range msgs {
		m[x.Seq]++
	}
	return m
}

// freePort reserves a loopback port for a server started later.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startServer runs an embedded JetStream server on port with store dir.
func startServer(t *testing.T, port int, store string) *server.Server {
	t.Helper()
	s, err := natstest.Start(natstest.Options{Port: port, StoreDir: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}
