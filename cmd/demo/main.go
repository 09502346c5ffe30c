// Command demo shows the product end to end on one machine without root or
// an installed NATS: an embedded nats-server with JetStream, the real
// bin/shipper as a systemd-style service (its READY=1 read from a
// NOTIFY_SOCKET), and the real bin/hook run with the environments ocserv
// gives its scripts, for a few users connecting, roaming and leaving. Each
// event is printed as a subscriber receives it, with the time from the
// hook's exit. It ends with the fleet ledger (bin/ledger on an embedded
// SQLite file) consuming the events it just shipped, and ctl history, who
// and usage answered by it. Everything it starts and every temporary
// directory is gone when it exits. `make demo` runs it after `make build`.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type user struct {
	name, device, ip string
	id               int
}

func run() error {
	bin := flag.String("bin", "bin", "directory holding the built hook and shipper")
	envDir := flag.String("env", "testdata/ocserv-hook-env", "directory of ocserv script environments")
	withConsole := flag.Bool("console", false, "then run bin/ledger with the web console on the demo's events until Ctrl-C")
	flag.Parse()
	hookBin, _ := filepath.Abs(filepath.Join(*bin, "hook"))
	shipperBin, _ := filepath.Abs(filepath.Join(*bin, "shipper"))
	ledgerBin, _ := filepath.Abs(filepath.Join(*bin, "ledger"))
	ctlBin, _ := filepath.Abs(filepath.Join(*bin, "ctl"))
	for _, b := range []string{hookBin, shipperBin, ledgerBin, ctlBin} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%s is missing; run `make build` first", b)
		}
	}
	envs := map[string]map[string]string{}
	for _, reason := range []string{"connect", "host-update", "disconnect"} {
		e, err := readEnv(filepath.Join(*envDir, reason+".env"))
		if err != nil {
			return err
		}
		envs[reason] = e
	}

	tmp, err := os.MkdirTemp("", "ocserv-telemetry-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	fmt.Println("== starting an embedded nats-server with JetStream")
	srv, err := natstest.Start(natstest.Options{StoreDir: filepath.Join(tmp, "jetstream"), Name: "demo"})
	if err != nil {
		return err
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	fmt.Println("   listening on", srv.ClientURL())

	spoolDir := filepath.Join(tmp, "spool")
	cfgPath := filepath.Join(tmp, "agent.env")
	cfg := fmt.Sprintf("SERVER_ID=demo-vpn1\nSPOOL_DIR=%s\nNATS_URL=%s\nSHIPPER_STATUS_INTERVAL=500ms\n", spoolDir, srv.ClientURL())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	type arrival struct {
		m  *nats.Msg
		at time.Time
	}
	msgs := make(chan arrival, 64)
	sub, err := nc.Subscribe("ocserv.events.>", func(m *nats.Msg) { msgs <- arrival{m, time.Now()} })
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()

	fmt.Println("== starting bin/shipper as a Type=notify service")
	sock := filepath.Join(tmp, "notify.sock")
	notes, err := listenNotify(sock)
	if err != nil {
		return err
	}
	defer notes.Close()
	sh := exec.Command(shipperBin, "--config", cfgPath)
	sh.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	logPath := filepath.Join(tmp, "shipper.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	sh.Stdout, sh.Stderr = logFile, logFile
	sh.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the demo
	started := time.Now()
	if err := sh.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- sh.Wait() }()
	defer func() {
		select {
		case <-exited:
		default:
			sh.Process.Kill()
			<-exited
		}
	}()
	if err := waitNote(notes, "READY=1", 10*time.Second); err != nil {
		return fmt.Errorf("shipper: %w (log: %s)", err, readTail(logPath))
	}
	fmt.Printf("   READY=1 after %s\n", time.Since(started).Round(time.Millisecond))
	// Keep reading the notify socket as systemd does: the shipper sends
	// STATUS= lines for as long as it runs, and a datagram socket nobody
	// reads fills up (make demo CONSOLE=1 runs for minutes). The shipper
	// does not block on a full one (package sdnotify drops STATUS= then),
	// but its STOPPING=1 would wait a second at exit.
	notes.SetReadDeadline(time.Time{})
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := notes.Read(buf); err != nil {
				return
			}
		}
	}()

	users := []user{
		{"alice", "vpns0", "192.168.250.50", 9114},
		{"bob", "vpns1", "192.168.250.106", 9113},
		{"carol", "vpns2", "192.168.250.77", 9120},
	}
	fmt.Println("== running bin/hook as ocserv would (connect, host-update, disconnect per user)")
	fmt.Println("   (latency: from the hook process's exit to the subscriber's receipt; a negative")
	fmt.Println("   figure means the event arrived before the hook process had been reaped)")
	fmt.Printf("   %-12s %-6s %-5s %-4s %-38s %s\n", "type", "user", "id", "seq", "subject", "latency")
	var lat []time.Duration
	var aliceOn time.Time // an instant while alice holds her address
	steps := []string{"connect", "connect", "connect", "host-update", "disconnect", "host-update", "disconnect", "disconnect"}
	order := []int{0, 1, 2, 1, 0, 2, 1, 2}
	for i, reason := range steps {
		u := users[order[i]]
		env := map[string]string{}
		for k, v := range envs[reason] {
			env[k] = v
		}
		env["USERNAME"], env["DEVICE"], env["IP_REMOTE"], env["ID"] = u.name, u.device, u.ip, fmt.Sprint(u.id)
		env["OCSERV_TELEMETRY_CONFIG"] = cfgPath
		exit, err := runHook(hookBin, env)
		if err != nil {
			return err
		}
		if u.name == "alice" && reason == "connect" {
			time.Sleep(50 * time.Millisecond)
			aliceOn = time.Now()
			time.Sleep(50 * time.Millisecond)
		}
		select {
		case a := <-msgs:
			m := a.m
			d := a.at.Sub(exit)
			lat = append(lat, d)
			var ev struct {
				Type    string `json:"type"`
				Seq     uint64 `json:"seq"`
				Session struct {
					Username string `json:"username"`
					ID       int    `json:"id"`
				} `json:"session"`
			}
			json.Unmarshal(m.Data, &ev)
			fmt.Printf("   %-12s %-6s %-5d %-4d %-38s %s\n", ev.Type, ev.Session.Username, ev.Session.ID, ev.Seq, m.Subject, d.Round(10*time.Microsecond))
		case <-time.After(5 * time.Second):
			return fmt.Errorf("no event on ocserv.events.> within 5s of the %s hook (shipper log: %s)", reason, readTail(logPath))
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Printf("== %d events delivered; latency median %s, max %s\n", len(lat), lat[len(lat)/2].Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	js, err := nc.JetStream()
	if err == nil {
		if si, err := js.StreamInfo("OCSERV_EVENTS", nats.Context(ctx)); err == nil {
			fmt.Printf("== stream %s holds %d messages (duplicate window %s)\n", si.Config.Name, si.State.Msgs, si.Config.Duplicates)
		}
	}
	if b, err := waitStatus(filepath.Join(spoolDir, "status.json"), len(lat), 5*time.Second); err == nil {
		fmt.Printf("== the shipper's status file (readable while NATS is down):\n%s", indent(string(b)))
	} else {
		fmt.Printf("== the shipper's status file: %v\n", err)
	}

	if *withConsole {
		// Nobody reads msgs from here on: stop the printing
		// subscription so its callback cannot block on a full channel.
		sub.Unsubscribe()
		hookRun := func(reason string, u user) error {
			env := map[string]string{}
			for k, v := range envs[reason] {
				env[k] = v
			}
			env["USERNAME"], env["DEVICE"], env["IP_REMOTE"], env["ID"] = u.name, u.device, u.ip, fmt.Sprint(u.id+100)
			env["OCSERV_TELEMETRY_CONFIG"] = cfgPath
			_, err := runHook(hookBin, env)
			return err
		}
		if err := runConsole(tmp, *bin, srv.ClientURL(), nc, func() error {
			for _, u := range users[:2] {
				if err := hookRun("connect", u); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}

	fmt.Println("== stopping the shipper with SIGTERM")
	sh.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("shipper exited with %v (log: %s)", err, readTail(logPath))
		}
		exited <- nil // let the deferred cleanup see it is gone
	case <-time.After(10 * time.Second):
		return fmt.Errorf("shipper did not stop within 10s of SIGTERM (log: %s)", readTail(logPath))
	}
	fmt.Println("   stopped cleanly; its log (there is no ocserv here, so its occtl poll for live state fails")
	fmt.Println("   and retries; the events do not depend on it):")
	fmt.Print(indent(readTail(logPath)))
	if err := showLedger(tmp, ledgerBin, ctlBin, srv.ClientURL(), users[0].ip, aliceOn); err != nil {
		return err
	}
	fmt.Println("== done; temporary directories removed")
	return nil
}

// showLedger runs the fleet ledger on an embedded SQLite file over the
// events just shipped, and asks it ctl's fleet questions.
func showLedger(tmp, ledgerBin, ctlBin, url, aliceIP string, aliceOn time.Time) error {
	fmt.Println("== the fleet ledger: bin/ledger on an embedded SQLite file consumes the events stream")
	dir := filepath.Join(tmp, "ledger")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ctlCfg := filepath.Join(dir, "ctl.env")
	keyFile := filepath.Join(dir, "operator.nk")
	if err := os.WriteFile(ctlCfg, []byte("NATS_URL="+url+"\nOPERATOR_KEY="+keyFile+"\n"), 0o600); err != nil {
		return err
	}
	ctlEnv := append(os.Environ(), "OCSERV_CTL_CONFIG="+ctlCfg)
	key, err := command(ctlEnv, ctlBin, "keygen", "--name", "demo-operator", "--role", "read-only")
	if err != nil {
		return err
	}
	trusted := filepath.Join(dir, "operators.keys")
	if err := os.WriteFile(trusted, []byte(key), 0o600); err != nil {
		return err
	}
	cfg := filepath.Join(dir, "ledger.env")
	db := filepath.Join(dir, "ledger.db")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("NATS_URL=%s\nLEDGER_DATABASE=%s\nLEDGER_TRUSTED_KEYS=%s\nLEDGER_NONCE_FILE=%s\n",
		url, db, trusted, filepath.Join(dir, "nonces"))), 0o600); err != nil {
		return err
	}
	out, err := command(nil, ledgerBin, "migrate", "--config", cfg)
	if err != nil {
		return err
	}
	fmt.Print(indent("$ ledger migrate\n" + out))
	logPath := filepath.Join(dir, "ledger.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	l := exec.Command(ledgerBin, "serve", "--config", cfg)
	l.Stdout, l.Stderr = logFile, logFile
	l.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := l.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- l.Wait() }()
	defer func() {
		l.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			l.Process.Kill()
			<-done
		}
	}()
	// Caught up when the database's position reaches the stream's end.
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := command(nil, ledgerBin, "status", "--config", cfg, "--json")
		var s struct {
			Position struct {
				StreamSeq uint64 `json:"stream_seq"`
			} `json:"position"`
			Last uint64 `json:"stream_last_seq"`
		}
		if err == nil && json.Unmarshal([]byte(st), &s) == nil && s.Last > 0 && s.Position.StreamSeq >= s.Last {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the ledger did not catch up within 15s (log: %s)", readTail(logPath))
		}
		time.Sleep(200 * time.Millisecond)
	}
	st, _ := command(nil, ledgerBin, "status", "--config", cfg)
	fmt.Print(indent("$ ledger status\n" + st))
	for _, q := range [][]string{
		{"history"},
		{"who", "--ip", aliceIP, "--at", aliceOn.UTC().Format(time.RFC3339Nano)},
		{"usage"},
	} {
		out, err := command(ctlEnv, ctlBin, q...)
		if err != nil {
			return fmt.Errorf("ctl %s: %w (ledger log: %s)", q[0], err, readTail(logPath))
		}
		fmt.Print(indent("$ ctl " + strings.Join(q, " ") + "\n" + out))
	}
	return nil
}

// command runs a program to its end and returns its standard output.
func command(env []string, bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", filepath.Base(bin), strings.Join(args, " "), err, errb.String())
	}
	return string(out), nil
}

func runHook(bin string, env map[string]string) (time.Time, error) {
	cmd := exec.Command(bin)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	exit := time.Now()
	if err != nil {
		return exit, fmt.Errorf("hook %s: %v: %s", env["REASON"], err, out)
	}
	return exit, nil
}

func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read script environment: %w", err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env, sc.Err()
}

// listenNotify is systemd's side of sd_notify: a unix datagram socket.
func listenNotify(path string) (*net.UnixConn, error) {
	return net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
}

func waitNote(c *net.UnixConn, want string, within time.Duration) error {
	deadline := time.Now().Add(within)
	buf := make([]byte, 4096)
	for {
		c.SetReadDeadline(deadline)
		n, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("no %s within %s", want, within)
		}
		for _, l := range strings.Split(string(buf[:n]), "\n") {
			if l == want {
				return nil
			}
		}
	}
}

func readTail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("   " + l + "\n")
	}
	return b.String()
}

// waitStatus waits until the shipper's status file (rewritten every
// SHIPPER_STATUS_INTERVAL) accounts for all n events, so the demo shows
// the state after delivery rather than a write from before it.
func waitStatus(path string, n int, limit time.Duration) ([]byte, error) {
	deadline := time.Now().Add(limit)
	var last []byte
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(path)
		if err == nil {
			last = b
			var st struct {
				Acknowledged int `json:"acknowledged"`
			}
			if json.Unmarshal(b, &st) == nil && st.Acknowledged >= n {
				return b, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if last != nil {
		return last, nil // show what there is; the counters lag the delivery
	}
	return nil, fmt.Errorf("not written within %s", limit)
}
