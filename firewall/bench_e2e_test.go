//go:build e2e

package firewall

import (
	"context"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// benchEnv is a restricted user as in the performance goal: several
// routes, a no-route, DNS, four allowed ports, IPv4 and IPv6.
func benchEnv(t testing.TB) map[string]string {
	env := testCases(t)[1].env
	m := map[string]string{}
	for k, v := range env {
		m[k] = v
	}
	m["OCSERV_ROUTES4"] = "10.10.10.0/255.255.255.0 10.30.0.0/255.255.0.0 172.16.5.0/255.255.255.0 "
	m["OCSERV_ROUTES6"] = "2001:db8:10::/64 2001:db8:30::/48 "
	m["OCSERV_ROUTES"] = m["OCSERV_ROUTES4"] + m["OCSERV_ROUTES6"]
	m["OCSERV_ALLOW_PORTS"] = "tcp 443 tcp 22 udp 1194 icmp all "
	return m
}

// BenchmarkCycle measures one connect+disconnect cycle of the same
// restricted user with each backend (in-process, as the hook does it) and
// with Debian's ocserv-fw (exec'd twice with the environment), inside a
// namespace. One b.N iteration is one round of all three, interleaved so
// that machine noise hits them alike; medians and ratios are reported.
func BenchmarkCycle(b *testing.B) {
	requireRoot(b)
	ns := newNetns(b, "bench")
	env := benchEnv(b)
	p := policyOf(b, env)
	backends := map[string]Backend{}
	for _, k := range []string{KindNftables, KindIptables} {
		bk, err := Open(k)
		if err != nil {
			b.Fatal(err)
		}
		backends[k] = bk
	}
	fwEnv := func(reason string) []string {
		e := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "REASON=" + reason}
		for k, v := range env {
			if k != "REASON" && k != "PATH" {
				e = append(e, k+"="+v)
			}
		}
		return e
	}
	times := map[string][]time.Duration{}
	cycle := func(name string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		if name == "ocserv-fw" {
			for _, reason := range []string{"connect", "disconnect"} {
				cmd := exec.CommandContext(ctx, ocservFw)
				cmd.Env = fwEnv(reason)
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("ocserv-fw %s: %v: %s", reason, err, out)
				}
			}
		} else {
			if o := Connect(ctx, backends[name], "vpns7", testOwner, p); o.Action != ActionApplied {
				b.Fatalf("%s connect: %+v", name, o)
			}
			// The connect alone is what a login waits for.
			times[name+"-connect"] = append(times[name+"-connect"], time.Since(start))
			if o := Disconnect(ctx, backends[name], "vpns7", testOwner); o.Action != ActionRemoved {
				b.Fatalf("%s disconnect: %+v", name, o)
			}
		}
		times[name] = append(times[name], time.Since(start))
		return nil
	}
	names := []string{"ocserv-fw", KindNftables, KindIptables}
	// Warm-up round (page cache, module loading) not counted.
	if err := ns.do(func() error {
		for _, n := range names {
			cycle(n)
		}
		clear(times)
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := ns.do(func() error {
			for _, n := range names {
				cycle(n)
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	med := map[string]time.Duration{}
	for _, n := range names {
		ts := slices.Clone(times[n])
		slices.Sort(ts)
		med[n] = ts[len(ts)/2]
		b.ReportMetric(float64(med[n].Microseconds()), n+"-median-µs")
	}
	for _, n := range []string{KindNftables + "-connect", KindIptables + "-connect"} {
		ts := slices.Clone(times[n])
		slices.Sort(ts)
		med[n] = ts[len(ts)/2]
		b.ReportMetric(float64(med[n].Microseconds()), n+"-median-µs")
	}
	for _, n := range []string{KindNftables, KindIptables} {
		b.ReportMetric(float64(med["ocserv-fw"])/float64(med[n]), n+"-speedup-x")
	}
	b.Logf("rounds=%d medians: ocserv-fw %v, nftables %v (%.1fx), iptables %v (%.1fx)", len(times["ocserv-fw"]),
		med["ocserv-fw"], med[KindNftables], float64(med["ocserv-fw"])/float64(med[KindNftables]),
		med[KindIptables], float64(med["ocserv-fw"])/float64(med[KindIptables]))
}

// BenchmarkOpenAuto is what the hook pays to pick a backend.
func BenchmarkOpenAuto(b *testing.B) {
	requireRoot(b)
	ns := newNetns(b, "bopen")
	if err := ns.do(func() error {
		for i := 0; i < b.N; i++ {
			bk, err := Open(KindAuto)
			if err != nil {
				return err
			}
			if bk.Name() != KindNftables {
				b.Errorf("auto picked %s on a kernel with nf_tables", bk.Name())
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
}
