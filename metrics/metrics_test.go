package metrics

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/syncbuf"
	"github.com/ocserv-telemetry/ocserv-telemetry/livestate"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/bucket"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/mirror"
	"github.com/ocserv-telemetry/ocserv-telemetry/shipper"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// liveService runs a live-state service over a fake occtl answering with
// the real 1.1.6 fixtures (alice and bob connected).
func liveService(t *testing.T) *livestate.Service {
	t.Helper()
	dir := t.TempDir()
	fx := filepath.Join("..", "testdata", "occtl-1.1.6-json")
	script := "#!/bin/sh\nwhile [ \"$1\" = -s ] || [ \"$1\" = -j ]; do [ \"$1\" = -s ] && shift; shift; done\n" +
		"case \"$*\" in\n--version) echo 'occtl version 1.1.6';;\n" +
		"'show users') cat '" + fx + "/show-users.json';;\n" +
		"'show status') cat '" + fx + "/show-status.json';;\n" +
		"*) echo '[ ]';;\nesac\n"
	abs, _ := filepath.Abs(fx)
	script = strings.ReplaceAll(script, fx, abs)
	occtl := filepath.Join(dir, "occtl")
	if err := os.WriteFile(occtl, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{Create: true, LockWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	svc := livestate.New(livestate.Options{Occtl: &ocserv.Occtl{Path: occtl, Location: time.UTC}, Spool: sp, ServerID: "m",
		Interval: 100 * time.Millisecond, Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for svc.Status().Occtl != livestate.OcctlOK || svc.Status().Sessions == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("live state not ready: %+v", svc.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return svc
}

func scrape(t *testing.T, src Sources) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrCh := make(chan net.Addr, 1)
	go Serve(ctx, "127.0.0.1:0", Handler(src), slog.New(slog.DiscardHandler), func(a net.Addr) { addrCh <- a })
	var addr net.Addr
	select {
	case addr = <-addrCh:
	case <-time.After(5 * time.Second):
		t.Fatal("metrics endpoint did not listen")
	}
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %s\n%s", resp.Status, b)
	}
	return string(b)
}

func TestEndpoint(t *testing.T) {
	var cache StatusCache
	cache.Set(shipper.Status{NATS: "connected", BacklogEvents: 7, BacklogBytes: 1234, Published: 40, Acknowledged: 39, DroppedEvents: 2, Retries: 3})
	svc := liveService(t)
	cases := []struct {
		name    string
		perUser bool
		want    []string
		notWant []string
	}{
		{"server level", false, []string{
			"ocserv_telemetry_backlog_events 7",
			"ocserv_telemetry_backlog_bytes 1234",
			"ocserv_telemetry_published_total 40",
			"ocserv_telemetry_acknowledged_total 39",
			"ocserv_telemetry_dropped_events_total 2",
			"ocserv_telemetry_retries_total 3",
			`ocserv_telemetry_nats_state{state="connected"} 1`,
			`ocserv_telemetry_nats_state{state="reconnecting"} 0`,
			`ocserv_telemetry_occtl_state{state="ok"} 1`,
			`ocserv_telemetry_occtl_state{state="ocserv-down"} 0`,
			"ocserv_up 1",
			"ocserv_sessions 2",
			"ocserv_active_sessions 2",
			`ocserv_info{version="1.1.6"} 1`,
			"go_goroutines",
		}, []string{"ocserv_user_"}},
		{"per user", true, []string{
			`ocserv_user_sessions{user="alice"} 1`,
			`ocserv_user_sent_bytes{user="bob"} 400`,
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := scrape(t, Sources{Shipper: cache.Get, Live: svc, PerUser: c.perUser})
			lines := strings.Split(out, "\n")
			// A want with a value is a whole line; a bare name is a series
			// whose value varies (go_goroutines): a line "name value".
			has := func(w string) bool {
				for _, l := range lines {
					if l == w || !strings.Contains(w, " ") && strings.HasPrefix(l, w+" ") {
						return true
					}
				}
				return false
			}
			for _, w := range c.want {
				if !has(w) {
					t.Errorf("no line %q", w)
				}
			}
			for _, w := range c.notWant {
				for _, l := range lines {
					if strings.Contains(l, w) {
						t.Errorf("unexpected line %q", l)
					}
				}
			}
			if t.Failed() {
				t.Logf("scrape:\n%s", out)
			}
		})
	}
}

// A port already taken is logged and retried, and never blocks or panics.
func TestListenFailureIsNotFatal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var buf syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Serve(ctx, ln.Addr().String(), Handler(Sources{}), slog.New(slog.NewTextHandler(&buf, nil)), nil)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "cannot listen") {
		if time.Now().After(deadline) {
			t.Fatalf("the failed listen was not logged within 5s: %s", buf.String())
		}
		select {
		case <-done:
			t.Fatalf("Serve returned on a failed listen: %s", buf.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if n := strings.Count(buf.String(), "cannot listen"); n != 1 {
		t.Errorf("logged %d times, want once per distinct error: %s", n, buf.String())
	}
}

// The verdicts mirror's state: stale and its age, from a real mirror.
func TestPolicyMirrorMetrics(t *testing.T) {
	spool := t.TempDir()
	m, err := mirror.Open(spool)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	m.Touch(now.Add(-3*time.Minute), now)
	src := Sources{Policy: func() bucket.Report { return bucket.ReadReport(spool, 2*time.Minute, "admit", time.Now()) }}
	out := scrape(t, src)
	for _, want := range []string{
		`ocserv_telemetry_policy_mirror_state{state="stale"} 1`,
		`ocserv_telemetry_policy_mirror_state{state="fresh"} 0`,
		`ocserv_telemetry_policy_mirror_state{state="missing"} 0`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing line %q", want)
		}
	}
	if !regexp.MustCompile(`(?m)^ocserv_telemetry_policy_mirror_age_seconds 18\d\.`).MatchString(out) {
		t.Errorf("age not about 180 s:\n%s", grepLines(out, "policy"))
	}
	m.Touch(time.Now(), time.Now())
	if out := scrape(t, src); !strings.Contains(out, `ocserv_telemetry_policy_mirror_state{state="fresh"} 1`+"\n") {
		t.Errorf("after a heartbeat:\n%s", grepLines(out, "policy"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
