package main

// Black-box harness: the real bin/ledger, built once for the package, run
// as processes against an embedded nats-server and a SQLite file or a
// throwaway PostgreSQL.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/pgtest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/syncbuf"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ingest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/postgres"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
)

var ledgerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ledger-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ledgerBin = filepath.Join(dir, "ledger")
	cmd := exec.Command("go", "build", "-o", ledgerBin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build ledger: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	pgtest.Main(m)
}

const stream = "OCSERV_EVENTS"

// bed is one NATS server with the events stream, a database and a ledger
// configuration.
type bed struct {
	t        *testing.T
	dir      string
	url      string
	nc       *nats.Conn
	js       jetstream.JetStream
	db       string // path or DSN
	cfg      string
	operator nkeys.KeyPair
	extra    map[string]string
}

func newBed(t *testing.T, engine string, extra map[string]string) *bed {
	t.Helper()
	srv := natstest.Run(t)
	b := &bed{t: t, dir: t.TempDir(), url: srv.ClientURL(), extra: extra}
	var err error
	if b.nc, err = nats.Connect(b.url); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.nc.Close)
	if b.js, err = jetstream.New(b.nc); err != nil {
		t.Fatal(err)
	}
	if _, err := b.js.CreateStream(context.Background(), jetstream.StreamConfig{Name: stream, Subjects: []string{"ocserv.events.>"},
		Storage: jetstream.FileStorage, Duplicates: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	switch engine {
	case "sqlite":
		b.db = filepath.Join(b.dir, "ledger.db")
	case "postgres":
		b.db = pgtest.Database(t)
	default:
		t.Fatalf("engine %q", engine)
	}
	b.operator, _ = nkeys.CreateUser()
	pub, _ := b.operator.PublicKey()
	if err := os.WriteFile(filepath.Join(b.dir, "operators.keys"), []byte("read-only "+pub+" test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.writeConfig()
	if out, err := b.run("migrate"); err != nil {
		t.Fatalf("ledger migrate: %v\n%s", err, out)
	}
	return b
}

func (b *bed) writeConfig() {
	kv := map[string]string{
		"NATS_URL": b.url, "LEDGER_DATABASE": b.db, "LEDGER_TRUSTED_KEYS": filepath.Join(b.dir, "operators.keys"),
		"LEDGER_NONCE_FILE": filepath.Join(b.dir, "nonces"), "LEDGER_BATCH": "200", "LEDGER_STANDBY_POLL": "300ms",
	}
	maps.Copy(kv, b.extra)
	var s strings.Builder
	for k, v := range kv {
		fmt.Fprintf(&s, "%s=%s\n", k, v)
	}
	b.cfg = filepath.Join(b.dir, "ledger.env")
	if err := os.WriteFile(b.cfg, []byte(s.String()), 0o600); err != nil {
		b.t.Fatal(err)
	}
}

// run runs a ledger subcommand to its end.
func (b *bed) run(args ...string) (string, error) {
	cmd := exec.Command(ledgerBin, append(args[:1:1], append([]string{"--config", b.cfg}, args[1:]...)...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// proc is a running `ledger serve`.
type proc struct {
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{}
}

// serve starts the service; crash arms a crash point.
func (b *bed) serve(crash string) *proc { return b.serveConfig(b.cfg, crash) }

// second writes the configuration of another instance on the same
// database: its own nonce cache (a cache belongs to one process).
func (b *bed) second() string {
	old := b.cfg
	b.extra = maps.Clone(b.extra)
	if b.extra == nil {
		b.extra = map[string]string{}
	}
	b.extra["LEDGER_NONCE_FILE"] = filepath.Join(b.dir, "nonces-2")
	b.writeConfig()
	second := b.cfg + ".2"
	os.Rename(b.cfg, second)
	b.cfg = old
	b.extra["LEDGER_NONCE_FILE"] = filepath.Join(b.dir, "nonces")
	b.writeConfig()
	return second
}

func (b *bed) serveConfig(cfg, crash string) *proc {
	b.t.Helper()
	return b.serveEnv(cfg, "OCSERV_TELEMETRY_CRASHPOINT="+crash)
}

// serveEnv starts the service with env added to the test's environment.
func (b *bed) serveEnv(cfg string, env ...string) *proc {
	b.t.Helper()
	cmd := exec.Command(ledgerBin, "serve", "--config", cfg)
	p := &proc{cmd: cmd, out: &syncbuf.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	b.t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.kill()
	}
}

// killedBySignal reports whether the process ended by SIGKILL (a crash
// point, or the test).
func (p *proc) killedBySignal() bool {
	<-p.done
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// publish puts messages on the stream as the shipper does (Nats-Msg-Id =
// event_id).
func (b *bed) publish(msgs []ledger.Message) {
	b.t.Helper()
	for _, m := range msgs {
		nm := nats.NewMsg(m.Subject)
		nm.Data = m.Data
		var e struct {
			ID string `json:"event_id"`
		}
		if json.Unmarshal(m.Data, &e) == nil && e.ID != "" {
			nm.Header.Set(jetstream.MsgIDHeader, e.ID)
		}
		if _, err := b.js.PublishMsgAsync(nm); err != nil {
			b.t.Fatal(err)
		}
	}
	select {
	case <-b.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		b.t.Fatal("publishes not acknowledged in 30s")
	}
}

func (b *bed) lastSeq() uint64 {
	b.t.Helper()
	s, err := b.js.Stream(context.Background(), stream)
	if err != nil {
		b.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		b.t.Fatal(err)
	}
	return info.State.LastSeq
}

// open opens the bed's database in the test process.
func (b *bed) open() ledger.Store {
	b.t.Helper()
	var s ledger.Store
	var err error
	if strings.HasPrefix(b.db, "postgres") {
		s, err = postgres.Open(context.Background(), b.db, postgres.Options{})
	} else {
		s, err = sqlite.Open(context.Background(), b.db, sqlite.Options{})
	}
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { s.Close() })
	return s
}

// waitApplied waits until the database's position reaches seq.
func (b *bed) waitApplied(s ledger.Store, seq uint64, within time.Duration, p *proc) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	for {
		pos, err := s.Position(context.Background())
		if err == nil && pos.StreamSeq >= seq {
			return
		}
		if time.Now().After(deadline) {
			out := ""
			if p != nil {
				out = p.out.String()
			}
			b.t.Fatalf("position %d (%v) did not reach %d within %s\n%s", pos.StreamSeq, err, seq, within, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reference rebuilds the tables in a fresh SQLite file from the whole
// stream, in stream order, in this process: what any correct ledger must
// equal.
func (b *bed) reference() map[string]string {
	b.t.Helper()
	ctx := context.Background()
	path := filepath.Join(b.t.TempDir(), "reference.db")
	if _, err := sqlite.Migrate(ctx, path); err != nil {
		b.t.Fatal(err)
	}
	s, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		b.t.Fatal(err)
	}
	defer s.Close()
	if _, err := ingest.Replay(ctx, ingest.ReplayOptions{JS: b.js, Stream: stream, Prefix: "ocserv", Store: s, FromSeq: 1, Batch: 97}); err != nil {
		b.t.Fatal(err)
	}
	return ledgertest.Checksum(b.t, s)
}

func workload(seed uint64, n int) []ledger.Message {
	var msgs []ledger.Message
	ledgertest.Workload{Seed: seed, Servers: 3, Users: 50}.Emit(n, func(m ledger.Message) bool { msgs = append(msgs, m); return true })
	return msgs
}

func sameTables(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if !maps.Equal(got, want) {
		for k := range want {
			if got[k] != want[k] {
				t.Errorf("%s: table %s: %s, want %s", what, k, got[k], want[k])
			}
		}
		t.FailNow()
	}
}
