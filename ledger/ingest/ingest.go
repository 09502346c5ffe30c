// Package ingest owns the ledger's JetStream side: the durable pull
// consumer on the events stream (every server's subjects), the loop that
// applies each batch in one database transaction and acknowledges it only
// after the commit, the retry with backoff while the database is away,
// the hand-over between several instances (one active at a time), and the
// ordered replay of the stream from any point. docs/ledger.md is the
// reference.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/crashpoint"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// Crash points (tests kill the real service at them).
const (
	CrashAfterCommit = "ledger-after-commit" // the batch is committed, not yet acknowledged
)

// States of the consumer, as status and metrics report them.
const (
	StateStarting     = "starting"
	StateStandby      = "standby" // another instance is active
	StateRunning      = "running"
	StateDatabaseDown = "database-down"
	StateNATSDown     = "nats-down"
	// StateConsumerConflict: a consumer this ledger did not create holds
	// the durable's name; ingest waits until it is gone (see lost.go).
	StateConsumerConflict = "consumer-conflict"
	StateStopped          = "stopped"
)

// DefaultBatch is Options.Batch's default (LEDGER_BATCH): a transaction
// of 25,000 events drained a backlog about a quarter faster than one of
// 5,000 on SQLite and an eighth on PostgreSQL (BenchmarkApply), and
// 50,000 no faster.
const DefaultBatch = 25000

// joinWait is how long a transaction waits for the next fetch of a
// backlog to join it before it commits what it has.
const joinWait = 250 * time.Millisecond

// MaxFetch is the most messages one fetch takes by default. Decoded
// fetches are most of what the service keeps live in a backlog (the one
// fetched ahead, the one waiting, the chunks being claimed and
// projected), and the collector's work follows what is live: at 2,500
// rather than 5,000 the ingest benchmark's live heap fell by a fifth and
// its collections took about a quarter less CPU.
const MaxFetch = 2500

// Options configure a Consumer.
type Options struct {
	JS      jetstream.JetStream
	Stream  string // the events stream (NATS_EVENTS_STREAM)
	Prefix  string // subject prefix: the consumer takes <prefix>.events.>
	Durable string // the durable consumer's name (LEDGER_CONSUMER)
	Store   interface {
		ledger.IngestStore
		Ping(ctx context.Context) error
	}
	// Leader, when set, makes this instance wait until it holds the
	// lock (several instances on one database).
	Leader      ledger.Leader
	StandbyPoll time.Duration // default 2s
	// Batch is the most events one transaction holds (default
	// DefaultBatch): while a backlog lasts, fetches that are already
	// waiting join one transaction, so rows many events change (a
	// session's counters, a user's usage of the day) are written once.
	Batch int
	// Fetch is the most messages one fetch takes (default the smaller of
	// Batch and MaxFetch): what the consumer holds in memory at a time.
	Fetch   int
	MaxWait time.Duration // default 100ms: how long a fetch waits to fill a batch
	// AckWait is the consumer's ack wait (default 60s): a batch held
	// longer (the database is away) is kept from redelivery with
	// in-progress acks.
	AckWait time.Duration
	Log     *slog.Logger
	// OnBatch, when set, is called after each committed batch.
	OnBatch func(ledger.BatchResult)

	// infoEvery is how often the consumer's info is read (lag, and a
	// consumer lost or replaced); default 2s. Tests lengthen it to see
	// what the fetches alone notice.
	infoEvery time.Duration
}

func (o *Options) defaults() {
	if o.StandbyPoll <= 0 {
		o.StandbyPoll = 2 * time.Second
	}
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	if o.Fetch <= 0 {
		o.Fetch = min(o.Batch, MaxFetch)
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 100 * time.Millisecond
	}
	if o.AckWait <= 0 {
		o.AckWait = 60 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Durable == "" {
		o.Durable = "ocserv_ledger"
	}
	if o.infoEvery <= 0 {
		o.infoEvery = 2 * time.Second
	}
}

// Status is what the consumer reports.
type Status struct {
	State         string          `json:"state"`
	Since         time.Time       `json:"since"`
	Active        bool            `json:"active"`
	Position      ledger.Position `json:"position"`
	LagEvents     uint64          `json:"lag_events"`
	LagSeconds    float64         `json:"lag_seconds"`
	LastProcessed time.Time       `json:"last_processed,omitzero"` // wall time of the last commit
	LastError     string          `json:"last_error,omitempty"`
	Failures      int             `json:"consecutive_failures,omitempty"`
	Errors        map[string]int  `json:"errors"` // by kind: database, nats, rejected_by_database, consumer_deleted, consumer_replaced
	Applied       int64           `json:"applied"`
	Duplicates    int64           `json:"duplicates"`
	Rejected      int64           `json:"rejected"`
	Expired       int64           `json:"expired"`
}

// Consumer applies the events stream to a store.
type Consumer struct {
	o Options

	mu sync.Mutex
	st Status
	// single: the next batch is applied alone (after a transaction of
	// several fetches failed), until one commits.
	single bool
	// recreated and recreateBo pace re-creations of a consumer deleted
	// under the running ledger (see lost.go), so something that keeps
	// deleting it is not answered in a tight loop.
	recreated  time.Time
	recreateBo *backoff.ExponentialBackOff
	// keepName: the consumer is being made again after it was found
	// gone, so whatever holds the name by now is someone else's and is
	// not deleted (a start resets the name; this must not fight).
	keepName bool
}

// New makes a consumer; Run starts it.
func New(o Options) *Consumer {
	o.defaults()
	return &Consumer{o: o, st: Status{State: StateStarting, Since: time.Now().UTC(), Errors: map[string]int{}}}
}

// Status returns a copy of the current status.
func (c *Consumer) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.st
	s.Errors = make(map[string]int, len(c.st.Errors))
	for k, v := range c.st.Errors {
		s.Errors[k] = v
	}
	return s
}

// setState records a state change and logs it once (not per retry).
func (c *Consumer) setState(state string, err error) {
	c.mu.Lock()
	prev, failures := c.st.State, c.st.Failures
	if err != nil {
		c.st.LastError = err.Error()
		c.st.Failures++
	} else if state == StateRunning {
		c.st.Failures = 0
	}
	if prev == state {
		c.mu.Unlock()
		return
	}
	c.st.State, c.st.Since = state, time.Now().UTC()
	c.st.Active = state == StateRunning || state == StateDatabaseDown || state == StateNATSDown || state == StateConsumerConflict
	c.mu.Unlock()
	switch {
	case state == StateConsumerConflict:
		// logged by the caller, with what differs
	case err != nil:
		c.o.Log.Warn("ledger ingest: "+state+"; retrying with backoff (nothing is acknowledged meanwhile)", "err", err.Error())
	case prev == StateDatabaseDown || prev == StateNATSDown || prev == StateConsumerConflict:
		c.o.Log.Info("ledger ingest: recovered", "was", prev, "failures", failures)
	default:
		c.o.Log.Info("ledger ingest: " + state)
	}
}

func (c *Consumer) countError(kind string) {
	c.mu.Lock()
	c.st.Errors[kind]++
	c.mu.Unlock()
}

// Run consumes until ctx ends. With a Leader it first waits to become the
// active instance, and steps back to standby if the lock is lost.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.setState(StateStopped, nil)
	for ctx.Err() == nil {
		lost := make(<-chan struct{})
		if c.o.Leader != nil {
			var ok bool
			ok, lost = c.lead(ctx)
			if !ok {
				return nil
			}
		}
		lctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-lost:
				c.o.Log.Warn("ledger ingest: lost the leader lock; stepping back to standby")
				cancel()
			case <-lctx.Done():
			}
		}()
		err := c.consume(lctx)
		cancel()
		if c.o.Leader != nil {
			c.o.Leader.Release()
		}
		if err != nil && ctx.Err() == nil {
			return err
		}
	}
	return nil
}

// lead waits until this instance holds the lock (false: ctx ended).
func (c *Consumer) lead(ctx context.Context) (bool, <-chan struct{}) {
	logged := false
	for {
		held, lost, err := c.o.Leader.TryLead(ctx)
		if held {
			c.o.Log.Info("ledger ingest: this instance is now the active one")
			return true, lost
		}
		if err != nil {
			c.countError("database")
			c.setState(StateDatabaseDown, fmt.Errorf("take the leader lock: %w", err))
		} else {
			c.setState(StateStandby, nil)
			if !logged {
				c.o.Log.Info("ledger ingest: another instance is active; standing by", "poll", c.o.StandbyPoll.String())
				logged = true
			}
		}
		select {
		case <-ctx.Done():
			return false, nil
		case <-time.After(c.o.StandbyPoll):
		}
	}
}

func (c *Consumer) filter() string { return c.o.Prefix + ".events.>" }

// consumer (re)creates the durable consumer to start right after the
// database's committed position. The database, not the consumer's ack
// state, is the record of what was applied (they are written in one
// transaction), so starting there keeps the stream's order exactly even
// after a crash between commit and ack, or in a hand-over.
func (c *Consumer) consumer(ctx context.Context, pos ledger.Position) (jetstream.Consumer, error) {
	cfg := c.config(pos)
	if !c.keepName {
		err := c.o.JS.DeleteConsumer(ctx, c.o.Stream, c.o.Durable)
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("reset consumer %s: %w", c.o.Durable, err)
		}
	}
	cons, err := c.o.JS.CreateConsumer(ctx, c.o.Stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on %s: %w", c.o.Durable, c.o.Stream, err)
	}
	c.keepName = false
	c.checkGap(ctx, pos)
	return cons, nil
}

// config is the consumer the ledger makes to start right after pos.
func (c *Consumer) config(pos ledger.Position) jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		Durable:       c.o.Durable,
		Description:   "ocserv-telemetry ledger (its database holds the position; recreated at each start)",
		FilterSubject: c.filter(),
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       c.o.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: c.maxAckPending(),
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if pos.StreamSeq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, pos.StreamSeq+1
	}
	return cfg
}

// maxAckPending is the consumer's limit of messages delivered and not
// yet acknowledged: at least what the consumer holds at most in a
// backlog, a transaction committing, the next one being built, a fetch
// waiting to join it and the fetch under way. With less, the server
// stops delivering in the middle of a backlog while a commit is under
// way: the fetch comes back short or empty, that ends the transaction
// being built early, and the next batch goes alone, after the commit
// (in the ingest benchmark, about one transaction in three was cut so).
func (c *Consumer) maxAckPending() int {
	return max(2*(c.o.Batch+c.o.Fetch), 10000)
}

// checkGap says loudly when messages after the committed position have
// already left the stream (its limits removed them while the ledger was
// stopped or behind): they can no longer be applied, and nothing else
// would tell.
func (c *Consumer) checkGap(ctx context.Context, pos ledger.Position) {
	if pos.StreamSeq == 0 {
		return // a new ledger starts from what the stream still holds
	}
	st, err := c.o.JS.Stream(ctx, c.o.Stream)
	if err != nil {
		return
	}
	first := st.CachedInfo().State.FirstSeq
	if first > pos.StreamSeq+1 {
		c.countError("stream_gap")
		c.o.Log.Error("ledger ingest: messages left the stream before they were applied (the stream's limits removed them); they are missing from the ledger",
			"stream", c.o.Stream, "first_missing_seq", pos.StreamSeq+1, "last_missing_seq", first-1, "messages", first-1-pos.StreamSeq)
	}
}

func newBackoff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 30 * time.Second
	b.MaxElapsedTime = 0
	b.Reset()
	return b
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// consume is the active instance's loop: from the database's committed
// position, again after a transaction of several fetches failed (their
// messages are no longer held, so they are read again from the stream).
func (c *Consumer) consume(ctx context.Context) error {
	c.keepName = false // a start takes the name back
	for {
		cons := c.start(ctx)
		if cons == nil || !c.run(ctx, cons) {
			return nil
		}
	}
}

// start reads the committed position and (re)creates the consumer after
// it, retrying with backoff until both are there; nil when ctx ended.
func (c *Consumer) start(ctx context.Context) jetstream.Consumer {
	bo := newBackoff()
	for {
		pos, err := c.o.Store.Position(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.countError("database")
			c.setState(StateDatabaseDown, err)
		} else {
			cons, err := c.consumer(ctx, pos)
			if err == nil {
				c.mu.Lock()
				c.st.Position = pos
				c.mu.Unlock()
				c.setState(StateRunning, nil)
				return cons
			}
			if ctx.Err() != nil {
				return nil
			}
			if c.keepName && errors.Is(err, jetstream.ErrConsumerExists) {
				// Someone made another consumer under the name between
				// the loss and this creation: theirs is left alone.
				if cur, lerr := c.o.JS.Consumer(ctx, c.o.Stream, c.o.Durable); lerr == nil {
					if !c.conflict(ctx, lostConsumer{why: err, foreign: cur.CachedInfo()}) {
						return nil
					}
					continue
				}
			}
			c.countError("nats")
			c.setState(StateNATSDown, err)
		}
		if !sleep(ctx, bo.NextBackOff()) {
			return nil
		}
	}
}

// run applies what cons delivers until ctx ends (false), a transaction
// of several fetches failed or the consumer was lost (true: start again
// from the committed position). The next fetch is made while a batch is
// applied and committed (the commit's fsync is the longest wait), in
// order.
func (c *Consumer) run(ctx context.Context, cons jetstream.Consumer) bool {
	own := owned{cons: cons, created: cons.CachedInfo().Created}
	rctx, stop := context.WithCancel(ctx)
	batches := make(chan batch, 1)
	fetched := make(chan struct{})
	lost := make(chan lostConsumer, 1)
	go c.watchLag(rctx, own, lost)
	go func() {
		defer close(fetched)
		c.fetch(rctx, own, batches, lost)
	}()
	// pend is a transaction of several fetches still committing (a
	// store that builds the next one meanwhile: ledger.PipelinedIngest).
	var pend *committing
	defer func() {
		c.settle(pend) // a commit under way ends, and is acknowledged if it held
		stop()
		<-fetched
	}()
	failed := func(err error) bool {
		if ctx.Err() != nil {
			return false
		}
		c.single = true
		c.countError("database")
		if c.o.Store.Ping(ctx) != nil {
			c.setState(StateDatabaseDown, err)
		} else {
			c.o.Log.Warn("ledger ingest: the database refused a transaction of several batches; reading them again from the committed position, one batch at a time", "err", err.Error())
		}
		return true
	}
	for {
		var b batch
		select {
		case <-ctx.Done():
			return false
		case <-pend.done():
			// The backlog's last transaction has committed: it is
			// acknowledged now, not when the next batch comes.
			p := pend
			pend = nil
			if err := c.settle(p); err != nil {
				return failed(err)
			}
			continue
		case l := <-lost:
			// What was fetched and not applied is read again from the
			// committed position, by the consumer made there.
			c.settle(pend)
			pend = nil
			stop()
			<-fetched
			return c.consumerLost(ctx, l)
		case b = <-batches:
		}
		if len(b.msgs) == 0 {
			continue // an empty fetch: nothing waits for it here
		}
		// A full fetch means a backlog: the fetches already waiting join
		// it in one transaction. After a failed one, a batch goes alone,
		// through the path that retries it and, if the database refuses
		// one of its events, rejects that event alone.
		if c.single || len(b.msgs) < c.o.Fetch || c.o.Batch <= c.o.Fetch {
			p := pend
			pend = nil
			if err := c.settle(p); err != nil {
				return failed(err)
			}
			if !c.applyBatch(ctx, b) {
				return false
			}
			c.single = false
			continue
		}
		var err error
		if pend, err = c.applyRun(ctx, b, batches, pend); err != nil {
			return failed(err)
		}
	}
}

// committing is a transaction written and committing, and the message
// that acknowledges it.
type committing struct {
	p    *ledger.Pending
	last jetstream.Msg
}

// pending is t's transaction; nil for none.
func (t *committing) pending() *ledger.Pending {
	if t == nil {
		return nil
	}
	return t.p
}

// done is closed when the commit has ended; nil (never ready) for none.
func (t *committing) done() <-chan struct{} {
	if t == nil {
		return nil
	}
	return t.p.Done()
}

// settle waits for t's commit (nil: none) and, if it held, acknowledges
// its messages.
func (c *Consumer) settle(t *committing) error {
	if t == nil {
		return nil
	}
	if err := t.p.Wait(); err != nil {
		return err
	}
	c.acknowledge(t.last, t.p.Result())
	return nil
}

// acknowledge acknowledges a committed transaction by its last message
// (AckAll) and records it.
func (c *Consumer) acknowledge(last jetstream.Msg, res ledger.BatchResult) {
	crashpoint.Hit(CrashAfterCommit)
	if aerr := last.Ack(); aerr != nil {
		c.countError("nats") // the commit holds; a redelivery will be a duplicate
	}
	c.committed(res)
}

// applyRun applies first and the fetches already waiting behind it, up to
// Options.Batch events, in one transaction, and acknowledges them after
// the commit. Each fetch's messages are let go once projected (the last
// one is kept for the acknowledgement), so memory follows the fetch size,
// not the transaction's; on an error nothing is acknowledged and they
// must be read again from the stream.
//
// On a store that builds a transaction while the one before commits
// (ledger.PipelinedIngest), the transaction is written while pend, the
// one before, commits; pend is then acknowledged, and the new one is
// returned still committing. An error means pend or the new transaction
// failed: neither is acknowledged then, unless pend committed.
func (c *Consumer) applyRun(ctx context.Context, first batch, batches <-chan batch, pend *committing) (*committing, error) {
	last := first.msgs[len(first.msgs)-1]
	n, full := 0, true
	pending := &first
	take := func(b batch) []ledger.Message {
		n += len(b.msgs)
		last, full = b.msgs[len(b.msgs)-1], len(b.msgs) == c.o.Fetch
		return b.lm
	}
	next := func() []ledger.Message {
		if pending != nil {
			b := *pending
			pending = nil
			return take(b)
		}
		if !full || n+c.o.Fetch > c.o.Batch {
			return nil
		}
		// The last fetch was full, so more is waiting on the stream: its
		// fetch is under way and joins when it comes, unless the stream
		// is slow to give it (then what is here is committed).
		t := time.NewTimer(joinWait)
		defer t.Stop()
		select {
		case b := <-batches:
			if len(b.msgs) == 0 {
				return nil // the backlog is drained
			}
			return take(b)
		case <-t.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
	if ps, ok := c.o.Store.(ledger.PipelinedIngest); ok {
		p, err := ps.ApplyChunksAfter(ctx, pend.pending(), next)
		if serr := c.settle(pend); serr != nil {
			if p != nil {
				p.Wait() // it rolls back, as the one before did not commit
			}
			return nil, serr
		}
		if err != nil {
			return nil, err
		}
		return &committing{p: p, last: last}, nil
	}
	// One writer at a time: nothing is left committing (pend is nil).
	res, err := c.o.Store.ApplyChunks(ctx, next)
	if err != nil {
		return nil, err
	}
	c.acknowledge(last, res)
	return nil, nil
}

// batch is one fetch: the messages to acknowledge and their decoded form.
type batch struct {
	msgs []jetstream.Msg
	lm   []ledger.Message
}

// fetch pulls batches in stream order and hands them over one at a time;
// it ends, after a report on lost, when own is no longer the consumer.
func (c *Consumer) fetch(ctx context.Context, own owned, out chan<- batch, lost chan<- lostConsumer) {
	bo := newBackoff()
	var delivered uint64 // the consumer's delivery sequence of the last message
	for ctx.Err() == nil {
		fb, err := own.cons.Fetch(c.o.Fetch, jetstream.FetchMaxWait(c.o.MaxWait))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if mayBeGone(err) && c.check(ctx, own, err, lost) {
				return
			}
			c.countError("nats")
			c.setState(StateNATSDown, err)
			if !sleep(ctx, bo.NextBackOff()) {
				return
			}
			continue
		}
		// Each message is decoded as it arrives, while the server is
		// still sending the rest of the fetch.
		var msgs []jetstream.Msg
		var lm []ledger.Message
		for m := range fb.Messages() {
			msgs, lm = append(msgs, m), append(lm, toMessage(m))
			lm[len(lm)-1].Predecode()
		}
		if err := fb.Error(); err != nil && len(msgs) == 0 && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) {
			if ctx.Err() != nil {
				return
			}
			if mayBeGone(err) && c.check(ctx, own, err, lost) {
				return
			}
			c.countError("nats")
			c.setState(StateNATSDown, err)
			if !sleep(ctx, bo.NextBackOff()) {
				return
			}
			continue
		}
		bo.Reset()
		if len(msgs) == 0 {
			if c.Status().State == StateNATSDown {
				c.setState(StateRunning, nil)
			}
			// The backlog is drained: a transaction waiting for more
			// commits now (an empty batch says so, if there is room).
			select {
			case out <- batch{}:
			default:
			}
			continue
		}
		// This run's consumer is new and has one reader, so its delivery
		// sequence goes on from where the last fetch ended. Another
		// number (a consumer made again by someone else starts over; one
		// used by others is further along) is looked into before
		// anything of the batch is applied: its start and filter may not
		// be the ledger's. A redelivery only costs the look-up.
		if md, err := msgs[0].Metadata(); err == nil {
			if md.Sequence.Consumer != delivered+1 && c.check(ctx, own,
				fmt.Errorf("the consumer delivered sequence %d where %d was next", md.Sequence.Consumer, delivered+1), lost) {
				return
			}
		}
		if md, err := msgs[len(msgs)-1].Metadata(); err == nil {
			delivered = md.Sequence.Consumer
		}
		select {
		case out <- batch{msgs: msgs, lm: lm}:
		case <-ctx.Done():
			return
		}
	}
}

func toMessages(msgs []jetstream.Msg) []ledger.Message {
	out := make([]ledger.Message, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, toMessage(m))
	}
	return out
}

func toMessage(m jetstream.Msg) ledger.Message {
	lm := ledger.Message{Subject: m.Subject(), Data: m.Data()}
	if md, err := m.Metadata(); err == nil {
		lm.StreamSeq, lm.Time = md.Sequence.Stream, md.Timestamp
	}
	return lm
}

// applyBatch commits the batch (retrying while the database is away, the
// messages held and kept from redelivery) and then acknowledges it. It
// returns false when ctx ended first.
func (c *Consumer) applyBatch(ctx context.Context, b batch) bool {
	msgs, lm := b.msgs, b.lm
	bo := newBackoff()
	lastProgress := time.Now()
	for {
		res, err := c.apply(ctx, lm)
		if err == nil {
			c.acknowledge(msgs[len(msgs)-1], res)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		c.countError("database")
		c.setState(StateDatabaseDown, err)
		if time.Since(lastProgress) > c.o.AckWait/3 {
			for _, m := range msgs {
				m.InProgress()
			}
			lastProgress = time.Now()
		}
		if !sleep(ctx, bo.NextBackOff()) {
			return false
		}
	}
}

// apply applies msgs as one batch; when the database refuses the batch
// while it answers, the messages are applied one by one and the one the
// database refuses on its own is rejected with the database's message,
// so a single bad event never blocks the stream.
func (c *Consumer) apply(ctx context.Context, msgs []ledger.Message) (ledger.BatchResult, error) {
	res, err := c.o.Store.Apply(ctx, msgs)
	if err == nil || ctx.Err() != nil {
		return res, err
	}
	if ledger.ErrorCode(err) == ledger.ECodeUnavailable || c.o.Store.Ping(ctx) != nil {
		return res, err
	}
	c.o.Log.Warn("ledger ingest: the database refused a batch; applying it event by event", "err", err.Error())
	var total ledger.BatchResult
	for _, m := range msgs {
		r, err := c.o.Store.Apply(ctx, []ledger.Message{m})
		if err != nil {
			if ledger.ErrorCode(err) == ledger.ECodeUnavailable || c.o.Store.Ping(ctx) != nil {
				return total, err
			}
			c.countError("rejected_by_database")
			c.o.Log.Warn("ledger ingest: event rejected by the database", "stream_seq", m.StreamSeq, "err", err.Error())
			if rerr := c.o.Store.Reject(ctx, m, "the database refused the event: "+err.Error()); rerr != nil {
				return total, rerr
			}
			total.Rejected++
			continue
		}
		total.Applied += r.Applied
		total.Duplicates += r.Duplicates
		total.Rejected += r.Rejected
		total.Expired += r.Expired
		total.Position = r.Position
	}
	if p, err := c.o.Store.Position(ctx); err == nil {
		total.Position = p
	}
	return total, nil
}

func (c *Consumer) committed(r ledger.BatchResult) {
	c.mu.Lock()
	c.st.Position = r.Position
	c.st.LastProcessed = time.Now().UTC()
	c.st.Applied += int64(r.Applied)
	c.st.Duplicates += int64(r.Duplicates)
	c.st.Rejected += int64(r.Rejected)
	c.st.Expired += int64(r.Expired)
	c.mu.Unlock()
	c.setState(StateRunning, nil)
	if c.o.OnBatch != nil {
		c.o.OnBatch(r)
	}
}

// watchLag refreshes the lag figures from the consumer's info: messages
// not yet acknowledged, and the age of the oldest of them. The same info
// shows a consumer deleted, or replaced by one this run did not make,
// even while fetches still succeed: that is reported on lost.
func (c *Consumer) watchLag(ctx context.Context, own owned, lost chan<- lostConsumer) {
	t := time.NewTicker(c.o.infoEvery)
	defer t.Stop()
	for {
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := own.cons.Info(ictx)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			cancel()
			report(lost, lostConsumer{why: fmt.Errorf("consumer info: %w", err)})
			return
		case err == nil:
			if why := c.notOwn(info, own); why != "" {
				cancel()
				report(lost, lostConsumer{why: errors.New("consumer info: " + why), foreign: info})
				return
			}
		}
		var lagSecs float64
		if err == nil && info.NumPending+uint64(info.NumAckPending) > 0 {
			c.mu.Lock()
			next := c.st.Position.StreamSeq + 1
			c.mu.Unlock()
			if s, serr := c.o.JS.Stream(ictx, c.o.Stream); serr == nil {
				if m, merr := s.GetMsg(ictx, next, jetstream.WithGetMsgSubject(c.filter())); merr == nil {
					lagSecs = max(0, time.Since(m.Time).Seconds())
				}
			}
		}
		cancel()
		if err == nil {
			c.mu.Lock()
			c.st.LagEvents = info.NumPending + uint64(info.NumAckPending)
			c.st.LagSeconds = lagSecs
			c.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
