//go:build e2e

package e2e

// The enforcement latency benchmark (scripts/bench-policy.sh,
// docs/policy.md): run with POLICY_BENCH=1; it writes its Markdown to
// POLICY_BENCH_OUT. Nothing here asserts a threshold: the figures are for
// people.

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/testbed"
)

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p * float64(len(s)-1))
	return s[i]
}

func eventTime(e events.Event) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, e.Time)
	return t
}

// TestBenchPolicyEnforcement measures, in a bed with real ocserv,
// openconnect, shipper, commander and ledger (accounting every second),
// the time from the accounting event that crosses a user's quota to the
// disconnect event of the session it ends, and, as the baseline in the
// same bed, from an operator's signed kick to the disconnect event.
func TestBenchPolicyEnforcement(t *testing.T) {
	if os.Getenv("POLICY_BENCH") == "" {
		t.Skip("set POLICY_BENCH=1 (scripts/bench-policy.sh) to run the enforcement benchmark")
	}
	runs := 20
	if n, err := strconv.Atoi(os.Getenv("POLICY_BENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	const acct = time.Second
	const quota = 2 << 20
	f := newPolicyFleet(t, 1, acct)
	b := f.beds[0]
	f.ctlOK("quota", "alice", strconv.Itoa(quota))
	session := func() events.Event {
		cs := connects(b, "alice")
		return cs[len(cs)-1]
	}
	disconnectOf := func(uid string) (events.Event, bool) {
		for _, e := range f.events.all() {
			if e.Type == events.Disconnect && e.SessionUID == uid {
				return e, true
			}
		}
		return events.Event{}, false
	}
	var crossToEnd, trafficToEnd, kickToEnd, crossToNATS, natsToKick []time.Duration
	cut := 0 // crossing transfers the disconnect cut short
	// Each run's clients log in again from the namespaces of the last run's
	// (a bed has room for 16 clients).
	var lastA, lastB *testbed.Client
	for i := range runs {
		c, err := b.Connect("alice", b.Password("alice"), testbed.ConnectOptions{VPNCScript: true, From: lastA})
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		lastA = c
		uid := session().SessionUID
		// Three quarters of the quota first (overhead included, no reading
		// of it crosses), then the half that crosses it.
		if err := c.SendTraffic(quota * 3 / 4); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		xferStart := time.Now()
		sendDone := make(chan error, 1)
		go func() { sendDone <- c.SendTraffic(quota / 2) }()
		var disc events.Event
		var sent time.Time
		var sendErr error
		waitCond(t, "the session's end", 90*time.Second, func() bool {
			if sent.IsZero() {
				select {
				case sendErr = <-sendDone:
					sent = time.Now()
				default:
				}
			}
			var ok bool
			disc, ok = disconnectOf(uid)
			return ok
		})
		if sent.IsZero() || sendErr != nil || sent.After(eventTime(disc)) {
			// The disconnect cut the crossing transfer (a reading taken
			// during it crossed the quota and the sessions ended first):
			// the traffic ended with the session; count from the
			// transfer's start, which makes the figure longer, never
			// shorter.
			cut++
			sent = xferStart
		}
		var cross time.Time
		var crossID string
		for _, e := range f.events.all() {
			if e.Type != events.Accounting || e.SessionUID != uid || e.Accounting == nil {
				continue
			}
			var a struct {
				In  int64 `json:"bytes_in"`
				Out int64 `json:"bytes_out"`
			}
			json.Unmarshal(*e.Accounting, &a)
			if at := eventTime(e); a.In+a.Out >= quota && (cross.IsZero() || at.Before(cross)) {
				cross, crossID = at, e.EventID
			}
		}
		if cross.IsZero() {
			t.Fatalf("run %d: no accounting event crossed the quota before the disconnect", i)
		}
		crossToEnd = append(crossToEnd, eventTime(disc).Sub(cross))
		crossToNATS = append(crossToNATS, f.events.arrival(crossID).Sub(cross))
		// The ledger's kick, as the server audited it on receipt.
		for _, e := range f.events.all() {
			if e.Type != events.Audit || e.Audit == nil || eventTime(e).Before(cross) {
				continue
			}
			var a struct{ Action, Phase, Role string }
			json.Unmarshal(*e.Audit, &a)
			if a.Action == "kick" && a.Role == "policy" && a.Phase == "accepted" {
				natsToKick = append(natsToKick, eventTime(e).Sub(f.events.arrival(crossID)))
				break
			}
		}
		trafficToEnd = append(trafficToEnd, eventTime(disc).Sub(sent))

		f.ctlOK("quota", "reset", "alice")
		waitCond(t, "alice allowed again", 30*time.Second, func() bool { return mirrorOf(b, "alice").Verdict == nil })

		// The baseline: an operator's kick of a connected user.
		k, err := b.Connect("bob", b.Password("bob"), testbed.ConnectOptions{From: lastB})
		if err != nil {
			t.Fatal(err)
		}
		lastB = k
		cs := connects(b, "bob")
		kuid := cs[len(cs)-1].SessionUID
		start := time.Now()
		f.ctlOK("kick", "bob", "-s", b.ServerID(), "--force", "--reason", "bench")
		waitCond(t, "bob's end", 60*time.Second, func() bool { var ok bool; disc, ok = disconnectOf(kuid); return ok })
		kickToEnd = append(kickToEnd, eventTime(disc).Sub(start))
		waitCond(t, "both clients gone", 30*time.Second, func() bool { return lastA.Exited() && lastB.Exited() })

		f.ctlOK("unkick", "bob", "-s", b.ServerID(), "--force")
	}
	var out strings.Builder
	fmt.Fprintf(&out, "Enforcement in the bed: real ocserv %s, openconnect, shipper (accounting every %s), commander and ledger (SQLite) on one machine, %d crossings of a %d MiB quota.\n\n", b.Version(), acct, runs, quota>>20)
	fmt.Fprintln(&out, "| from → to | p50 | p99 | max |")
	fmt.Fprintln(&out, "|---|---|---|---|")
	row := func(what string, d []time.Duration) {
		if len(d) < runs {
			t.Fatalf("%s: %d readings of %d runs", what, len(d), runs)
		}
		fmt.Fprintf(&out, "| %s | %s | %s | %s |\n", what, pct(d, 0.5).Round(time.Millisecond), pct(d, 0.99).Round(time.Millisecond), pct(d, 1).Round(time.Millisecond))
	}
	row("the accounting event that crosses the quota → the session's disconnect event", crossToEnd)
	row("… of which: the event written → a NATS subscriber has it (the shipper)", crossToNATS)
	row("… of which: a subscriber has it → the server receives the ledger's kick (ingest, evaluation, command)", natsToKick)
	row("the end of the traffic → the disconnect event (includes waiting for the next accounting reading)", trafficToEnd)
	row("baseline: an operator's `ctl kick` → the disconnect event", kickToEnd)
	fmt.Fprintf(&out, "\nEach crossing: %d KiB, then %d KiB that cross the quota; %d of the %d crossing transfers were cut short by the disconnect itself (their traffic's end is taken as the transfer's start).\n",
		quota*3/4>>10, quota/2>>10, cut, runs)
	allowance := acct + 5*time.Second
	fmt.Fprintf(&out, "\nMedian crossing → end / median kick → end: %.2fx. The goal (DESIGN.md): the sessions end within one accounting interval + 5 s (%s here) of the traffic; the end of the traffic → the disconnect event took p50 %.2f, p99 %.2f, max %.2f of it.\n",
		float64(pct(crossToEnd, 0.5))/float64(pct(kickToEnd, 0.5)), allowance,
		float64(pct(trafficToEnd, 0.5))/float64(allowance), float64(pct(trafficToEnd, 0.99))/float64(allowance), float64(pct(trafficToEnd, 1))/float64(allowance))
	t.Log("\n" + out.String())
	if p := os.Getenv("POLICY_BENCH_OUT"); p != "" {
		if err := os.WriteFile(p, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
