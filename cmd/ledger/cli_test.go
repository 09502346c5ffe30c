package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCommands: ledger status (database and stream), usage errors exit 2
// with a message naming what was wrong, a stale schema is refused.
func TestCommands(t *testing.T) {
	b := newBed(t, "sqlite", nil)
	b.publish(workload(5, 300))
	p := b.serve("")
	s := b.open()
	b.waitApplied(s, b.lastSeq(), time.Minute, p)
	out, err := b.run("status", "--json")
	var r statusReport
	if err != nil || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("status: %v %s", err, out)
	}
	if r.Engine != "sqlite" || r.Position.StreamSeq != b.lastSeq() || r.StreamLastSeq != b.lastSeq() || r.Pending == nil || *r.Pending != 0 || r.Servers != 3 {
		t.Errorf("status %+v", r)
	}
	if out, err := b.run("status"); err != nil || !strings.Contains(out, "applied up to") {
		t.Errorf("status table: %v\n%s", err, out)
	}
	p.stop()
	exit := func(err error) int {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		return 0
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"replay"}, "--from"},
		{[]string{"replay", "--from", "yesterday"}, "--from"},
		{[]string{"replay", "--from", "1", "--reset"}, "--force"},
		{[]string{"serve", "extra"}, "unexpected argument"},
	} {
		out, err := b.run(c.args...)
		if exit(err) != 2 || !strings.Contains(out, c.want) {
			t.Errorf("ledger %v: exit %d, %s; want exit 2 naming %s", c.args, exit(err), out, c.want)
		}
	}
	if out, err := exec.Command(ledgerBin, "frobnicate").CombinedOutput(); exit(err) != 2 || !strings.Contains(string(out), "unknown command") {
		t.Errorf("unknown command: %v %s", err, out)
	}
	// A database without the schema is refused by serve, with the fix.
	b.db = b.dir + "/empty.db"
	b.writeConfig()
	out, err = b.run("serve")
	if exit(err) != 1 || !strings.Contains(out, "ledger migrate") {
		t.Errorf("serve on an unmigrated database: exit %d\n%s", exit(err), out)
	}
}

// TestStreamGapReported: messages removed by the stream's limits while
// the ledger was stopped cannot be applied; the ledger says so (one error
// line naming the sequences, and the error counter), then goes on.
func TestStreamGapReported(t *testing.T) {
	addr := freePort(t)
	b := newBed(t, "sqlite", map[string]string{"LEDGER_METRICS_LISTEN": addr})
	s, err := b.js.Stream(ctxb, stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxMsgs = 150
	if _, err := b.js.UpdateStream(ctxb, cfg); err != nil {
		t.Fatal(err)
	}
	msgs := workload(61, 400)
	b.publish(msgs[:100])
	p := b.serve("")
	st := b.open()
	b.waitApplied(st, 100, time.Minute, p)
	p.stop()
	b.publish(msgs[100:]) // 300 more: the stream keeps the last 150
	p = b.serve("")
	b.waitApplied(st, b.lastSeq(), time.Minute, p)
	waitFor(t, "the gap counted", 10*time.Second, func() bool { return metric(t, addr, "ocserv_ledger_errors_total") >= 1 }, p.out.String)
	out := p.out.String()
	if strings.Count(out, "messages left the stream before they were applied") != 1 ||
		!strings.Contains(out, "first_missing_seq=101") || !strings.Contains(out, "last_missing_seq=250") || !strings.Contains(out, "messages=150") {
		t.Errorf("the gap 101..250 is not reported once:\n%s", out)
	}
	p.stop()
}
