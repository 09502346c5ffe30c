package firewall

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

// render gives a backend-neutral text of a plan, one rule a line.
func render(pl *plan) string {
	var sb strings.Builder
	line := func(chain string, r rule) {
		sb.WriteString(chain + ":")
		if r.family != 0 {
			sb.WriteString(" ipv" + string(rune('0'+r.family)))
		}
		if r.dst.IsValid() {
			sb.WriteString(" dst=" + r.dst.String())
		}
		if r.proto != "" {
			sb.WriteString(" " + r.proto)
		}
		if r.port != 0 {
			sb.WriteString(" dport=" + itoa(r.port))
		}
		if r.icmp6 >= 0 {
			sb.WriteString(" type=" + itoa(r.icmp6))
		}
		if r.ctNew {
			sb.WriteString(" ct=new,est")
		}
		sb.WriteString(" " + r.v.String() + "\n")
	}
	for _, r := range pl.user {
		line("user", r)
	}
	for _, r := range pl.routes {
		line("routes", r)
	}
	return sb.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

func pt(proto string, port int) events.Port { return events.Port{Proto: proto, Port: port} }

func planFor(t *testing.T, name string) *plan {
	t.Helper()
	for _, c := range testCases(t) {
		if c.name == name {
			pl, err := buildPlan("vpns7", policyOf(t, c.env))
			if err != nil {
				t.Fatal(err)
			}
			return pl
		}
	}
	t.Fatalf("no case %s", name)
	return nil
}

func TestPlanCases(t *testing.T) {
	dns := "user: ipv4 dst=192.168.99.53/32 udp dport=53 accept\n" +
		"user: ipv4 dst=192.168.99.53/32 tcp dport=53 ct=new,est accept\n"
	dns6 := "user: ipv6 dst=2001:db8:99::53/128 udp dport=53 accept\n" +
		"user: ipv6 dst=2001:db8:99::53/128 tcp dport=53 ct=new,est accept\n"
	routes := "routes: ipv4 dst=10.10.10.128/25 reject\n" +
		"routes: ipv6 dst=2001:db8:10:0:8000::/65 reject\n" +
		"routes: ipv4 dst=10.10.10.0/24 accept\n" +
		"routes: ipv6 dst=2001:db8:10::/64 accept\n" +
		"routes: reject\n"
	want := map[string]string{
		// The captured environment: dotted netmasks turned into prefixes,
		// IPv4 routes only, so all other IPv4 and all IPv6 is rejected.
		"reference": dns + "user: routes\n" +
			"routes: ipv4 dst=10.10.10.128/25 reject\nroutes: ipv4 dst=10.10.10.0/24 accept\nroutes: reject\n",
		"routes-v4v6": dns + dns6 + "user: routes\n" + routes,
		"allow-ports": dns + dns6 +
			"user: tcp dport=443 routes\nuser: udp dport=5353 routes\nuser: ipv4 icmp routes\nuser: tcp dport=22 routes\n" +
			"user: ipv6 icmpv6 type=1 routes\nuser: ipv6 icmpv6 type=2 routes\nuser: ipv6 icmpv6 type=3 routes\nuser: ipv6 icmpv6 type=4 routes\n" +
			"user: reject\n" + routes,
		// icmpv6 listed: no extra ICMPv6 error rules.
		"allow-ports-icmpv6": dns + dns6 + "user: tcp dport=443 routes\nuser: ipv6 icmpv6 routes\nuser: reject\n" + routes,
		"allow-ports-only": dns + dns6 + "user: tcp dport=443 routes\nuser: ipv4 icmp routes\n" +
			"user: ipv6 icmpv6 type=1 routes\nuser: ipv6 icmpv6 type=2 routes\nuser: ipv6 icmpv6 type=3 routes\nuser: ipv6 icmpv6 type=4 routes\n" +
			"user: reject\nroutes: accept\n",
		"deny-ports":      dns + dns6 + "user: tcp dport=80 reject\nuser: udp dport=5353 reject\nuser: ipv6 icmpv6 reject\nuser: routes\n" + routes,
		"deny-ports-only": dns + dns6 + "user: tcp dport=80 reject\nuser: ipv4 icmp reject\nuser: routes\nroutes: accept\n",
		// Restricted with no routes: no-routes rejected, the rest accepted.
		"no-routes-only": dns + dns6 + "user: routes\n" +
			"routes: ipv4 dst=10.10.10.128/25 reject\nroutes: ipv6 dst=2001:db8:10:0:8000::/65 reject\nroutes: accept\n",
		"empty-routes": dns + dns6 + "user: routes\nroutes: accept\n",
	}
	for _, c := range testCases(t) {
		t.Run(c.name, func(t *testing.T) {
			w, ok := want[c.name]
			if !ok {
				t.Fatalf("no expectation for %s", c.name)
			}
			if got := render(planFor(t, c.name)); got != w {
				t.Errorf("got:\n%s\nwant:\n%s", got, w)
			}
		})
	}
}

// The iptables rendering of a plan, per family: what the restore
// transaction carries.
func TestIptablesBody(t *testing.T) {
	pl := planFor(t, "allow-ports")
	tag := " -m comment --comment ocserv-telemetry"
	owner := Owner{ID: 4242, UID: "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee"}
	jump := " -m comment --comment ocserv-telemetry:id=4242:uid=0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee"
	v4 := (&iptFamily{v: 4}).body(pl, owner)
	v6 := (&iptFamily{v: 6}).body(pl, owner)
	for _, w := range []string{
		"-A OCTEL-vpns7 -o vpns7 -m conntrack --ctstate RELATED,ESTABLISHED" + tag + " -j ACCEPT\n",
		"-A OCTEL-vpns7 ! -i vpns7" + tag + " -j RETURN\n",
		"-A OCTEL-vpns7 -d 192.168.99.53/32 -p tcp --dport 53 -m conntrack --ctstate NEW,ESTABLISHED" + tag + " -j ACCEPT\n",
		"-A OCTEL-vpns7 -p icmp" + tag + " -j OCTELR-vpns7\n",
		"-A OCTEL-vpns7" + tag + " -j REJECT\n",
		"-A OCTELR-vpns7 -d 10.10.10.128/25" + tag + " -j REJECT\n",
		"-I FORWARD 1 -o vpns7" + jump + " -j OCTEL-vpns7\n-I FORWARD 1 -i vpns7" + jump + " -j OCTEL-vpns7\n",
	} {
		if !strings.Contains(v4, w) {
			t.Errorf("IPv4 body lacks %q:\n%s", w, v4)
		}
	}
	for _, w := range []string{
		"-A OCTEL-vpns7 -o vpns7 -m conntrack --ctstate RELATED,ESTABLISHED" + tag + " -j ACCEPT\n", // IPv6 return traffic too
		"-A OCTEL-vpns7 -p ipv6-icmp -m icmp6 --icmpv6-type 2" + tag + " -j OCTELR-vpns7\n",
		"-A OCTELR-vpns7 -d 2001:db8:10::/64" + tag + " -j ACCEPT\n",
	} {
		if !strings.Contains(v6, w) {
			t.Errorf("IPv6 body lacks %q:\n%s", w, v6)
		}
	}
	for _, bad := range []string{"2001:db8", "ipv6-icmp"} {
		if strings.Contains(v4, bad) {
			t.Errorf("IPv4 body holds %q:\n%s", bad, v4)
		}
	}
	for _, bad := range []string{"10.10.10", "192.168.99.53", "-p icmp "} {
		if strings.Contains(v6, bad) {
			t.Errorf("IPv6 body holds %q:\n%s", bad, v6)
		}
	}
	rej := (&iptFamily{v: 4}).body(&plan{dev: "vpns7", reject: true}, Owner{ID: 9})
	jump = " -m comment --comment ocserv-telemetry:id=9"
	if want := "-A OCTEL-vpns7" + tag + " -j REJECT\n-I FORWARD 1 -o vpns7" + jump + " -j OCTEL-vpns7\n-I FORWARD 1 -i vpns7" + jump + " -j OCTEL-vpns7\n"; rej != want {
		t.Errorf("reject-all body:\n%s\nwant:\n%s", rej, want)
	}
}

// nftables rules: address matches carry their family check, prefixes are
// masked, interface names are compared over all 16 bytes.
func TestNftExprs(t *testing.T) {
	pl := planFor(t, "deny-ports-only")
	var icmp []expr.Any
	for _, r := range pl.user {
		if r.proto == "icmp" {
			icmp = nftRule(r)
		}
	}
	if m, ok := icmp[0].(*expr.Meta); !ok || m.Key != expr.MetaKeyNFPROTO {
		t.Fatalf("icmp rule does not start with the family check: %#v", icmp)
	}
	if c := icmp[1].(*expr.Cmp); c.Data[0] != unix.NFPROTO_IPV4 {
		t.Errorf("icmp rule family %v", c.Data)
	}
	if _, ok := icmp[len(icmp)-1].(*expr.Reject); !ok {
		t.Errorf("icmp deny does not end in reject: %#v", icmp[len(icmp)-1])
	}
	pl = planFor(t, "routes-v4v6")
	no6 := nftRule(pl.routes[1]) // 2001:db8:10:0:8000::/65 reject
	p := no6[2].(*expr.Payload)
	bw := no6[3].(*expr.Bitwise)
	cmp := no6[4].(*expr.Cmp)
	if p.Offset != 24 || p.Len != 16 || bw.Mask[8] != 0x80 || bw.Mask[9] != 0 || cmp.Data[8] != 0x80 {
		t.Errorf("IPv6 /65 match wrong: %#v %#v %#v", p, bw, cmp)
	}
	in := matchIfname(expr.MetaKeyIIFNAME, "vpns1")[1].(*expr.Cmp)
	if len(in.Data) != 16 || string(in.Data[:6]) != "vpns1\x00" {
		t.Errorf("ifname compare %q is not the NUL-padded 16 bytes", in.Data)
	}
}

func TestPlanRejectsBadInput(t *testing.T) {
	base := func() *events.Policy {
		return &events.Policy{RestrictToRoutes: true, Routes: []string{"10.0.0.0/8"}, DNS: []string{"10.0.0.53"}}
	}
	cases := map[string]func(p *events.Policy){
		"invalid": func(p *events.Policy) { p.Invalid = true },
		"allow and deny": func(p *events.Policy) {
			p.AllowPorts = []events.Port{pt("tcp", 1)}
			p.DenyPorts = []events.Port{pt("tcp", 2)}
		},
		"protocol":      func(p *events.Policy) { p.DenyPorts = []events.Port{pt("gre", 0)} },
		"shell word":    func(p *events.Policy) { p.AllowPorts = []events.Port{pt("tcp;reboot", 1)} },
		"port range":    func(p *events.Policy) { p.AllowPorts = []events.Port{pt("udp", 70000)} },
		"negative port": func(p *events.Policy) { p.AllowPorts = []events.Port{pt("udp", -1)} },
		"icmp port":     func(p *events.Policy) { p.AllowPorts = []events.Port{pt("icmp", 8)} },
		"esp port":      func(p *events.Policy) { p.DenyPorts = []events.Port{pt("esp", 50)} },
		"route":         func(p *events.Policy) { p.Routes = []string{"10.0.0.0/255.0.0.0"} },
		"route zone":    func(p *events.Policy) { p.NoRoutes = []string{"fe80::%eth0/64"} },
		"mapped route":  func(p *events.Policy) { p.Routes = []string{"::ffff:10.0.0.0/104"} },
		"dns":           func(p *events.Policy) { p.DNS = []string{"10.0.0.53 -j ACCEPT"} },
	}
	for name, mod := range cases {
		p := base()
		mod(p)
		if _, err := buildPlan("vpns0", p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := buildPlan("vpns0", nil); err == nil {
		t.Error("nil policy accepted")
	}
	if _, err := buildPlan("vpns0", base()); err != nil {
		t.Errorf("valid policy refused: %v", err)
	}
	// "esp all" (ocserv writes it) is matched by protocol alone.
	p := base()
	p.DenyPorts = []events.Port{pt("esp", 0)}
	pl, err := buildPlan("vpns0", p)
	if err != nil || pl.user[2].proto != "esp" || pl.user[2].v != vReject {
		t.Errorf("esp all: %v %+v", err, pl)
	}
}

func TestValidDevice(t *testing.T) {
	for _, ok := range []string{"vpns0", "vpns10", "tun_a.b-c", "A1234567890abcd"} {
		if err := ValidDevice(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "vpns+", "-i", "a b", "a\"b", "a#b", "!x", "a/b", "a:b", "0123456789abcdef", "vpns1*", ".."} {
		if err := ValidDevice(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Cleanup from a listing matches whole chain names: vpns1's never takes
// vpns10's rules, and rules inside our chains go with the chain.
func TestParseSave(t *testing.T) {
	save := `*filter
:FORWARD ACCEPT [0:0]
:OCTEL-vpns1 - [0:0]
:OCTEL-vpns10 - [0:0]
:OCTELR-vpns1 - [0:0]
-A FORWARD -i vpns1 -m comment --comment "ocserv-telemetry:id=77:uid=0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee" -j OCTEL-vpns1
-A FORWARD -o vpns1 -m comment --comment ocserv-telemetry -j OCTEL-vpns1
-A FORWARD -i vpns10 -m comment --comment "ocserv-telemetry:id=78" -j OCTEL-vpns10
-A FORWARD -i vpns1 -m comment --comment "an admin's" -j ACCEPT
-A OCTEL-vpns1 -j OCTELR-vpns1
COMMIT
`
	mine := map[string]bool{"OCTEL-vpns1": true, "OCTELR-vpns1": true}
	sv := parseSave(save, func(c string) bool { return mine[c] })
	want := "-D FORWARD -i vpns1 -m comment --comment \"ocserv-telemetry:id=77:uid=0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee\" -j OCTEL-vpns1\n" +
		"-D FORWARD -o vpns1 -m comment --comment ocserv-telemetry -j OCTEL-vpns1\n"
	if del := sv.deletions(nil); del != want {
		t.Errorf("delete lines:\n%s\nwant:\n%s", del, want)
	}
	if len(sv.jumps) != 2 || sv.jumps[0].owner != (Owner{77, "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee"}) || sv.jumps[0].legacy || !sv.jumps[1].legacy {
		t.Errorf("jumps: %+v", sv.jumps)
	}
	if len(sv.chains) != 2 || !sv.chains["OCTEL-vpns1"] || !sv.chains["OCTELR-vpns1"] {
		t.Errorf("chains: %v", sv.chains)
	}
	sv = parseSave(save, isOurChain)
	if del := sv.deletions(nil); strings.Count(del, "-D FORWARD") != 3 || len(sv.chains) != 3 || strings.Contains(del, "admin") {
		t.Errorf("remove-all lines:\n%s\nchains %v", del, sv.chains)
	}
}

// The owner in a jump's comment round-trips, and nothing else reads as one.
func TestJumpComment(t *testing.T) {
	for _, o := range []Owner{{ID: 1}, {ID: 4242, UID: "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee"}} {
		got, legacy, ok := parseJumpComment(jumpComment(o))
		if !ok || legacy || got != o {
			t.Errorf("%+v: read back %+v legacy %v ok %v", o, got, legacy, ok)
		}
		if strings.ContainsAny(jumpComment(o), " \"'\\") {
			t.Errorf("comment %q needs quoting", jumpComment(o))
		}
	}
	if _, legacy, ok := parseJumpComment("ocserv-telemetry"); !ok || !legacy {
		t.Error("the bare comment of earlier releases is not read as legacy")
	}
	for _, bad := range []string{"ocserv-fw", "ocserv-telemetry:id=0", "ocserv-telemetry:id=x", "ocserv-telemetry:id=5:uid=", "ocserv-telemetryx"} {
		if _, _, ok := parseJumpComment(bad); ok {
			t.Errorf("%q read as an owner", bad)
		}
	}
}

// The remove-all transaction deletes every jump to our chains by its exact
// text (from any chain, with iptables-save's quoting), flushes all our
// chains before deleting any (one jumps to another), and names nothing
// else: not ocserv-fw's rules and chains, not an administrator's chain
// whose name starts like ours.
func TestRemoveAllScript(t *testing.T) {
	save := `# Generated by iptables-save v1.8.9 (nf_tables) on Tue Dec  1 00:00:00 2026
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:ADMIN-vpns1 - [0:0]
:FORWARD-ocserv-fw-vpns2 - [0:0]
:OCTEL-vpns1 - [0:0]
:OCTEL-bad/dev - [0:0]
:OCTELR-vpns1 - [0:0]
:OTHER - [0:0]
-A FORWARD -i vpns1 -m comment --comment "ocserv-telemetry:id=77:uid=0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee" -j OCTEL-vpns1
-A FORWARD -o vpns1 -m comment --comment ocserv-telemetry -j OCTEL-vpns1
-A FORWARD -i vpns1 -j ADMIN-vpns1
-A FORWARD -i vpns2 -m comment --comment ocserv-fw -j FORWARD-ocserv-fw-vpns2
-A OTHER -i vpns1 -g OCTEL-vpns1
-A OCTEL-vpns1 -m comment --comment ocserv-telemetry -j OCTELR-vpns1
-A OCTELR-vpns1 -d 10.0.0.0/8 -m comment --comment ocserv-telemetry -j RETURN
COMMIT
`
	want := `-D FORWARD -i vpns1 -m comment --comment "ocserv-telemetry:id=77:uid=0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee" -j OCTEL-vpns1
-D FORWARD -o vpns1 -m comment --comment ocserv-telemetry -j OCTEL-vpns1
-D OTHER -i vpns1 -g OCTEL-vpns1
-F OCTEL-vpns1
-F OCTELR-vpns1
-X OCTEL-vpns1
-X OCTELR-vpns1
`
	if got := removeAllScript(save); got != want {
		t.Errorf("remove-all transaction:\n%s\nwant:\n%s", got, want)
	}
	if got := removeAllScript("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -i vpns1 -j ADMIN-vpns1\nCOMMIT\n"); got != "" {
		t.Errorf("nothing of ours, yet the transaction is %q", got)
	}
}

func TestOwnerMatches(t *testing.T) {
	a := Owner{ID: 10, UID: "u-a"}
	for _, c := range []struct {
		o, rec Owner
		want   bool
	}{
		{a, a, true},
		{Owner{ID: 10}, a, true},              // the disconnect lost its session_uid: the ID decides
		{a, Owner{ID: 10, UID: "u-b"}, false}, // the ID was reused by a later session
		{a, Owner{ID: 11, UID: "u-a"}, false},
		{Owner{}, Owner{}, false}, // no ID proves nothing
	} {
		if got := c.o.matches(c.rec); got != c.want {
			t.Errorf("%+v matches %+v = %v, want %v", c.o, c.rec, got, c.want)
		}
	}
}

// fakeBackend is a unit-level stand-in for Connect's decisions only; the
// real backends are tested against the kernel in the e2e tests.
type fakeBackend struct {
	applyErr, rejectErr, removeErr error
	calls                          []string
	applyDeadline                  time.Duration
	owner                          Owner
}

func (f *fakeBackend) Name() string { return "fake" }
func (f *fakeBackend) Apply(ctx context.Context, dev string, owner Owner, p *events.Policy) error {
	f.calls = append(f.calls, "apply")
	f.owner = owner
	if dl, ok := ctx.Deadline(); ok {
		f.applyDeadline = time.Until(dl)
	}
	return f.applyErr
}
func (f *fakeBackend) RejectAll(ctx context.Context, dev string, owner Owner) error {
	f.calls = append(f.calls, "reject-all")
	f.owner = owner
	return f.rejectErr
}
func (f *fakeBackend) Remove(ctx context.Context, dev string, owner Owner) error {
	f.calls = append(f.calls, "remove")
	f.owner = owner
	return f.removeErr
}
func (f *fakeBackend) Clear(ctx context.Context, dev string) error {
	f.calls = append(f.calls, "clear")
	return f.removeErr
}
func (f *fakeBackend) RemoveAll(ctx context.Context) error { return nil }

func TestConnectFailsClosed(t *testing.T) {
	restricted := &events.Policy{RestrictToRoutes: true, Routes: []string{"10.0.0.0/8"}}
	boom := errors.New("boom")
	for _, c := range []struct {
		name      string
		b         *fakeBackend
		p         *events.Policy
		dev       string
		action    string
		calls     string
		wantError bool
	}{
		{"applied", &fakeBackend{}, restricted, "vpns0", ActionApplied, "apply", false},
		{"apply fails", &fakeBackend{applyErr: boom}, restricted, "vpns0", ActionRejectAll, "apply reject-all", true},
		{"both fail", &fakeBackend{applyErr: boom, rejectErr: boom}, restricted, "vpns0", ActionFailed, "apply reject-all", true},
		{"invalid", &fakeBackend{}, &events.Policy{Invalid: true}, "vpns0", ActionRejectAll, "reject-all", true},
		{"invalid, reject fails", &fakeBackend{rejectErr: boom}, &events.Policy{Invalid: true}, "vpns0", ActionFailed, "reject-all", true},
		{"unrestricted", &fakeBackend{}, &events.Policy{}, "vpns0", ActionNone, "clear", false},
		{"no policy", &fakeBackend{}, nil, "vpns0", ActionNone, "clear", false},
		{"bad device", &fakeBackend{}, restricted, "vpns+", ActionFailed, "", true},
		{"bad device, unrestricted", &fakeBackend{}, &events.Policy{}, "vpns+", ActionNone, "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := Connect(context.Background(), c.b, c.dev, Owner{ID: 5, UID: "u"}, c.p)
			if o.Action != c.action || (o.Err != nil) != c.wantError || o.Backend != "fake" {
				t.Errorf("outcome %+v, want action %s (error %v)", o, c.action, c.wantError)
			}
			if got := strings.Join(c.b.calls, " "); got != c.calls {
				t.Errorf("calls %q, want %q", got, c.calls)
			}
			if o.Refuse() != (c.action == ActionFailed) {
				t.Errorf("Refuse() = %v", o.Refuse())
			}
			if c.calls != "" && c.calls != "clear" && c.b.owner != (Owner{ID: 5, UID: "u"}) {
				t.Errorf("the rules were recorded for %+v, not the connecting session", c.b.owner)
			}
		})
	}
	if o := Connect(context.Background(), nil, "vpns0", Owner{ID: 5}, restricted); o.Action != ActionFailed {
		t.Errorf("no backend, restricted: %+v", o)
	}
	if o := Connect(context.Background(), nil, "vpns0", Owner{ID: 5}, &events.Policy{}); o.Action != ActionNone {
		t.Errorf("no backend, unrestricted: %+v", o)
	}
	// Apply gets two thirds of the budget; reject-all keeps the rest.
	f := &fakeBackend{}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	Connect(ctx, f, "vpns0", Owner{ID: 5}, restricted)
	if f.applyDeadline > 210*time.Millisecond || f.applyDeadline < 100*time.Millisecond {
		t.Errorf("apply got %v of a 300ms budget, want about 200ms", f.applyDeadline)
	}
}

func TestDisconnectOwnership(t *testing.T) {
	boom := errors.New("boom")
	me := Owner{ID: 10, UID: "u-a"}
	f := &fakeBackend{removeErr: boom}
	if o := Disconnect(context.Background(), f, "vpns0", me); o.Action != ActionFailed || o.Err == nil {
		t.Errorf("disconnect failure: %+v", o)
	}
	f = &fakeBackend{}
	if o := Disconnect(context.Background(), f, "vpns0", me); o.Action != ActionRemoved || f.owner != me {
		t.Errorf("disconnect: %+v, removed for %+v", o, f.owner)
	}
	next := Owner{ID: 11, UID: "u-b"}
	f = &fakeBackend{removeErr: &NotOwnerError{Dev: "vpns0", Current: next}}
	o := Disconnect(context.Background(), f, "vpns0", me)
	if o.Action != ActionNone || o.SupersededBy == nil || *o.SupersededBy != next || o.Refuse() {
		t.Errorf("late disconnect: %+v, want action none superseded by %+v", o, next)
	}
	// Without a valid ID nothing can be proved: nothing is removed.
	f = &fakeBackend{}
	if o := Disconnect(context.Background(), f, "vpns0", Owner{UID: "u-a"}); o.Action != ActionNone || o.Err == nil || len(f.calls) != 0 {
		t.Errorf("disconnect without an ID: %+v, calls %v", o, f.calls)
	}
}

func TestOpenUnknown(t *testing.T) {
	if _, err := Open("pf"); err == nil {
		t.Error("unknown kind accepted")
	}
}
