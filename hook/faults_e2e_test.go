//go:build e2e

package hook_test

// Faults that need root to be real: root ignores file modes, so an
// unwritable spool is a read-only mount and a full disk is a tiny tmpfs.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/hooktest"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for mounts; make e2e runs it as root")
	}
}

func mount(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		t.Fatalf("mount %v: %v\n%s", args, err, out)
	}
}

// unmountLater unmounts dir when the test ends, pass or fail.
func unmountLater(t *testing.T, dir string) {
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

func TestReadOnlySpoolKeepsEventInLog(t *testing.T) {
	needRoot(t)
	sb := hooktest.NewSandbox(t, "")
	sb.Run(t, refEnv(t, "connect"))
	mount(t, "--bind", sb.Spool, sb.Spool)
	unmountLater(t, sb.Spool)
	mount(t, "-o", "remount,bind,ro", sb.Spool)

	res := sb.Run(t, refEnv(t, "disconnect"))
	if res.Code != 0 {
		t.Errorf("exit %d on a read-only spool", res.Code)
	}
	if !strings.Contains(res.Stderr, "read-only file system") {
		t.Errorf("stderr does not say why: %q", res.Stderr)
	}
	dumped := dumpedEvent(t, res.Stderr)
	if dumped.Type != events.Disconnect || dumped.Session.Username != "bob" {
		t.Errorf("dumped %+v", dumped)
	}
	exec.Command("umount", sb.Spool).Run()
	if evs := sb.Events(t); len(evs) != 1 || evs[0].Type != events.Connect {
		t.Errorf("spool changed under a read-only mount: %d events", len(evs))
	}
	// Writable again: the next event goes in with the next seq.
	sb.Run(t, refEnv(t, "connect"))
	if evs := sb.Events(t); len(evs) != 2 || evs[1].Seq != 2 {
		t.Errorf("after remount: %+v", evs)
	}
}

// dumpedEvent finds the event a hook left in its stderr.
func dumpedEvent(t *testing.T, stderr string) events.Event {
	t.Helper()
	const marker = "so it is not lost: "
	i := strings.Index(stderr, marker)
	if i < 0 {
		t.Fatalf("event not kept in stderr: %q", stderr)
	}
	var e events.Event
	if err := json.Unmarshal([]byte(strings.SplitN(stderr[i+len(marker):], "\n", 2)[0]), &e); err != nil {
		t.Fatalf("dumped event: %v", err)
	}
	return e
}

// On a full disk every hook still exits 0, every event the disk could hold
// is in the spool, the others are in the log, and once there is room again
// appends go on from a clean line.
func TestFullDisk(t *testing.T) {
	needRoot(t)
	sb := hooktest.NewSandbox(t, "")
	if err := os.Mkdir(sb.Spool, 0o750); err != nil {
		t.Fatal(err)
	}
	mount(t, "-t", "tmpfs", "-o", "size=256k,mode=0750", "tmpfs", sb.Spool)
	unmountLater(t, sb.Spool)
	sb.Run(t, refEnv(t, "connect")) // lay out the spool
	// Fill all but a few KiB, so the queue runs out part-way through.
	filler := filepath.Join(sb.Spool, "filler")
	fillUntilFull(t, filler)
	os.Truncate(filler, mustSize(t, filler)-6000)

	written, kept := 1, 0
	for i := 0; i < 40; i++ {
		env := refEnv(t, "connect")
		env["USERNAME"] = fmt.Sprintf("u%d", i)
		res := sb.Run(t, env)
		if res.Code != 0 {
			t.Fatalf("exit %d on a full disk", res.Code)
		}
		if !strings.Contains(res.Stderr, "so it is not lost") {
			// Written; stderr may still report that the session state
			// could not be kept.
			written++
			continue
		}
		if !strings.Contains(res.Stderr, "no space left") {
			t.Errorf("stderr does not say the disk is full: %q", res.Stderr)
		}
		if e := dumpedEvent(t, res.Stderr); e.Session.Username != env["USERNAME"] {
			t.Errorf("wrong event kept: %+v", e.Session)
		}
		kept++
	}
	if kept == 0 || written < 2 {
		t.Fatalf("written %d, kept in log %d: the disk never filled or never had room", written, kept)
	}
	raw := sb.Raw(t)
	if len(raw) > 0 && raw[len(raw)-1] != '\n' {
		t.Errorf("queue left on a torn line after ENOSPC")
	}
	os.Remove(filler)
	res := sb.Run(t, refEnv(t, "disconnect"))
	if res.Code != 0 || res.Stderr != "" {
		t.Fatalf("after freeing space: exit %d, %q", res.Code, res.Stderr)
	}
	written++
	s, err := spool.Open(sb.Spool, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, _ := os.Open(filepath.Join(sb.Spool, "queue.ndjson"))
	defer f.Close()
	sc := spool.NewScanner(f, 0, true)
	valid, malformed := 0, 0
	seqs := map[uint64]bool{}
	for sc.Scan() {
		if sc.Line().Err != nil {
			malformed++
			continue
		}
		valid++
		if seqs[sc.Line().Rec.Seq] {
			t.Errorf("seq %d twice", sc.Line().Rec.Seq)
		}
		seqs[sc.Line().Rec.Seq] = true
	}
	if valid != written {
		t.Errorf("%d events in the spool, %d hooks said they wrote one", valid, written)
	}
	if malformed != 0 {
		t.Errorf("%d torn lines; failed writes must be cut back", malformed)
	}
}

func fillUntilFull(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{'x'}, 4096)
	for i := 0; i < 1<<16; i++ {
		if _, err := f.Write(buf); err != nil {
			return
		}
	}
	t.Fatal("tmpfs never filled")
}

func mustSize(t *testing.T, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// With no config file at all the hook uses the default spool directory.
// A private mount namespace with a tmpfs on /var/spool keeps the host's
// real spool out of it.
func TestMissingConfigUsesDefaultSpool(t *testing.T) {
	needRoot(t)
	env := refEnv(t, "connect")
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	script := `mount -t tmpfs none /var/spool && "$0" --config /nonexistent/agent.env && cat /var/spool/ocserv-telemetry/queue.ndjson`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, hooktest.Bin)
	cmd.Env = envList
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "/nonexistent/agent.env") || !strings.Contains(stderr.String(), "using defaults") {
		t.Errorf("stderr does not say the config is missing: %q", stderr.String())
	}
	var e events.Event
	if err := json.Unmarshal(stdout.Bytes(), &e); err != nil || e.Session.Username != "alice" || e.Seq != 1 {
		t.Errorf("event in the default spool: %q, %v", stdout.String(), err)
	}
}
