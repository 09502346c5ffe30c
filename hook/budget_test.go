package hook

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/hooktest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/syncbuf"
)

// When the disk hangs, the budget timer ends the run with status 0 and the
// event lands in ocserv's log instead, wherever the run hangs: at the
// append, or before it (the kick list, the spool's open, the session record).
func TestBudgetEndsAHungRun(t *testing.T) {
	for _, early := range []bool{false, true} {
		name := "at the append"
		if early {
			name = "before the append"
		}
		t.Run(name, func(t *testing.T) { testBudgetEndsAHungRun(t, early) })
	}
}

func testBudgetEndsAHungRun(t *testing.T, early bool) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.env")
	os.WriteFile(cfg, []byte("SPOOL_DIR="+filepath.Join(dir, "spool")+"\nHOOK_BUDGET=100ms\n"), 0o600)
	var stderr syncbuf.Buffer
	exited := make(chan int, 1)
	release, done := make(chan struct{}), make(chan struct{})
	defer func() { close(release); <-done }() // let the run finish before TempDir goes
	r := &Run{
		Args:   []string{"--config", cfg},
		Env:    map[string]string{"REASON": "connect", "ID": "77", "DEVICE": "vpns3", "USERNAME": "dave"},
		Stderr: &stderr,
		Start:  time.Now(),
		Exit:   func(code int) { exited <- code },
	}
	if early {
		r.stallEarly = func() { <-release }
	} else {
		r.stall = func() { <-release }
	}
	go func() { r.Main(); close(done) }()
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("exit %d, want 0", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the budget timer did not end the run")
	}
	// Not before the configured budget, and well before the 500ms default
	// budget the timer starts with: the configured one is what fired. The
	// margin is a timer firing and a goroutine running on a loaded machine.
	if el := time.Since(r.Start); el < 100*time.Millisecond || el > 100*time.Millisecond+hooktest.TimerSlack {
		t.Errorf("ended after %s; want its 100ms budget, at most %s late", el, hooktest.TimerSlack)
	}
	out := stderr.String()
	if !strings.Contains(out, "time budget spent") {
		t.Errorf("stderr does not say why: %q", out)
	}
	i := strings.Index(out, "so it is not lost: ")
	if i < 0 {
		t.Fatalf("the event was not kept in the log: %q", out)
	}
	var ev events.Event
	if err := json.Unmarshal([]byte(strings.SplitN(out[i+len("so it is not lost: "):], "\n", 2)[0]), &ev); err != nil {
		t.Fatalf("dumped event is not JSON: %v", err)
	}
	if ev.Session.Username != "dave" || ev.Type != events.Connect {
		t.Errorf("dumped event %+v", ev)
	}
}

// A panic inside the run is recovered and the login admitted.
func TestPanicIsRecovered(t *testing.T) {
	var stderr syncbuf.Buffer
	code := -1
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.env")
	os.WriteFile(cfg, []byte("SPOOL_DIR="+filepath.Join(dir, "spool")+"\n"), 0o600)
	r := &Run{
		Args:   []string{"--config", cfg},
		Env:    map[string]string{"REASON": "connect", "ID": "1", "DEVICE": "vpns0"},
		Stderr: &stderr,
		Start:  time.Now(),
		Exit:   func(c int) { code = c },
		stall:  func() { panic("boom") },
	}
	r.Main()
	if code != 0 || !strings.Contains(stderr.String(), "internal error") || !strings.Contains(stderr.String(), "boom") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

// A budget that runs out before the event exists (a CPU starved by other
// processes, say) still ends the run with 0, and the log names the session
// whose event is lost.
func TestBudgetBeforeTheEventNamesTheSession(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.env")
	os.WriteFile(cfg, []byte("SPOOL_DIR="+filepath.Join(dir, "spool")+"\nHOOK_BUDGET=100ms\n"), 0o600)
	var stderr syncbuf.Buffer
	exited := make(chan int, 1)
	release, done := make(chan struct{}), make(chan struct{})
	defer func() { close(release); <-done }()
	r := &Run{
		Args:             []string{"--config", cfg},
		Env:              map[string]string{"REASON": "connect", "ID": "78", "DEVICE": "vpns4", "USERNAME": "erin"},
		Stderr:           &stderr,
		Start:            time.Now(),
		Exit:             func(code int) { exited <- code },
		stallBeforeEvent: func() { <-release },
	}
	go func() { r.Main(); close(done) }()
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("exit %d, want 0", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the budget timer did not end the run")
	}
	if el := time.Since(r.Start); el < 100*time.Millisecond || el > 100*time.Millisecond+hooktest.TimerSlack {
		t.Errorf("ended after %s; want its 100ms budget, at most %s late", el, hooktest.TimerSlack)
	}
	out := stderr.String()
	if !strings.Contains(out, "time budget spent") || !strings.Contains(out, `it is lost: REASON="connect" USERNAME="erin" ID="78" DEVICE="vpns4"`) {
		t.Errorf("stderr does not name the session: %q", out)
	}
}
