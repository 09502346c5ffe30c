package testbed

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// VPNCScript is the real client-side configuration script: with it the
// client's tun device gets its address and routes, so traffic can flow.
const VPNCScript = "/usr/share/vpnc-scripts/vpnc-script"

// ConnectOptions adjust one client.
type ConnectOptions struct {
	// VPNCScript runs the real vpnc-script (needed for SendTraffic and
	// Ping) even when the bed's Options.VPNCScript is false.
	VPNCScript bool
	// Timeout bounds the login; 0 means 30s.
	Timeout time.Duration
	// From reuses the namespace, and so the real IP, of a client that
	// has exited: repeated logins from one address (bans).
	From *Client
}

// Client is one real openconnect process in a namespace of its own.
type Client struct {
	b      *Bed
	name   string // "c<k>"
	user   string
	ns     string
	realIP string // the client's address as ocserv sees it (IP_REAL)
	server string // address openconnect connects to
	vpnc   bool
	p      *proc
}

// The lines openconnect 9 prints that the helpers key on.
const connectedLine = "Got CONNECT response: HTTP/1.1 200"

// passwordRE matches openconnect's prompt for a password: ocserv 1.1.6
// and 1.3.0 ask for the user name and the password in two forms ("Please
// enter your password."), 1.5.0 in one ("Please enter your username and
// password.").
var passwordRE = regexp.MustCompile(`(?m)^Please enter your (?:username and )?password\.$`)

var configuredRE = regexp.MustCompile(`Configured as ([0-9.]+)`)

// Connect logs user in with password through a real openconnect and waits
// until the tunnel is up (the connect script has then admitted the user).
// A refused or failed login returns an error; the client's output is in
// the error and stays in the failure dump.
func (b *Bed) Connect(user, password string, opts ...ConnectOptions) (*Client, error) {
	b.t.Helper()
	var o ConnectOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	var c *Client
	if o.From != nil {
		if !o.From.Exited() {
			return nil, fmt.Errorf("testbed: ConnectOptions.From: client %s is still running", o.From.name)
		}
		b.mu.Lock()
		b.nclients++
		k := b.nclients
		b.mu.Unlock()
		c = &Client{b: b, name: fmt.Sprintf("c%d", k), user: user, ns: o.From.ns, realIP: o.From.realIP,
			server: o.From.server, vpnc: o.VPNCScript || b.opts.VPNCScript}
	} else {
		var err error
		if c, err = b.newClient(user, o.VPNCScript || b.opts.VPNCScript); err != nil {
			return nil, err
		}
	}
	script := "/bin/true"
	if c.vpnc {
		script = VPNCScript
	}
	argv := []string{"ip", "netns", "exec", c.ns, "openconnect",
		"--protocol=anyconnect", "-u", user, "--passwd-on-stdin", "--non-inter",
		"--servercert", b.pin, "--script=" + script,
		"https://" + net.JoinHostPort(c.server, strconv.Itoa(b.port))}
	// The password is on stdin once; after that stdin is at EOF, so a
	// reconnect that asked for the password again would fail visibly.
	p, err := startProc("openconnect-"+c.name, filepath.Join(b.dir, c.name+"-openconnect.log"),
		strings.NewReader(password+"\n"), nil, argv...)
	if err != nil {
		return nil, err
	}
	c.p = p
	b.mu.Lock()
	b.clients = append(b.clients, c)
	b.mu.Unlock()

	out, err := p.waitOutput(o.Timeout, func(s string) bool { return configuredRE.MatchString(s) })
	if err != nil {
		return c, fmt.Errorf("login of %s: %v\n%s", user, err, out)
	}
	if c.vpnc {
		if err := c.waitTunAddr(o.Timeout); err != nil {
			return c, err
		}
	}
	return c, nil
}

func (b *Bed) newClient(user string, vpnc bool) (*Client, error) {
	b.mu.Lock()
	b.nclients++
	k := b.nclients
	b.mu.Unlock()
	if k > maxClients {
		return nil, fmt.Errorf("testbed: more than %d clients in one bed", maxClients)
	}
	c := &Client{
		b:      b,
		name:   fmt.Sprintf("c%d", k),
		user:   user,
		ns:     fmt.Sprintf("%s%s-c%d", namePrefix, b.id, k),
		realIP: clientIP(k),
		vpnc:   vpnc,
	}
	if err := b.addNS(c.ns); err != nil {
		return nil, err
	}
	// vpnc-script rewrites /etc/resolv.conf; `ip netns exec` bind-mounts
	// this file over it, so only the namespace's copy is touched.
	etc := filepath.Join(etcNetnsDir, c.ns)
	if _, err := os.Stat(etcNetnsDir); os.IsNotExist(err) {
		b.mu.Lock()
		b.madeEtcNetns = true
		b.mu.Unlock()
	}
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), nil, 0o644); err != nil {
		return nil, err
	}
	// Veth names: "o" + bed id + side + k, at most 10 bytes (limit 15).
	clientIf := fmt.Sprintf("o%sc%d", b.id, k)
	gw := clientGateway(k)
	if b.opts.Router {
		if err := vethPair(b.routerNS, fmt.Sprintf("o%sr%d", b.id, k), gw+"/24", c.ns, clientIf, c.realIP+"/24"); err != nil {
			return nil, err
		}
		if err := ip("-n", c.ns, "route", "add", "default", "via", gw); err != nil {
			return nil, err
		}
		c.server = serverRouterIP
	} else {
		if err := vethPair(b.serverNS, fmt.Sprintf("o%ss%d", b.id, k), gw+"/24", c.ns, clientIf, c.realIP+"/24"); err != nil {
			return nil, err
		}
		c.server = gw
	}
	return c, nil
}

// waitTunAddr waits until vpnc-script has put the tunnel address on the
// client's tun device.
func (c *Client) waitTunAddr(d time.Duration) error {
	want := c.TunnelIP()
	deadline := time.Now().Add(d)
	for {
		out, err := runCmd(5*time.Second, "ip", "-n", c.ns, "-o", "-4", "addr", "show")
		if err == nil && strings.Contains(string(out), " "+want+"/") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("client %s: tunnel address %s not configured within %s: %v\n%s", c.name, want, d, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// User is the user this client logged in as.
func (c *Client) User() string { return c.user }

// NS is the client's network namespace.
func (c *Client) NS() string { return c.ns }

// RealIP is the client's address as ocserv sees it (IP_REAL).
func (c *Client) RealIP() string { return c.realIP }

// ServerAddr is the address openconnect connects to.
func (c *Client) ServerAddr() string { return c.server }

// Output is everything openconnect printed so far.
func (c *Client) Output() string { return c.p.out.String() }

// TunnelIP is the IPv4 address ocserv gave the client (IP_REMOTE), from
// openconnect's last "Configured as" line; "" before login.
func (c *Client) TunnelIP() string {
	m := configuredRE.FindAllStringSubmatch(c.Output(), -1)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1][1]
}

// Logins counts the tunnels openconnect established (first login plus
// every reconnect).
func (c *Client) Logins() int { return strings.Count(c.Output(), connectedLine) }

// PasswordPrompts counts how often the server asked for a password.
func (c *Client) PasswordPrompts() int { return len(passwordRE.FindAllString(c.Output(), -1)) }

// Exited reports whether openconnect has ended.
func (c *Client) Exited() bool { return c.p.exited() }

// Disconnect makes openconnect log out (SIGINT: it sends BYE and ocserv
// invalidates the cookie) and waits for it to exit.
func (c *Client) Disconnect() error {
	if err := c.p.signal(syscall.SIGINT); err != nil {
		return err
	}
	if !c.p.wait(15 * time.Second) {
		return fmt.Errorf("client %s (%s): openconnect still running 15s after SIGINT", c.name, c.user)
	}
	return nil
}

// Roam makes openconnect drop its connection and reconnect with its
// session cookie (SIGUSR2), as after a network change, and waits until the
// new tunnel is up. No password is sent: stdin is long at EOF.
func (c *Client) Roam() error {
	before := c.Logins()
	if err := c.p.signal(syscall.SIGUSR2); err != nil {
		return err
	}
	out, err := c.p.waitOutput(30*time.Second, func(s string) bool {
		return strings.Count(s, connectedLine) > before
	})
	if err != nil {
		return fmt.Errorf("client %s (%s): no reconnect after SIGUSR2: %v\n%s", c.name, c.user, err, out)
	}
	if c.vpnc {
		return c.waitTunAddr(30 * time.Second)
	}
	return nil
}

// Ping sends count ICMP echo requests of size bytes of payload through the
// tunnel to ocserv's end of it and requires every reply.
func (c *Client) Ping(count, size int) error {
	if !c.vpnc {
		return fmt.Errorf("client %s: Ping needs the vpnc-script (ConnectOptions.VPNCScript)", c.name)
	}
	_, err := runCmd(time.Duration(count)*time.Second+10*time.Second,
		"ip", "netns", "exec", c.ns, "ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", "0.2",
		"-s", strconv.Itoa(size), "-W", "2", TunnelServerIP)
	return err
}

// SendTraffic streams n bytes over TCP from the client, through the
// tunnel, to a sink inside the server namespace, and waits until the sink
// confirms it received all of them. The flow is deliberately one-sided
// (n bytes in, only ACKs out), so in/out counters that were swapped show.
func (c *Client) SendTraffic(n int) error {
	if !c.vpnc {
		return fmt.Errorf("client %s: SendTraffic needs the vpnc-script (ConnectOptions.VPNCScript)", c.name)
	}
	s, err := c.b.trafficSink()
	if err != nil {
		return err
	}
	var conn net.Conn
	err = inNetns(c.ns, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", net.JoinHostPort(TunnelServerIP, strconv.Itoa(s.port)), 10*time.Second)
		return err
	})
	if err != nil {
		return fmt.Errorf("client %s: dial sink: %w", c.name, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 32*1024)
	for i := range buf {
		buf[i] = byte(i)
	}
	for left := n; left > 0; {
		m := min(left, len(buf))
		if _, err := conn.Write(buf[:m]); err != nil {
			return fmt.Errorf("client %s: send: %w", c.name, err)
		}
		left -= m
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	var got [8]byte
	if _, err := io.ReadFull(conn, got[:]); err != nil {
		return fmt.Errorf("client %s: sink reply: %w", c.name, err)
	}
	if r := binary.BigEndian.Uint64(got[:]); r != uint64(n) {
		return fmt.Errorf("client %s: sink received %d bytes, sent %d", c.name, r, n)
	}
	return nil
}
