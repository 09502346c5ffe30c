package firewall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// childWaitDelay bounds how long a run waits for a child's output pipes
// once the child has exited or been killed. Only a descendant that left
// the child's process group and still holds the pipes makes it matter:
// everything in the group is killed with the child.
const childWaitDelay = 25 * time.Millisecond

// runChild runs one helper process (iptables-restore, iptables-save) with
// a bounded wait, whatever the process does:
//   - it gets a process group of its own, and when ctx ends the whole group
//     is killed, not only the child, so a grandchild cannot keep it going;
//   - Wait gives up on the pipes childWaitDelay after the child ended (or
//     was killed), so a descendant holding stdout or stderr open cannot hold
//     the hook past its budget (exec.Cmd.WaitDelay);
//   - whatever is left of the group afterwards is killed, so no helper of
//     ours outlives the call.
//
// The hook's budget depends on this: ocserv holds a login until the
// connect script exits.
func runChild(ctx context.Context, stdin io.Reader, name string, args ...string) (stdout []byte, err error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = childWaitDelay
	err = cmd.Run()
	if cmd.Process != nil {
		// The group's leader is gone; anything still in it is a leftover.
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
	}
	if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		// It did its job and exited 0; only a descendant held the pipes.
		err = nil
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return out.Bytes(), fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), nil
}
