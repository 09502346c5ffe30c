package testbed

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// syncBuffer collects a process's output for polling while it runs, and
// mirrors it into a log file that outlives the process.
type syncBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	file io.Writer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.file != nil {
		_, _ = b.file.Write(p)
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a long-running child (ocserv, openconnect) in its own process
// group, so that stopping it also stops everything it forked.
type proc struct {
	name    string
	cmd     *exec.Cmd
	out     *syncBuffer
	logFile *os.File
	done    chan struct{} // closed when the process has been reaped
	waitErr error
}

// startProc starts argv (no shell) with stdin and env (nil: inherited),
// its output in logPath.
func startProc(name, logPath string, stdin io.Reader, env []string, argv ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, out: &syncBuffer{file: f}, logFile: f, done: make(chan struct{})}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = stdin
	cmd.Env = env
	cmd.Stdout = p.out
	cmd.Stderr = p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// If the test binary dies without running its cleanups, the
		// kernel kills the child instead of leaving it running.
		Pdeathsig: syscall.SIGKILL,
	}
	p.cmd = cmd
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", strings.Join(argv, " "), err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process only (not its group).
func (p *proc) signal(sig syscall.Signal) error {
	if p.exited() {
		return fmt.Errorf("%s has exited: %v", p.name, p.waitErr)
	}
	return p.cmd.Process.Signal(sig)
}

// wait waits at most d for the process to exit.
func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// stop ends the whole process group: first sig, then SIGKILL after grace.
// Children that left the group are found by namespace deletion later.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	pgid := p.cmd.Process.Pid
	if !p.exited() {
		_ = syscall.Kill(-pgid, sig)
		if !p.wait(grace) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			p.wait(5 * time.Second)
		}
	}
	// The leader may be gone while forked members of its group live on.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	p.logFile.Close()
}

// waitOutput polls the process's output until cond holds, the process
// exits, or d passes.
func (p *proc) waitOutput(d time.Duration, cond func(string) bool) (string, error) {
	deadline := time.Now().Add(d)
	for {
		out := p.out.String()
		if cond(out) {
			return out, nil
		}
		if p.exited() {
			// One last look: output may have landed just before exit.
			out = p.out.String()
			if cond(out) {
				return out, nil
			}
			return out, fmt.Errorf("%s exited (%v)", p.name, p.waitErr)
		}
		if time.Now().After(deadline) {
			return out, fmt.Errorf("%s: condition not met within %s", p.name, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
