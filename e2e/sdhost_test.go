//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/debroot"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/distro"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/nspawn"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
)

// An ocserv host under a real systemd: a debootstrapped Debian booted in
// systemd-nspawn (package nspawn) with Debian's ocserv running as its own
// service, configured as an operator would (a certificate, a user), a
// release directory of this build bind-mounted read-only, an embedded
// nats-server on the host reachable from inside, and real openconnect
// clients in namespaces of their own.

const (
	// sdRelease is where the release directory (what the package ships:
	// install.sh, bin/, systemd/, packaging/agent.env.example, plus the
	// .deb) appears inside the container.
	sdRelease = "/srv/ocserv-telemetry"
	// The container's host name and the SERVER_ID install.sh derives.
	sdHostname = "vpn1.example.test"
	sdServerID = "vpn1_example_test"
	// The NATS port inside the container (its own loopback).
	sdNATSPort  = 4222
	shipperUnit = "ocserv-telemetry-shipper.service"
	snakeoil    = "/etc/ssl/certs/ssl-cert-snakeoil.pem"
	snakeoilKey = "/etc/ssl/private/ssl-cert-snakeoil.key"
	// Debian's ocserv listens on 443 (tcp and udp).
	ocservPort = 443
)

// sdUsers: the account the operator adds with ocpasswd.
var sdUsers = []testbed.User{{Name: "alice", Password: "alice-secret-1"}}

// sdSuite is the Debian release whose systemd and ocserv the tests run:
// the one shipping the ocserv version $OCSERV_VERSION selects (make e2e
// runs ./e2e once per version), so Debian 12 (1.1.6), 13 (1.3.0) and sid
// (1.5.0) each get one pass.
type sdSuite struct {
	Suite  string
	Ocserv string // the version Debian ships, checked at start
}

func selectedSuite(t *testing.T) sdSuite {
	t.Helper()
	rel, err := distro.Selected()
	if err != nil {
		t.Fatal(err)
	}
	return sdSuite{Suite: rel.Suite, Ocserv: rel.Version}
}

// sdRootSpec is the cached root of suite: minbase plus what a Debian ocserv
// host has. procps is priority "important", so on every real install but
// not in minbase; without it `systemctl reload ocserv` fails (Debian's
// unit reloads with /bin/kill, which procps ships).
func sdRootSpec(suite string) debroot.Spec {
	return debroot.Spec{
		Kind:    "nspawn",
		Suite:   suite,
		Include: []string{"systemd", "systemd-sysv", "dbus", "ocserv", "iproute2", "procps"},
		Files:   map[string]string{"/etc/hostname": sdHostname + "\n"},
	}
}

// sdHost is one booted container with Debian's ocserv running.
type sdHost struct {
	t     *testing.T
	suite sdSuite
	m     *nspawn.Machine
	nats  *server.Server
	bed   *testbed.Bed // openconnect clients
	deb   string       // the .deb's file name in sdRelease
	ev    *eventLog
}

// newSDHost boots a fresh container of suite and prepares it as an
// operator would before installing ocserv-telemetry.
func newSDHost(t *testing.T, suite sdSuite) *sdHost {
	t.Helper()
	testbed.RequireRoot(t)
	release, deb := stageRelease(t)
	ctx, cancel := context.WithTimeout(context.Background(), debroot.BuildTimeout+5*time.Minute)
	defer cancel()
	root, err := debroot.Ensure(ctx, sdRootSpec(suite.Suite), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m := nspawn.Boot(t, nspawn.Options{Root: root, Binds: []nspawn.Bind{{Host: release, Container: sdRelease}}})
	t.Logf("%s: booted to multi-user.target in %s", suite.Suite, time.Since(start).Round(time.Millisecond))
	h := &sdHost{t: t, suite: suite, m: m, deb: deb}

	// Recorded for docs/install.md: each release's systemd and its taint
	// (none on the unified cgroup hierarchy the container gets).
	sdVersion, _ := m.Exec(10*time.Second, "systemctl", "--version")
	taint, _ := m.Systemctl("show", "--property=Tainted", "--value")
	t.Logf("%s: %s, tainted %q", suite.Suite, strings.SplitN(string(sdVersion), "\n", 2)[0], strings.TrimSpace(taint))

	out, err := m.Exec(10*time.Second, "ocserv", "--version")
	if err != nil || !strings.Contains(string(out), suite.Ocserv) {
		t.Fatalf("%s: ocserv --version: %v\n%s\nwant %s", suite.Suite, err, out, suite.Ocserv)
	}
	h.configureOcserv()

	h.nats = natstest.Run(t)
	forwardIntoNetns(t, m.NetNS(), sdNATSPort, h.nats.Addr().String())
	h.ev = subscribeEvents(t, h.nats.ClientURL())
	pin, err := testbed.CertPin(h.hostPath(snakeoil))
	if err != nil {
		t.Fatal(err)
	}
	h.bed = testbed.Attach(t, m.NetNS(), ocservPort, pin, sdUsers)
	return h
}

// hostPath is a container file as the host sees it; it refuses a symbolic
// link (its target would be resolved on the host).
func (h *sdHost) hostPath(p string) string {
	h.t.Helper()
	hp := h.m.Path(p)
	if fi, err := os.Lstat(hp); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		h.t.Fatalf("%s is a symbolic link in the container; read it from inside", p)
	}
	return hp
}

// configureOcserv does what an operator does after apt-get install ocserv:
// a server certificate (Debian's snake-oil one; bookworm's ocserv.conf
// names none, trixie's names it already) and a user in ocserv's
// password file, then a restart; ocserv must come up and listen.
func (h *sdHost) configureOcserv() {
	t := h.t
	conf := h.hostPath(ocservConf)
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	if !hasActiveLine(s, "server-cert") {
		const example = "#server-cert = /etc/ocserv/server-cert.pem\n#server-key = /etc/ocserv/server-key.pem\n"
		if !strings.Contains(s, example) {
			t.Fatalf("%s names no server-cert and has no example lines to put one next to", ocservConf)
		}
		s = strings.Replace(s, example, example+"server-cert = "+snakeoil+"\nserver-key = "+snakeoilKey+"\n", 1)
		// WriteFile keeps the file's owner and mode.
		if err := os.WriteFile(conf, []byte(s), 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range sdUsers {
		if out, err := h.m.ExecInput(u.Password+"\n"+u.Password+"\n", 10*time.Second, "ocpasswd", "-c", "/etc/ocserv/passwd", u.Name); err != nil {
			t.Fatalf("ocpasswd: %v\n%s", err, out)
		}
	}
	if out, err := h.m.Systemctl("restart", "ocserv.service"); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, h.m.Journal("ocserv.service"))
	}
	h.waitOcserv()
}

func hasActiveLine(conf, key string) bool {
	for _, l := range strings.Split(conf, "\n") {
		if k, _, ok := strings.Cut(l, "="); ok && strings.TrimSpace(k) == key {
			return true
		}
	}
	return false
}

// waitOcserv waits until ocserv.service is running and accepts TCP
// connections in the container, and returns its MainPID.
func (h *sdHost) waitOcserv() string {
	h.t.Helper()
	p, err := h.m.WaitUnit("ocserv.service", 30*time.Second, func(p map[string]string) bool {
		return p["ActiveState"] == "active" && p["SubState"] == "running" && h.ocservListening()
	}, "ActiveState", "SubState", "MainPID")
	if err != nil {
		h.t.Fatal(err)
	}
	return p["MainPID"]
}

func (h *sdHost) ocservListening() bool {
	return testbed.InNetns(h.m.NetNS(), func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ocservPort)), time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}) == nil
}

// exec runs argv in the container and fails the test when it fails.
func (h *sdHost) exec(timeout time.Duration, argv ...string) string {
	h.t.Helper()
	out, err := h.m.Exec(timeout, argv...)
	if err != nil {
		h.t.Fatal(err)
	}
	return string(out)
}

// setNATS is the operator's step after the install: NATS_URL in
// agent.env, then a restart of the shipper.
func (h *sdHost) setNATS() {
	h.t.Helper()
	f, err := os.OpenFile(h.hostPath(instEnv), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	// And a short snapshot interval, so live state's occtl readings
	// come every 2s instead of 30s.
	_, err = fmt.Fprintf(f, "NATS_URL=nats://127.0.0.1:%d\nSNAPSHOT_INTERVAL=2s\n", sdNATSPort)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		h.t.Fatal(err)
	}
	if out, err := h.m.Systemctl("restart", shipperUnit); err != nil {
		h.t.Fatalf("%v\n%s\n%s", err, out, h.m.Journal(shipperUnit))
	}
}

// loginShips logs alice in and out with a real openconnect and waits for
// both events on NATS under this host's subject; it returns the connect
// event.
func (h *sdHost) loginShips(what string) events.Event {
	h.t.Helper()
	before := h.ev.count()
	c, err := h.bed.Connect("alice", h.bed.Password("alice"))
	if err != nil {
		h.t.Fatalf("%s: login refused: %v\n%s", what, err, h.m.Journal("ocserv.service"))
	}
	conn := h.ev.wait(h.t, what, before, events.Connect, "alice")
	if err := c.Disconnect(); err != nil {
		h.t.Fatal(err)
	}
	h.ev.wait(h.t, what, before, events.Disconnect, "alice")
	return conn
}

// stageRelease lays out a release directory as scripts/package.sh does
// (the package ships the same files) and adds the .deb of this build from
// dist/ (make package). The files are hard to tamper with from inside:
// the directory is bind-mounted read-only.
func stageRelease(t *testing.T) (dir, deb string) {
	t.Helper()
	repo := repoRoot(t)
	dir = t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]os.FileMode{
		"install.sh": 0o755, "bin/hook": 0o755, "bin/shipper": 0o755, "bin/ctl": 0o755, "bin/commander": 0o755,
		"systemd/ocserv-telemetry-shipper.service": 0o644, "systemd/ocserv-telemetry-commander.service": 0o644,
		"packaging/agent.env.example": 0o644,
	}
	for rel, mode := range files {
		data, err := os.ReadFile(filepath.Join(repo, rel))
		if err != nil {
			t.Fatalf("release file: %v (make build first)", err)
		}
		dst := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, mode); err != nil {
			t.Fatal(err)
		}
	}
	debs, _ := filepath.Glob(filepath.Join(repo, "dist", "ocserv-telemetry_*_"+runtime.GOARCH+".deb"))
	if len(debs) == 0 {
		t.Fatalf("no dist/ocserv-telemetry_*_%s.deb: run make package (make e2e does)", runtime.GOARCH)
	}
	// The newest, if older builds are still there; its binaries are
	// checked against bin/ after the install.
	sort.Slice(debs, func(i, j int) bool { return mtime(debs[i]).After(mtime(debs[j])) })
	data, err := os.ReadFile(debs[0])
	if err != nil {
		t.Fatal(err)
	}
	deb = filepath.Base(debs[0])
	if err := os.WriteFile(filepath.Join(dir, deb), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, deb
}

func mtime(p string) time.Time {
	fi, err := os.Stat(p)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// forwardIntoNetns listens on 127.0.0.1:port inside the network namespace
// ns and relays each connection to target on the host's loopback: the
// container reaches the embedded nats-server without any address or link
// in the host's namespace. Stopped, with every relayed connection, when
// the test ends.
func forwardIntoNetns(t *testing.T, ns string, port int, target string) {
	t.Helper()
	var ln net.Listener
	err := testbed.InNetns(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", ns, err)
	}
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	track := func(c net.Conn, add bool) bool {
		mu.Lock()
		defer mu.Unlock()
		if add && conns == nil {
			return false // stopping
		}
		if add {
			conns[c] = true
		} else {
			delete(conns, c)
		}
		return true
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			// Dialled from a goroutine not switched into ns: the host's
			// loopback.
			out, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				in.Close()
				continue
			}
			if !track(in, true) || !track(out, true) {
				in.Close()
				out.Close()
				return
			}
			wg.Add(2)
			relay := func(dst, src net.Conn) {
				defer wg.Done()
				_, _ = io.Copy(dst, src)
				dst.Close()
				src.Close()
				track(dst, false)
				track(src, false)
			}
			go relay(out, in)
			go relay(in, out)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		conns = nil
		mu.Unlock()
		wg.Wait()
	})
}

// eventLog is every event a plain NATS subscriber saw on ocserv.events.>.
type eventLog struct {
	mu       sync.Mutex
	subjects []string
	evs      []events.Event
}

func subscribeEvents(t *testing.T, url string) *eventLog {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	l := &eventLog{}
	_, err = nc.Subscribe("ocserv.events.>", func(m *nats.Msg) {
		var e events.Event
		if json.Unmarshal(m.Data, &e) != nil {
			return
		}
		l.mu.Lock()
		l.subjects = append(l.subjects, m.Subject)
		l.evs = append(l.evs, e)
		l.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return l
}

func (l *eventLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.evs)
}

// wait returns the first event of typ for user among those received after
// the first `from`, and checks its subject; bounded by eventWait.
func (l *eventLog) wait(t *testing.T, what string, from int, typ events.Type, user string) events.Event {
	t.Helper()
	deadline := time.Now().Add(eventWait)
	for {
		l.mu.Lock()
		for i := from; i < len(l.evs); i++ {
			e := l.evs[i]
			if e.Type == typ && e.Session != nil && e.Session.Username == user {
				subj := l.subjects[i]
				l.mu.Unlock()
				if want := "ocserv.events." + sdServerID + "." + string(typ); subj != want {
					t.Errorf("%s: %s event on %s, want %s", what, typ, subj, want)
				}
				return e
			}
		}
		n := len(l.evs)
		l.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s event of %s on NATS within %s (%d events seen)", what, typ, user, eventWait, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
