package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/syncbuf"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// logBuf collects a consumer's log lines (written from its goroutines).
type logBuf struct{ b syncbuf.Buffer }

// lines counts the lines that contain sub.
func (l *logBuf) lines(sub string) int {
	n := 0
	for _, line := range strings.Split(l.b.String(), "\n") {
		if strings.Contains(line, sub) {
			n++
		}
	}
	return n
}

func (l *logBuf) logger() *slog.Logger { return slog.New(slog.NewTextHandler(&l.b, nil)) }

const deletedLine = "deleted while the ledger ran"

// created is the Created time of the durable consumer (zero when there is none).
func (b *bed) created() time.Time {
	b.t.Helper()
	cons, err := b.js.Consumer(context.Background(), streamName, "ocserv_ledger")
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return time.Time{}
	}
	if err != nil {
		b.t.Fatalf("consumer info: %v", err)
	}
	return cons.CachedInfo().Created
}

func (b *bed) deleteConsumer() {
	b.t.Helper()
	if err := b.js.DeleteConsumer(context.Background(), streamName, "ocserv_ledger"); err != nil {
		b.t.Fatalf("delete the ledger's consumer: %v", err)
	}
}

// until waits (bounded) for cond.
func (b *bed) until(what string, cond func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The consumer is deleted while the ledger consumes and events keep
// coming: the failed fetches show it (the consumer's info is read too
// seldom here to), the ledger makes it again from the committed position,
// and every event is applied exactly once.
func TestDeletedConsumerIsRecreatedWhileConsuming(t *testing.T) {
	b := newBed(t, t.TempDir())
	first := b.sessions("alice", 20)
	b.publish(first...)
	var log logBuf
	c, stop := b.runWith(Options{Store: b.store, Batch: 10, Fetch: 10, Log: log.logger(), infoEvery: time.Hour})
	b.waitPosition(uint64(len(first)))
	before := b.created()

	// Published in small groups while the consumer is deleted under
	// the ledger, so some are fetched before, some during, some after.
	second := b.sessions("bob", 100)
	pubErr := make(chan error, 1)
	go func() {
		defer close(pubErr)
		for i := 0; i < len(second); i += 4 {
			for _, m := range second[i:min(i+4, len(second))] {
				if _, err := b.js.Publish(context.Background(), m.Subject, m.Data); err != nil {
					pubErr <- fmt.Errorf("publish %s: %w", m.Subject, err)
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	b.waitPosition(uint64(len(first) + 40))
	b.deleteConsumer()
	if err := <-pubErr; err != nil {
		t.Fatal(err)
	}
	total := uint64(len(first) + len(second))
	b.waitPosition(total)
	s := caughtUp(c, total)
	stop()

	if n := b.count("alice"); n != 20 {
		t.Errorf("alice: %d sessions, want 20", n)
	}
	if n := b.count("bob"); n != 100 {
		t.Errorf("bob: %d sessions, want 100 (none skipped across the deletion)", n)
	}
	if s.Applied != int64(total) || s.Duplicates != 0 || s.Rejected != 0 {
		t.Errorf("status: applied %d, duplicates %d, rejected %d; want %d, 0, 0 (each event once)", s.Applied, s.Duplicates, s.Rejected, total)
	}
	if p, _ := b.store.Position(context.Background()); p.StreamSeq != total {
		t.Errorf("committed position %d, want %d", p.StreamSeq, total)
	}
	if s.Errors["consumer_deleted"] != 1 || !strings.Contains(s.LastError, deletedLine) {
		t.Errorf("status errors %v, last error %q: want one consumer_deleted, named in the last error", s.Errors, s.LastError)
	}
	if after := b.created(); after.IsZero() || after.Equal(before) {
		t.Errorf("the consumer was not made again (created %v, before %v)", after, before)
	}
	if n := log.lines(deletedLine); n != 1 {
		t.Errorf("%d log lines about the deletion, want 1:\n%s", n, log.b.String())
	}
}

// Deleted while the ledger is idle: one log line with the reason, none
// per failed fetch, no nats-down, and what comes next is applied.
func TestDeletedConsumerIsLoggedOnce(t *testing.T) {
	b := newBed(t, t.TempDir())
	first := b.sessions("alice", 5)
	b.publish(first...)
	var log logBuf
	c, stop := b.runWith(Options{Store: b.store, Batch: 50, Log: log.logger()})
	b.waitPosition(uint64(len(first)))
	before := b.created()

	b.deleteConsumer()
	b.until("the consumer made again", func() bool { t := b.created(); return !t.IsZero() && !t.Equal(before) })
	time.Sleep(time.Second) // fetches (every 20ms) and info reads go on meanwhile
	second := b.sessions("alice", 5)
	b.publish(second...)
	total := uint64(len(first) + len(second))
	b.waitPosition(total)
	s := caughtUp(c, total)
	stop()

	if n := log.lines(deletedLine); n != 1 {
		t.Errorf("%d log lines about the deletion, want 1:\n%s", n, log.b.String())
	}
	if n := log.lines("reason="); n != 1 {
		t.Errorf("the deletion's line does not give its reason (or more than one does):\n%s", log.b.String())
	}
	if n := log.lines(StateNATSDown); n != 0 {
		t.Errorf("a deleted consumer was logged as NATS down:\n%s", log.b.String())
	}
	if s.Errors["consumer_deleted"] != 1 || s.Errors["nats"] != 0 || s.State != StateRunning {
		t.Errorf("status %+v: want one consumer_deleted error, no nats errors, running", s)
	}
	if n := b.count("alice"); n != 10 || s.Applied != int64(total) || s.Duplicates != 0 {
		t.Errorf("alice: %d sessions, applied %d, duplicates %d; want 10, %d, 0", n, s.Applied, s.Duplicates, total)
	}
}

// Someone deletes the ledger's consumer and makes another under its name
// (another filter, start and ack policy) while a batch waits on the
// database: the ledger reads nothing of it, says so once (log, status,
// errors), leaves it alone, and once it is deleted makes its own again
// from the committed position, every event applied once.
func TestReplacedConsumerIsLeftAloneAndReported(t *testing.T) {
	b := newBed(t, t.TempDir())
	st := &away{Store: b.store}
	first := b.sessions("alice", 5)
	b.publish(first...)
	var log logBuf
	c, stop := b.runWith(Options{Store: st, Batch: 5, Fetch: 5, Log: log.logger(), infoEvery: time.Hour})
	b.waitPosition(uint64(len(first)))

	// More than three fetches' worth while the database is away: one
	// held by the retrying batch, one queued, one in the fetching
	// goroutine's hands, so it fetches nothing while the name changes
	// hands.
	st.set(true)
	second := b.sessions("bob", 10)
	b.publish(second...)
	var fetched, stable int
	b.until("the fetches stopped with messages still on the consumer", func() bool {
		cons, err := b.js.Consumer(context.Background(), streamName, "ocserv_ledger")
		if err != nil {
			return false
		}
		info := cons.CachedInfo()
		if info.NumPending == 0 || info.NumAckPending != fetched {
			fetched, stable = info.NumAckPending, 0
			return false
		}
		stable++
		return stable == 10 // 200ms without a fetch, at 20ms a fetch
	})
	b.deleteConsumer()
	foreign := jetstream.ConsumerConfig{Durable: "ocserv_ledger", FilterSubject: "ocserv.events.vpn-a.>", AckPolicy: jetstream.AckExplicitPolicy}
	if _, err := b.js.CreateConsumer(context.Background(), streamName, foreign); err != nil {
		t.Fatalf("make the other consumer: %v", err)
	}
	st.set(false)
	b.until("the conflict reported", func() bool { return c.Status().State == StateConsumerConflict })
	// What was fetched from the ledger's own consumer is applied, or
	// dropped to be read again; nothing of the other one (it starts at
	// the stream's first message, so anything of it is a duplicate or
	// moves the position past those).
	held := uint64(len(first) + fetched)
	if p, _ := b.store.Position(context.Background()); p.StreamSeq > held || c.Status().Duplicates != 0 {
		t.Errorf("position %d, duplicates %d during the conflict; want at most %d and none (nothing read from the other consumer)", p.StreamSeq, c.Status().Duplicates, held)
	}
	time.Sleep(time.Second) // the ledger must not touch it meanwhile
	cons, err := b.js.Consumer(context.Background(), streamName, "ocserv_ledger")
	if err != nil || cons.CachedInfo().Config.FilterSubject != foreign.FilterSubject {
		t.Fatalf("the other consumer was not left alone (err %v)", err)
	}
	s := c.Status()
	if s.Errors["consumer_replaced"] != 1 || !strings.Contains(s.LastError, "ocserv.events.vpn-a.>") {
		t.Errorf("status errors %v, last error %q: want one consumer_replaced, naming the other filter", s.Errors, s.LastError)
	}
	if n := log.lines("replaced or changed by someone other than this ledger"); n != 1 {
		t.Errorf("%d log lines about the replacement, want 1:\n%s", n, log.b.String())
	}

	b.deleteConsumer()
	total := uint64(len(first) + len(second))
	b.waitPosition(total)
	s = caughtUp(c, total)
	stop()
	if n := b.count("alice") + b.count("bob"); n != 15 || s.Applied != int64(total) || s.Duplicates != 0 {
		t.Errorf("%d sessions, applied %d, duplicates %d; want 15, %d, 0", n, s.Applied, s.Duplicates, total)
	}
	if s.State != StateRunning || s.Errors["consumer_deleted"] != 0 {
		t.Errorf("status %+v: want running, the deletion of the other consumer not counted as the ledger's", s)
	}
}

// The diff a conflict logs names what differs, and says when nothing does.
func TestConfigDiff(t *testing.T) {
	c := New(Options{Prefix: "ocserv"})
	want := c.config(ledger.Position{StreamSeq: 41})
	tests := []struct {
		name string
		got  func(jetstream.ConsumerConfig) jetstream.ConsumerConfig
		has  []string
	}{
		{"same", func(g jetstream.ConsumerConfig) jetstream.ConsumerConfig { return g }, []string{"the same settings"}},
		{"filter", func(g jetstream.ConsumerConfig) jetstream.ConsumerConfig {
			g.FilterSubject = "ocserv.events.vpn-b.>"
			return g
		}, []string{"filter ocserv.events.vpn-b.> (the ledger's: ocserv.events.>)"}},
		{"filters and start", func(g jetstream.ConsumerConfig) jetstream.ConsumerConfig {
			g.FilterSubject, g.FilterSubjects = "", []string{"a.>", "b.>"}
			g.DeliverPolicy, g.OptStartSeq = jetstream.DeliverAllPolicy, 0
			return g
		}, []string{"filter a.>,b.>", "deliver_policy all", "start_seq 0 (the ledger's: 42)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := configDiff(want, tt.got(want))
			for _, h := range tt.has {
				if !strings.Contains(d, h) {
					t.Errorf("%q does not say %q", d, h)
				}
			}
		})
	}
}

// The ledger's own consumer with its filter changed in place (its
// creation time and numbering unchanged): the consumer's info shows it,
// and it is reported and left alone like a replaced one.
func TestChangedConsumerIsReported(t *testing.T) {
	b := newBed(t, t.TempDir())
	first := b.sessions("alice", 5)
	b.publish(first...)
	var log logBuf
	c, stop := b.runWith(Options{Store: b.store, Batch: 50, Log: log.logger(), infoEvery: 50 * time.Millisecond})
	b.waitPosition(uint64(len(first)))

	cons, err := b.js.Consumer(context.Background(), streamName, "ocserv_ledger")
	if err != nil {
		t.Fatal(err)
	}
	cfg := cons.CachedInfo().Config
	cfg.FilterSubject = "ocserv.events.vpn-b.>"
	if _, err := b.js.UpdateConsumer(context.Background(), streamName, cfg); err != nil {
		t.Fatalf("change the consumer's filter: %v", err)
	}
	b.until("the conflict reported", func() bool { return c.Status().State == StateConsumerConflict })
	s := c.Status()
	if s.Errors["consumer_replaced"] != 1 || !strings.Contains(s.LastError, "filter ocserv.events.vpn-b.> (the ledger's: ocserv.events.>)") {
		t.Errorf("status errors %v, last error %q: want one consumer_replaced, naming the changed filter", s.Errors, s.LastError)
	}
	time.Sleep(500 * time.Millisecond) // ten info reads: no second report, no fight
	if n := log.lines("replaced or changed by someone other than this ledger"); n != 1 {
		t.Errorf("%d log lines about the change, want 1:\n%s", n, log.b.String())
	}
	if cons, err := b.js.Consumer(context.Background(), streamName, "ocserv_ledger"); err != nil || cons.CachedInfo().Config.FilterSubject != cfg.FilterSubject {
		t.Fatalf("the changed consumer was not left alone (err %v)", err)
	}

	b.deleteConsumer()
	afterDeletion(t, b, c, stop, len(first))
}

// Someone makes another consumer under the name in the moment between
// the ledger finding its own gone and making it again: the ledger's
// creation is refused, and theirs is reported and left alone, not
// deleted as a start would.
func TestRecreationLeavesAnotherConsumerAlone(t *testing.T) {
	b := newBed(t, t.TempDir())
	first := b.sessions("alice", 5)
	b.publish(first...)
	var log logBuf
	c := b.consumer(Options{Store: b.store, Batch: 50, Log: log.logger(), infoEvery: time.Hour})
	// As if it had just made its consumer again: the next re-creation
	// waits a second, the moment the other consumer is made in.
	c.recreated, c.recreateBo = time.Now(), newBackoff()
	c.recreateBo.InitialInterval, c.recreateBo.RandomizationFactor = time.Second, 0
	c.recreateBo.Reset()
	_, stop := b.start(c)
	b.waitPosition(uint64(len(first)))

	b.deleteConsumer()
	b.until("the deletion noticed", func() bool { return log.lines(deletedLine) == 1 })
	foreign := jetstream.ConsumerConfig{Durable: "ocserv_ledger", FilterSubject: "ocserv.events.vpn-b.>", AckPolicy: jetstream.AckAllPolicy}
	if _, err := b.js.CreateConsumer(context.Background(), streamName, foreign); err != nil {
		t.Fatalf("make the other consumer while the ledger waits to make its own: %v", err)
	}
	b.until("the conflict reported", func() bool { return c.Status().State == StateConsumerConflict })
	time.Sleep(500 * time.Millisecond)
	cons, err := b.js.Consumer(context.Background(), streamName, "ocserv_ledger")
	if err != nil || cons.CachedInfo().Config.FilterSubject != foreign.FilterSubject {
		t.Fatalf("the other consumer was not left alone (err %v)", err)
	}
	s := c.Status()
	if s.Errors["consumer_deleted"] != 1 || s.Errors["consumer_replaced"] != 1 || !strings.Contains(s.LastError, "ocserv.events.vpn-b.>") {
		t.Errorf("status errors %v, last error %q: want one deletion, one replacement naming the other filter", s.Errors, s.LastError)
	}
	if n := log.lines("replaced or changed by someone other than this ledger"); n != 1 {
		t.Errorf("%d log lines about the other consumer, want 1:\n%s", n, log.b.String())
	}

	b.deleteConsumer()
	afterDeletion(t, b, c, stop, len(first))
}

// afterDeletion: with the other consumer deleted, alice's next five
// sessions are published and everything (her sessions before, n events,
// and these) is applied once, by the ledger's own consumer made again.
func afterDeletion(t *testing.T, b *bed, c *Consumer, stop func(), n int) {
	t.Helper()
	second := b.sessions("alice", 5)
	b.publish(second...)
	total := uint64(n + len(second))
	b.waitPosition(total)
	s := caughtUp(c, total)
	stop()
	if n := b.count("alice"); n != 10 || s.Applied != int64(total) || s.Duplicates != 0 {
		t.Errorf("alice: %d sessions, applied %d, duplicates %d; want 10, %d, 0", n, s.Applied, s.Duplicates, total)
	}
}
