package main

import (
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/pgtest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// metric reads one series from the metrics endpoint (-1 when absent).
func metric(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool, out func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s\n%s", what, within, out())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDatabaseDownThenBack stops PostgreSQL under the running service
// (an immediate shutdown, as a crash) while events keep arriving: the
// service stops acknowledging, retries with backoff, says so once in its
// log and in its metrics, and after the restart applies everything, once.
func TestDatabaseDownThenBack(t *testing.T) {
	// A cluster of its own: this test stops it.
	c, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	_, dsn, err := c.NewDatabase(ctxb)
	if err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	b := newBedDSN(t, dsn, map[string]string{"LEDGER_METRICS_LISTEN": addr})
	msgs := workload(31, 3000)
	b.publish(msgs[:1000])
	p := b.serve("")
	s := b.open()
	b.waitApplied(s, b.lastSeq(), time.Minute, p)
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	b.publish(msgs[1000:2000])
	waitFor(t, "metrics say the database is down", 30*time.Second, func() bool { return metric(t, addr, "ocserv_ledger_database_up") == 0 }, p.out.String)
	// Several failed retries, one log line for the state change.
	waitFor(t, "several retries", 30*time.Second, func() bool { return metric(t, addr, "ocserv_ledger_errors_total") >= 4 }, p.out.String)
	if n := strings.Count(p.out.String(), "ledger ingest: database-down"); n != 1 {
		t.Errorf("%d log lines for the database going down, want one:\n%s", n, p.out.String())
	}
	lag := metric(t, addr, "ocserv_ledger_lag_events")
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	b.publish(msgs[2000:])
	b.waitApplied(s, b.lastSeq(), time.Minute, p)
	waitFor(t, "metrics say the database is up", 30*time.Second, func() bool { return metric(t, addr, "ocserv_ledger_database_up") == 1 }, p.out.String)
	if !strings.Contains(p.out.String(), "ledger ingest: recovered") {
		t.Errorf("no recovery line in the log:\n%s", p.out.String())
	}
	if lag < 1 {
		t.Errorf("lag while the database was down: %v events, want the unapplied ones", lag)
	}
	p.stop()
	sameTables(t, "after the database came back", ledgertest.Checksum(t, s), b.reference())
}

// TestHandOver runs two instances on one PostgreSQL database: one active,
// one standing by; the active one is killed (SIGKILL) and the standby takes
// over within a few polls; nothing is lost or counted twice.
func TestHandOver(t *testing.T) {
	b := newBed(t, "postgres", nil)
	msgs := workload(41, 3000)
	a := b.serve("")
	s := b.open()
	b.publish(msgs[:1000])
	b.waitApplied(s, b.lastSeq(), time.Minute, a)
	standby := b.serveConfig(b.second(), "")
	waitFor(t, "the second instance stands by", 30*time.Second, func() bool { return strings.Contains(standby.out.String(), "standing by") }, standby.out.String)
	if !strings.Contains(a.out.String(), "now the active one") {
		t.Fatalf("the first instance never became active:\n%s", a.out.String())
	}
	b.publish(msgs[1000:2000])
	b.waitApplied(s, b.lastSeq(), time.Minute, a)
	if strings.Contains(standby.out.String(), "now the active one") {
		t.Fatalf("both instances active:\n%s", standby.out.String())
	}
	// Kill the active one in the middle of the stream.
	go b.publish(msgs[2000:])
	time.Sleep(30 * time.Millisecond)
	killed := time.Now()
	a.kill()
	waitFor(t, "the standby takes over", 30*time.Second, func() bool { return strings.Contains(standby.out.String(), "now the active one") }, standby.out.String)
	took := time.Since(killed)
	waitFor(t, "all published", 30*time.Second, func() bool { return b.lastSeq() >= uint64(len(msgs)) }, func() string { return "" })
	b.waitApplied(s, b.lastSeq(), time.Minute, standby)
	t.Logf("hand-over took %s (standby poll 300ms)", took.Round(time.Millisecond))
	standby.stop()
	sameTables(t, "after the hand-over", ledgertest.Checksum(t, s), b.reference())
}

// newBedDSN is newBed on a given PostgreSQL database.
func newBedDSN(t *testing.T, dsn string, extra map[string]string) *bed {
	t.Helper()
	if extra == nil {
		extra = map[string]string{}
	}
	extra["LEDGER_DATABASE"] = dsn
	b := newBed(t, "sqlite", extra)
	b.db = dsn
	b.writeConfig()
	if out, err := b.run("migrate"); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	return b
}
