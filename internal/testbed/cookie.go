package testbed

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Cookie is a session cookie ocserv issued to a password login that made
// no tunnel (openconnect --authenticate), and the client namespace it was
// made from. Connecting with it later runs the connect script like any
// login, as a cookie resumption does: what a client that keeps its cookie
// can try after it was cut off.
type Cookie struct {
	User  string
	Value string
	ns    string
	real  string
	srv   string
}

var cookieRE = regexp.MustCompile(`(?m)^COOKIE='([^']+)'`)

// Authenticate logs user in with password through openconnect
// --authenticate: ocserv checks the password and issues a cookie, but no
// tunnel is set up and no connect script runs.
func (b *Bed) Authenticate(user, password string) (*Cookie, error) {
	b.t.Helper()
	c, err := b.newClient(user, false)
	if err != nil {
		return nil, err
	}
	argv := []string{"ip", "netns", "exec", c.ns, "openconnect", "--authenticate",
		"--protocol=anyconnect", "-u", user, "--passwd-on-stdin", "--non-inter",
		"--servercert", b.pin, "https://" + net.JoinHostPort(c.server, strconv.Itoa(b.port))}
	p, err := startProc("authenticate-"+c.name, filepath.Join(b.dir, c.name+"-authenticate.log"),
		strings.NewReader(password+"\n"), nil, argv...)
	if err != nil {
		return nil, err
	}
	if !p.wait(30 * time.Second) {
		return nil, fmt.Errorf("authenticate %s: openconnect still running after 30s\n%s", user, p.out.String())
	}
	m := cookieRE.FindStringSubmatch(p.out.String())
	if m == nil {
		return nil, fmt.Errorf("authenticate %s: no cookie (%v)\n%s", user, p.waitErr, p.out.String())
	}
	return &Cookie{User: user, Value: m[1], ns: c.ns, real: c.realIP, srv: c.server}, nil
}

// ConnectCookie connects with a cookie, from the namespace it was made in,
// and waits until the tunnel is up; a refused login returns an error.
func (b *Bed) ConnectCookie(ck *Cookie, timeout time.Duration) (*Client, error) {
	b.t.Helper()
	b.mu.Lock()
	b.nclients++
	k := b.nclients
	b.mu.Unlock()
	c := &Client{b: b, name: fmt.Sprintf("c%d", k), user: ck.User, ns: ck.ns, realIP: ck.real, server: ck.srv}
	argv := []string{"ip", "netns", "exec", c.ns, "openconnect", "--protocol=anyconnect", "--cookie-on-stdin", "--non-inter",
		"--servercert", b.pin, "--script=/bin/true", "https://" + net.JoinHostPort(c.server, strconv.Itoa(b.port))}
	p, err := startProc("openconnect-cookie-"+c.name, filepath.Join(b.dir, c.name+"-openconnect.log"),
		strings.NewReader(ck.Value+"\n"), nil, argv...)
	if err != nil {
		return nil, err
	}
	c.p = p
	b.mu.Lock()
	b.clients = append(b.clients, c)
	b.mu.Unlock()
	if out, err := p.waitOutput(timeout, func(s string) bool { return configuredRE.MatchString(s) }); err != nil {
		return c, fmt.Errorf("cookie login of %s: %v\n%s", ck.User, err, out)
	}
	return c, nil
}
