// Package hooktest runs the real hook binary against a private spool, for
// the tests of every package that needs hook events on disk.
package hooktest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/envfile"
)

// Root returns the module's root directory.
func Root() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("find module root: not inside the module")
	}
	return filepath.Dir(gomod), nil
}

// Build compiles cmd/hook into dir and returns the binary's path, so tests
// run the code under test rather than whatever bin/ holds.
func Build(dir string) (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "hook")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/hook")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build hook: %v\n%s", err, out)
	}
	return bin, nil
}

// Sandbox is a config file and a spool directory in a test's temp dir.
type Sandbox struct {
	Bin    string
	Config string
	Spool  string
}

// TimerSlack is how late a timer may fire and its goroutine run on a busy
// 2-core machine: the upper bound tests allow past a budget. It is well
// under the hook's 500ms default budget, so a test cannot mistake the
// default for the budget it configured.
const TimerSlack = 250 * time.Millisecond

// Bin is the hook binary Main built for this test process.
var Bin string

// Main builds the hook once for a package's tests, runs them and removes
// the binary. Call it from TestMain.
func Main(m *testing.M) {
	dir, err := os.MkdirTemp("", "hooktest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if Bin, err = Build(dir); err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// NewSandbox writes a config with SERVER_ID=test-server, SPOOL_DIR in a
// temp dir, plus extra lines (which may override them), and HOOK_BUDGET=10s
// unless extra sets it.
func NewSandbox(t testing.TB, extra string) *Sandbox {
	t.Helper()
	if Bin == "" {
		t.Fatal("hooktest: call hooktest.Main(m) from TestMain first")
	}
	bin := Bin
	dir := t.TempDir()
	sb := &Sandbox{Bin: bin, Config: filepath.Join(dir, "agent.env"), Spool: filepath.Join(dir, "spool")}
	// The longest budget the hook accepts: these tests check what lands in
	// the spool, and a slow disk on a busy machine must not send an event
	// to ocserv's log instead. Tests of the budget set their own.
	cfg := "SERVER_ID=test-server\nSPOOL_DIR=" + sb.Spool + "\n" + extra
	if !strings.Contains(extra, "HOOK_BUDGET=") {
		cfg += "HOOK_BUDGET=10s\n"
	}
	if err := os.WriteFile(sb.Config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return sb
}

// Result is how one hook process ended.
type Result struct {
	Code    int
	Signal  syscall.Signal // set when the process was killed
	Stderr  string
	Elapsed time.Duration
}

// Run executes the hook with exactly env (nothing inherited) and args
// after --config.
func (sb *Sandbox) Run(t testing.TB, env map[string]string, args ...string) Result {
	t.Helper()
	cmd := exec.Command(sb.Bin, append([]string{"--config", sb.Config}, args...)...)
	cmd.Env = envfile.List(env)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	res := Result{Stderr: stderr.String(), Elapsed: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.Code = exit.ExitCode()
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = ws.Signal()
		}
	case err != nil:
		t.Fatalf("run hook: %v", err)
	}
	return res
}

// Raw returns the active queue file's bytes.
func (sb *Sandbox) Raw(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sb.Spool, "queue.ndjson"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return b
}

// Events decodes every event in the spool's pending chunks and queue, in
// file order, failing the test on a line that does not decode.
func (sb *Sandbox) Events(t testing.TB) []events.Event {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(sb.Spool, "pending", "*.ndjson"))
	sort.Strings(files)
	files = append(files, filepath.Join(sb.Spool, "queue.ndjson"))
	var out []events.Event
	for _, f := range files {
		b, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 1<<20), 2<<20)
		for sc.Scan() {
			var e events.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("%s: bad line %q: %v", f, sc.Text(), err)
			}
			out = append(out, e)
		}
	}
	return out
}
