// Package testbed runs a real ocserv in a network namespace, with the
// product's hook wired as its connect, disconnect and host-update script,
// and real openconnect clients in namespaces of their own, so that
// end-to-end tests can prove that a real VPN login produces a real event.
//
// Everything here needs root (network namespaces, tun devices, ocserv).
// The package has no build tag so that it always compiles and vets; the
// tests that use it (e2e/) carry the e2e tag and skip when not root.
//
// Layout of one bed (names carry a random id, so concurrent or crashed runs
// never collide):
//
//	client ns "octs-<id>-c<k>" ── veth ── server ns "octs-<id>-s" (ocserv)
//
// or, with Options.Router, through a router namespace "octs-<id>-r" so the
// clients are outside ocserv's local subnets (ocserv does not enforce bans
// against a neighbour on a local subnet).
package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/distro"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// User is one account in the bed's ocpasswd file.
type User struct {
	Name     string
	Group    string // "" for no group
	Password string
}

// DefaultUsers are the accounts a bed has unless Options.Users says
// otherwise: alice without a group, bob and carol in group "staff".
var DefaultUsers = []User{
	{Name: "alice", Password: "alice-secret-1"},
	{Name: "bob", Group: "staff", Password: "bob-secret-2"},
	{Name: "carol", Group: "staff", Password: "carol-secret-3"},
}

// Options configure a bed. The zero value is a working bed with the
// default users, the hook behind its /bin/sh wrapper, IPv4 and IPv6
// tunnel networks, and clients on veth links next to the server.
type Options struct {
	Users []User // nil: DefaultUsers

	// Router puts every client behind a router namespace, outside the
	// server's local subnets (needed by ban tests).
	Router bool

	// RestrictToRoutes sets restrict-user-to-routes, which makes ocserv
	// run its fw script (Release().FwScript: Debian's ocserv-fw), which
	// runs our script with /bin/sh.
	RestrictToRoutes bool

	// HookDirect configures the compiled hook binary itself as the
	// scripts instead of the documented /bin/sh wrapper. Only for the
	// regression test showing why the wrapper is needed.
	HookDirect bool

	// MaxBanScore sets max-ban-score when > 0; BanResetTime sets
	// ban-reset-time (seconds after which a client's score is forgotten)
	// when > 0. BanTime sets min-reauth-time when > 0: in 1.1.6 that is
	// how long a ban lasts, and its built-in default is so short that a
	// ban is over within about two seconds.
	MaxBanScore  int
	BanResetTime int
	BanTime      int

	// NoIPv6 leaves out the IPv6 tunnel network.
	NoIPv6 bool

	// VPNCScript makes every client run the real vpnc-script (tunnel
	// addresses and routes configured, traffic can flow) instead of
	// /bin/true. Per client: ConnectOptions.VPNCScript.
	VPNCScript bool

	// ExtraConf lines are appended to ocserv.conf as they are.
	ExtraConf []string

	// AgentEnv lines (KEY=VALUE) are appended to agent.env, e.g. the
	// NATS_URL of an embedded server once the shipper is plugged in.
	AgentEnv []string

	// ServerID is agent.env's SERVER_ID; "" makes "e2e-<id>".
	ServerID string

	// Hook is the hook binary; "": HookBinary().
	Hook string

	// HookAsFwScript makes a wrapper running `hook --fw` ocserv's fw
	// script the way install.sh --firewall=on does on the bed's version
	// (firewall mode c; see fwmode.go): bind-mounted over the fw script
	// path the version runs (where install.sh diverts it), or, on a
	// version that reads it, named by OCSERV_FW_SCRIPT in ocserv's
	// environment (what install.sh's drop-in sets); and sets FIREWALL=on in
	// agent.env. Restricted users then get the hook's rules instead of
	// ocserv-fw's. The bed also raises the hook's budgets there (see
	// FwModeBudgets) unless AgentEnv sets them.
	HookAsFwScript bool
	// FwScriptByEnv, with HookAsFwScript, only names the wrapper in
	// ocserv's OCSERV_FW_SCRIPT (nothing mounted), whatever the version
	// reads: what an installer that trusted the variable on every version
	// did (TestFwScriptEnvironment).
	FwScriptByEnv bool
	// FirewallBackend is agent.env's FIREWALL_BACKEND ("": not set, auto).
	FirewallBackend string

	// PerUser holds ocserv per-user config lines by user name (e.g.
	// `restrict-user-to-ports = "tcp(443), icmp()"`); config-per-user is
	// set when it is not empty.
	PerUser map[string][]string

	// PerUserDir sets config-per-user (and PerGroupDir config-per-group)
	// to a directory of the bed even when PerUser is empty, so a test can
	// create and edit those files while ocserv runs (Bed.PerUserDir,
	// Bed.PerGroupDir).
	PerUserDir  bool
	PerGroupDir bool

	// Target adds a namespace behind the server, reachable through the
	// tunnel, with TCP listeners on TargetPorts at TargetRouteIP,
	// TargetNoRouteIP and TargetOutsideIP (see fwmode.go).
	Target bool

	// Layers lays directories over host directories for the bed's ocserv
	// and every script it runs, in a private mount namespace (as
	// HookAsFwScript's bind mount): host directory → directory laid over
	// it, as a read-only overlayfs where the latter's files win. How an
	// install into a throwaway root (install.sh --root) runs for real
	// without touching the host (see layers.go).
	Layers map[string]string

	// SystemRoot is a root file system of the selected version that the
	// bed runs ocserv, occtl and ocpasswd from instead of the cached one or
	// the host's, writable, so a test can install into it for real
	// (install.sh on a system root). See WritableRoot.
	SystemRoot string

	// PrepareConf, when set, is called with the generated ocserv.conf
	// before ocserv -t and the start; it returns the file ocserv is to
	// run with ("": the generated one), as a path in the bed's root. The
	// bed's namespaces, users and tools (RunInRoot, SetOcservEnv) are
	// ready when it is called; ocserv has not started.
	PrepareConf func(b *Bed, conf string) (string, error)
}

// Addresses of the bed. Every bed lives in its own namespaces, so these
// can be fixed; the tunnel server address is the only thing clients send
// traffic to.
const (
	TunnelNetwork  = "192.168.250.0/24"
	TunnelServerIP = "192.168.250.1" // ocserv's end of every tunnel (IP_LOCAL)
	TunnelNetwork6 = "fd00:250::/48"
	// Routes pushed to clients, as in the reference environment: one
	// route with a no-route carved out of it, and a DNS server.
	PushedRoute   = "10.10.10.0/255.255.255.0"
	PushedNoRoute = "10.10.10.128/255.255.255.128"
	PushedDNS     = "192.168.250.1"

	serverRouterIP = "10.97.0.1" // server side of the router link
	routerServerIP = "10.97.0.2" // router side of it
)

// Bed is one running ocserv with its namespaces, files and clients.
type Bed struct {
	t    *testing.T
	opts Options
	id   string
	dir  string

	serverNS string
	routerNS string
	targetNS string
	port     int
	pin      string
	hookPath string
	users    map[string]User
	serverID string

	confPath   string
	agentEnv   string
	spoolDir   string
	occtlSock  string
	ocservLog  string
	scriptPath string

	ocserv *proc

	rel    distro.Release // the ocserv version the bed runs
	root   string         // its root file system ("/": the host's)
	holder *proc          // holds the bed's mount namespace (root.go)
	// extraEnv is added to ocserv's environment (SetOcservEnv).
	extraEnv []string

	mu         sync.Mutex
	namespaces []string // deleted in reverse order at cleanup
	// madeEtcNetns: /etc/netns did not exist before this bed made it, so
	// cleanup removes it again (only if empty: someone else may use it).
	madeEtcNetns bool
	clients      []*Client
	nclients     int

	sinkOnce sync.Once
	sink     *sink
	sinkErr  error

	targetStop func() // stops the target's listeners (Options.Target)
}

// HookBinary locates the compiled hook: $OCSERV_TELEMETRY_HOOK, or
// bin/hook in the module root (found by walking up from the working
// directory to go.mod).
func HookBinary() (string, error) {
	if p := os.Getenv("OCSERV_TELEMETRY_HOOK"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		if err := checkExecutable(abs); err != nil {
			return "", fmt.Errorf("OCSERV_TELEMETRY_HOOK: %w", err)
		}
		return abs, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for i := 0; i < 64; i++ {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "bin", "hook")
			if err := checkExecutable(p); err != nil {
				return "", fmt.Errorf("%w: run make build first (or set OCSERV_TELEMETRY_HOOK)", err)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", fmt.Errorf("no go.mod above the working directory: set OCSERV_TELEMETRY_HOOK or run from the repository")
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("hook binary %s: %w", p, err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("hook binary %s is not an executable file", p)
	}
	return nil
}

// RequireRoot skips the test when not running as root, the only reason an
// end-to-end test may skip.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("end-to-end test needs root (network namespaces, ocserv, openconnect): run make e2e as root")
	}
}

// New builds and starts a bed; everything it makes is removed when the
// test ends, passed or failed. Setup errors fail the test.
func New(t *testing.T, o Options) *Bed {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("testbed.New needs root")
	}
	for _, tool := range []string{"openconnect", "certtool", "ip", "nsenter", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("testbed: %s not installed: %v", tool, err)
		}
	}
	rel, root, err := selectRelease(o)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	if err := checkTools(root); err != nil {
		t.Fatalf("testbed: ocserv %s: %v", rel.Version, err)
	}
	hook := o.Hook
	if hook == "" {
		if hook, err = HookBinary(); err != nil {
			t.Fatalf("testbed: %v", err)
		}
	}
	if len(o.Users) == 0 {
		o.Users = DefaultUsers
	}
	cleanStale(t.Logf)

	id := randHex(3)
	b := &Bed{
		t:        t,
		opts:     o,
		id:       id,
		serverNS: namePrefix + id + "-s",
		hookPath: hook,
		users:    map[string]User{},
		serverID: o.ServerID,
		rel:      rel,
		root:     root,
	}
	if b.serverID == "" {
		b.serverID = "e2e-" + id
	}
	// Registered before anything exists, so a setup failure half-way is
	// cleaned as well as a finished test.
	t.Cleanup(b.cleanup)

	// A short directory of our own (not t.TempDir): Unix socket paths are
	// limited to 108 bytes and ocserv appends a suffix to socket-file.
	dir, err := os.MkdirTemp("", namePrefix+id+"-")
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	b.dir = dir
	// ocserv's workers run as nobody and must be able to traverse it;
	// secrets inside are 0600.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("testbed: %v", err)
	}
	if err := b.setup(); err != nil {
		t.Fatalf("testbed: %v", err)
	}
	return b
}

func (b *Bed) setup() error {
	b.confPath = filepath.Join(b.dir, "ocserv.conf")
	b.agentEnv = filepath.Join(b.dir, "agent.env")
	b.spoolDir = filepath.Join(b.dir, "spool")
	b.occtlSock = filepath.Join(b.dir, "occtl.sock")
	b.ocservLog = filepath.Join(b.dir, "ocserv.log")
	b.port = 20000 + int(randInt(40000))

	if err := b.addNS(b.serverNS); err != nil {
		return err
	}
	if b.root != "/" {
		if err := b.copyHook(); err != nil {
			return err
		}
	}
	if err := b.writeAgentEnv(); err != nil {
		return err
	}
	if err := b.initSpool(); err != nil {
		return err
	}
	if err := b.startHolder(); err != nil {
		return err
	}
	if b.opts.Router {
		b.routerNS = namePrefix + b.id + "-r"
		if err := b.addNS(b.routerNS); err != nil {
			return err
		}
		if err := vethPair(b.serverNS, "o"+b.id+"sr", serverRouterIP+"/30", b.routerNS, "o"+b.id+"rs", routerServerIP+"/30"); err != nil {
			return err
		}
		if err := ip("-n", b.serverNS, "route", "add", "10.98.0.0/16", "via", routerServerIP); err != nil {
			return err
		}
		if _, err := runCmd(10*time.Second, "ip", "netns", "exec", b.routerNS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil {
			return err
		}
	}

	if b.opts.Target {
		if err := b.setupTarget(); err != nil {
			return err
		}
	}

	ips := []string{serverRouterIP}
	for k := 1; k <= maxClients; k++ {
		ips = append(ips, clientGateway(k))
	}
	cert, key, pin, err := makeCerts(b.dir, ips)
	if err != nil {
		return err
	}
	b.pin = pin
	if err := b.writeUsers(); err != nil {
		return err
	}
	script := b.hookPath
	if !b.opts.HookDirect {
		b.scriptPath = filepath.Join(b.dir, "ocserv-telemetry-hook")
		wrapper := "#!/bin/sh\nexec " + shQuote(b.hookPath) + " --config " + shQuote(b.agentEnv) + " \"$@\"\n"
		if err := os.WriteFile(b.scriptPath, []byte(wrapper), 0o755); err != nil {
			return err
		}
		script = b.scriptPath
	} else {
		// Without the wrapper the hook finds its configuration through
		// the environment, which ocserv passes on to its scripts.
		b.scriptPath = b.hookPath
	}
	if err := b.writeConf(cert, key, script); err != nil {
		return err
	}
	if err := b.prepareConf(); err != nil {
		return err
	}
	if err := b.applyMounts(); err != nil {
		return err
	}
	if out, err := b.run(30*time.Second, nil, "ocserv", "-t", "-c", b.confPath); err != nil {
		return fmt.Errorf("ocserv rejects the generated config: %v\n%s", err, out)
	}
	return b.startOcserv()
}

// maxClients bounds the clients per bed (one /24 and one veth pair each;
// the server certificate lists every gateway address).
const maxClients = 16

// clientGateway is the server's (or router's) address on client k's link;
// clientIP is the client's own (its IP_REAL).
func clientGateway(k int) string { return fmt.Sprintf("10.98.%d.1", k) }
func clientIP(k int) string      { return fmt.Sprintf("10.98.%d.2", k) }

func (b *Bed) addNS(name string) error {
	if err := addNetns(name); err != nil {
		return err
	}
	b.mu.Lock()
	b.namespaces = append(b.namespaces, name)
	b.mu.Unlock()
	return nil
}

func (b *Bed) writeUsers() error {
	passwd := filepath.Join(b.dir, "ocpasswd")
	for _, u := range b.opts.Users {
		b.users[u.Name] = u
		argv := []string{"ocpasswd", "-c", passwd}
		if u.Group != "" {
			argv = append(argv, "-g", u.Group)
		}
		argv = append(argv, u.Name)
		if out, err := b.run(10*time.Second, strings.NewReader(u.Password+"\n"+u.Password+"\n"), argv...); err != nil {
			return fmt.Errorf("ocpasswd %s: %v: %s", u.Name, err, out)
		}
	}
	return nil
}

// FwModeBudgets are the hook's budgets in a bed's mode (c) agent.env
// (Options.HookAsFwScript). The product's defaults (200ms for the
// firewall, 500ms for the whole run, docs/configuration.md) are sized for
// a production host applying one user's rules; the bed's 2-core test
// machines run ocserv, several openconnect clients and other tests' load
// beside the hook, and iptables-restore's fork, exec and xtables lock
// then took longer than 200ms now and again (TestFirewallModeC/iptables
// saw the hook fall back to reject-all). The tests of mode (c) assert the
// design's promise — the user's rules applied, traffic allowed or rejected
// as the policy says, one event — not how fast a quiet machine applies
// them (hook/fw_netns_e2e_test.go raises them the same way). What the hook
// does when a budget does run out (refuse, never admit unrestricted) has
// its own tests with budgets made to run out: hook/fw_child_test.go,
// fw_invalid_test.go, fw_verdict_test.go.
var FwModeBudgets = []string{"HOOK_BUDGET=5s", "HOOK_FIREWALL_BUDGET=3s"}

// setsKey reports whether one of lines (KEY=VALUE) sets key.
func setsKey(lines []string, key string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, key+"=") {
			return true
		}
	}
	return false
}

func (b *Bed) writeAgentEnv() error {
	var s strings.Builder
	fw := "off"
	if b.opts.HookAsFwScript {
		fw = "on"
	}
	fmt.Fprintf(&s, "SERVER_ID=%s\nSPOOL_DIR=%s\nFIREWALL=%s\n", b.serverID, b.spoolDir, fw)
	if b.opts.FirewallBackend != "" {
		fmt.Fprintf(&s, "FIREWALL_BACKEND=%s\n", b.opts.FirewallBackend)
	}
	if b.opts.HookAsFwScript {
		for _, kv := range FwModeBudgets {
			if !setsKey(b.opts.AgentEnv, kv[:strings.IndexByte(kv, '=')]) {
				s.WriteString(kv + "\n")
			}
		}
	}
	for _, l := range b.opts.AgentEnv {
		s.WriteString(l + "\n")
	}
	return os.WriteFile(b.agentEnv, []byte(s.String()), 0o600)
}

// initSpool makes the bed's spool a spool before ocserv starts, as on a
// host: the shipper initialises it when it starts (livestate), long before
// the first login. Left to the first connect, its hook would also pay the
// spool's one-time set-up (a VERSION file and its directory made durable:
// two flushes) before its event reached the queue; on a busy CI disk that
// once outlasted the hook's 500ms budget, and the event went to ocserv's
// log instead (TestRestrictToRoutesWrapperAdmits). A hook initialising a
// fresh spool is tested in package hook.
func (b *Bed) initSpool() error {
	sp, err := spool.Open(b.spoolDir, spool.Options{Create: true, Fsync: true})
	if err != nil {
		return err
	}
	defer sp.Close()
	if _, err := sp.Init(); err != nil {
		return err
	}
	return nil
}

func (b *Bed) writeConf(cert, key, script string) error {
	var c strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&c, format+"\n", a...) }
	w("auth = \"plain[passwd=%s]\"", filepath.Join(b.dir, "ocpasswd"))
	w("tcp-port = %d", b.port)
	w("udp-port = %d", b.port)
	w("run-as-user = nobody")
	w("run-as-group = nogroup")
	w("socket-file = %s", filepath.Join(b.dir, "ocserv.sock"))
	w("occtl-socket-file = %s", b.occtlSock)
	w("use-occtl = true")
	w("pid-file = %s", filepath.Join(b.dir, "ocserv.pid"))
	w("server-cert = %s", cert)
	w("server-key = %s", key)
	// Workers under seccomp can break on syscalls the test environment
	// adds; isolation is not what these tests are about.
	w("isolate-workers = false")
	w("max-clients = 64")
	w("max-same-clients = 8")
	w("keepalive = 32400")
	w("dpd = 90")
	w("mobile-dpd = 1800")
	w("try-mtu-discovery = false")
	w("tls-priorities = \"NORMAL:%%SERVER_PRECEDENCE\"")
	w("auth-timeout = 240")
	w("cookie-timeout = 300")
	w("deny-roaming = false")
	w("rekey-time = 172800")
	w("rekey-method = ssl")
	w("device = vpns")
	w("predictable-ips = true")
	w("ipv4-network = %s", TunnelNetwork)
	if !b.opts.NoIPv6 {
		w("ipv6-network = %s", TunnelNetwork6)
		w("ipv6-subnet-prefix = 64")
	}
	w("dns = %s", PushedDNS)
	w("route = %s", PushedRoute)
	w("no-route = %s", PushedNoRoute)
	w("connect-script = %s", script)
	w("disconnect-script = %s", script)
	w("host-update-script = %s", script)
	if b.opts.RestrictToRoutes {
		w("restrict-user-to-routes = true")
	}
	perUser, err := b.writePerUser()
	if err != nil {
		return err
	}
	if perUser != "" {
		w("config-per-user = %s/", perUser)
	}
	if b.opts.PerGroupDir {
		dir := filepath.Join(b.dir, "config-per-group")
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		w("config-per-group = %s/", dir)
	}
	if b.opts.MaxBanScore > 0 {
		w("max-ban-score = %d", b.opts.MaxBanScore)
	}
	if b.opts.BanResetTime > 0 {
		w("ban-reset-time = %d", b.opts.BanResetTime)
	}
	if b.opts.BanTime > 0 {
		w("min-reauth-time = %d", b.opts.BanTime)
	}
	for _, l := range b.opts.ExtraConf {
		w("%s", l)
	}
	return os.WriteFile(b.confPath, []byte(c.String()), 0o600)
}

func (b *Bed) startOcserv() error {
	argv, err := b.ocservArgv()
	if err != nil {
		return err
	}
	var env []string
	if b.opts.HookDirect {
		// ocserv passes its environment on to the scripts: without the
		// wrapper the hook has no --config, so tell it where agent.env is.
		env = append(os.Environ(), "OCSERV_TELEMETRY_CONFIG="+b.agentEnv)
	}
	b.mu.Lock()
	if len(b.extraEnv) > 0 {
		if env == nil {
			env = os.Environ()
		}
		env = append(env, b.extraEnv...)
	}
	b.mu.Unlock()
	if b.opts.HookAsFwScript && (b.rel.FwScriptEnv || b.opts.FwScriptByEnv) {
		// As install.sh's drop-in for ocserv.service does.
		w, err := b.fwScriptWrapper()
		if err != nil {
			return err
		}
		if env == nil {
			env = os.Environ()
		}
		env = append(env, "OCSERV_FW_SCRIPT="+w)
	}
	p, err := startProc("ocserv", b.ocservLog, nil, env, argv...)
	if err != nil {
		return err
	}
	b.ocserv = p
	deadline := time.Now().Add(15 * time.Second)
	for {
		if p.exited() {
			return fmt.Errorf("ocserv exited at start (%v):\n%s", p.waitErr, p.out.String())
		}
		if _, err := os.Stat(b.occtlSock); err == nil && b.listening() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ocserv not listening on %d within 15s:\n%s", b.port, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// listening reports whether ocserv accepts TCP connections in its namespace.
func (b *Bed) listening() bool {
	return inNetns(b.serverNS, func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)), time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}) == nil
}

// cleanup stops every process and deletes every namespace, veth and file
// of the bed. On failure it first logs ocserv's log, each client's output
// and the spool, so a failed run explains itself.
func (b *Bed) cleanup() {
	t := b.t
	if t.Failed() {
		b.dump()
	}
	b.mu.Lock()
	clients := append([]*Client(nil), b.clients...)
	namespaces := append([]string(nil), b.namespaces...)
	b.mu.Unlock()
	for _, c := range clients {
		c.p.stop(syscall.SIGTERM, 3*time.Second)
	}
	b.mu.Lock()
	s := b.sink
	b.mu.Unlock()
	if s != nil {
		s.close()
	}
	if b.ocserv != nil {
		b.ocserv.stop(syscall.SIGTERM, 5*time.Second)
	}
	b.stopHolder()
	b.mu.Lock()
	stopTarget := b.targetStop
	b.mu.Unlock()
	if stopTarget != nil {
		stopTarget()
	}
	if b.opts.HookAsFwScript {
		if err := CheckHostFwScript(); err != nil {
			t.Errorf("testbed cleanup: %v", err)
		}
	}
	for i := len(namespaces) - 1; i >= 0; i-- {
		if err := delNetns(namespaces[i]); err != nil {
			t.Errorf("testbed cleanup: %v", err)
		}
	}
	if b.madeEtcNetns {
		_ = os.Remove(etcNetnsDir)
	}
	if b.dir != "" {
		if err := os.RemoveAll(b.dir); err != nil {
			t.Errorf("testbed cleanup: %v", err)
		}
	}
}

func (b *Bed) dump() {
	t := b.t
	if b.ocserv != nil {
		t.Logf("=== ocserv log (%s) ===\n%s", b.ocservLog, b.ocserv.out.String())
	}
	b.mu.Lock()
	clients := append([]*Client(nil), b.clients...)
	b.mu.Unlock()
	for _, c := range clients {
		t.Logf("=== openconnect %s as %s (ns %s) ===\n%s", c.name, c.user, c.ns, c.p.out.String())
	}
	if b.spoolDir == "" {
		return // an attached bed (Attach): no spool of its own
	}
	files, _ := b.spoolFiles()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Logf("=== spool %s: %v", f, err)
			continue
		}
		t.Logf("=== spool %s ===\n%s", f, data)
	}
	if len(files) == 0 {
		t.Logf("=== spool %s: no event files", b.spoolDir)
	}
}

// PasswdFile is the ocpasswd file ocserv authenticates against.
func (b *Bed) PasswdFile() string { return filepath.Join(b.dir, "ocpasswd") }

// PerUserDir is config-per-user ("" unless Options.PerUser or
// Options.PerUserDir); PerGroupDir is config-per-group ("" unless
// Options.PerGroupDir).
func (b *Bed) PerUserDir() string {
	if len(b.opts.PerUser) == 0 && !b.opts.PerUserDir {
		return ""
	}
	return filepath.Join(b.dir, "config-per-user")
}

// PerGroupDir: see PerUserDir.
func (b *Bed) PerGroupDir() string {
	if !b.opts.PerGroupDir {
		return ""
	}
	return filepath.Join(b.dir, "config-per-group")
}

// Dir is the bed's private directory (configs, keys, logs, spool).
func (b *Bed) Dir() string { return b.dir }

// SpoolDir is SPOOL_DIR in agent.env: where the hook writes and where a
// shipper under test must read.
func (b *Bed) SpoolDir() string { return b.spoolDir }

// ConfigPath is the agent.env the hook reads; a shipper started by a test
// is given the same file (--config), with NATS_URL added through
// Options.AgentEnv.
func (b *Bed) ConfigPath() string { return b.agentEnv }

// OcservConf is the path of the generated ocserv.conf.
func (b *Bed) OcservConf() string { return b.confPath }

// ScriptPath is what ocserv runs as connect/disconnect/host-update script:
// the /bin/sh wrapper, or the hook binary itself with HookDirect.
func (b *Bed) ScriptPath() string { return b.scriptPath }

// ServerID is agent.env's SERVER_ID.
func (b *Bed) ServerID() string { return b.serverID }

// ServerNS is the network namespace ocserv runs in.
func (b *Bed) ServerNS() string { return b.serverNS }

// Port is ocserv's TCP and UDP port.
func (b *Bed) Port() int { return b.port }

// Password returns the configured password of user (fails the test for
// an unknown user).
func (b *Bed) Password(user string) string {
	u, ok := b.users[user]
	if !ok {
		b.t.Fatalf("testbed: no user %q", user)
	}
	return u.Password
}

// Group returns user's configured group ("" for none).
func (b *Bed) Group(user string) string { return b.users[user].Group }

// OcservLog is what ocserv (-d 1) and the scripts it ran printed so far.
func (b *Bed) OcservLog() string { return b.ocserv.out.String() }

// InServerNS runs fn on a thread inside the server namespace (for example
// to open a socket there).
func (b *Bed) InServerNS(fn func() error) error { return inNetns(b.serverNS, fn) }

// InServerNSCmd runs argv inside the server namespace with a timeout and
// returns its combined output (e.g. iptables -S).
func (b *Bed) InServerNSCmd(timeout time.Duration, argv ...string) ([]byte, error) {
	return runCmd(timeout, append([]string{"ip", "netns", "exec", b.serverNS}, argv...)...)
}

// Occtl runs the bed version's `occtl -s <socket> -j args...` in the
// server namespace (occtl reads the tun devices' counters through netlink,
// so it must run where they are) and returns its standard output and
// error together.
func (b *Bed) Occtl(args ...string) ([]byte, error) {
	return b.run(15*time.Second, nil, append([]string{"occtl", "-s", b.occtlSock, "-j"}, args...)...)
}

// spoolFiles lists the spool's event files: pending chunks (oldest
// events), the active queue, then lock-free fallback files.
func (b *Bed) spoolFiles() ([]string, error) {
	var files []string
	pending, err := filepath.Glob(filepath.Join(b.spoolDir, "pending", "*.ndjson"))
	if err != nil {
		return nil, err
	}
	sort.Strings(pending)
	files = append(files, pending...)
	if _, err := os.Stat(filepath.Join(b.spoolDir, "queue.ndjson")); err == nil {
		files = append(files, filepath.Join(b.spoolDir, "queue.ndjson"))
	}
	fallback, err := filepath.Glob(filepath.Join(b.spoolDir, "fallback", "*.ndjson"))
	if err != nil {
		return nil, err
	}
	sort.Strings(fallback)
	return append(files, fallback...), nil
}

func randHex(n int) string {
	p := make([]byte, n)
	if _, err := rand.Read(p); err != nil {
		panic(err)
	}
	return hex.EncodeToString(p)
}

func randInt(n int64) int64 {
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		panic(err)
	}
	return v.Int64()
}

// shQuote quotes s for /bin/sh with single quotes.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
