package ingest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A durable consumer can disappear under the running ledger: an
// administrator deletes it, an account with too many rights, cluster
// trouble. A pull request to it then fails (nats.go v1.55: a fetch that
// was waiting ends with ErrConsumerDeleted, the server's 409; the next
// ones with nats.ErrNoResponders, the 503 of a subject nobody serves) and
// would fail forever. The consumer is the ledger's own and holds nothing
// the database does not (it is made afresh from the committed position at
// every start), so it is made again the same way and ingest goes on,
// exactly once. Someone else's consumer under the same name is another
// matter: it is left alone (see conflict).

// owned is the consumer a run made: its Created time tells it from a
// consumer someone else made since under the same name (the info that
// Info caches is the current holder's, so it is kept here).
type owned struct {
	cons    jetstream.Consumer
	created time.Time
}

// lostConsumer says why a run stops using its consumer.
type lostConsumer struct {
	why error // what showed it: a failed fetch, the consumer's info
	// foreign is the consumer now under the durable's name, one this
	// ledger did not make; nil when the name is free (deleted).
	foreign *jetstream.ConsumerInfo
}

// mayBeGone: a fetch error that the consumer's absence would give.
func mayBeGone(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDoesNotExist)
}

// lookupTimeout bounds one look-up of the consumer.
const lookupTimeout = 5 * time.Second

// check looks the durable up after a sign (why) that it may no longer be
// own; when it is not, it reports that on lost and says true. A look-up
// NATS does not answer says false: the caller's usual retry applies.
func (c *Consumer) check(ctx context.Context, own owned, why error, lost chan<- lostConsumer) bool {
	ictx, cancel := context.WithTimeout(ctx, lookupTimeout)
	cur, err := c.o.JS.Consumer(ictx, c.o.Stream, c.o.Durable)
	cancel()
	var l lostConsumer
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		l = lostConsumer{why: why}
	case err != nil:
		return false
	case c.notOwn(cur.CachedInfo(), own) != "":
		l = lostConsumer{why: fmt.Errorf("%w; %s", why, c.notOwn(cur.CachedInfo(), own)), foreign: cur.CachedInfo()}
	default:
		return false
	}
	report(lost, l)
	return true
}

// notOwn says how info, the consumer now under the durable's name, is
// not own: made at another time (deleted and made again), or with the
// filter or ack policy changed in place; "" when it is own.
func (c *Consumer) notOwn(info *jetstream.ConsumerInfo, own owned) string {
	if !info.Created.Equal(own.created) {
		return "created at " + info.Created.UTC().Format(time.RFC3339Nano) + ", not when this ledger made it"
	}
	f := info.Config.FilterSubjects
	if info.Config.FilterSubject != "" {
		f = append([]string{info.Config.FilterSubject}, f...)
	}
	if len(f) != 1 || f[0] != c.filter() || info.Config.AckPolicy != jetstream.AckAllPolicy {
		return "its filter or ack policy was changed"
	}
	return ""
}

// report hands l to the run; one report is enough to stop it.
func report(lost chan<- lostConsumer, l lostConsumer) {
	select {
	case lost <- l:
	default:
	}
}

// consumerLost handles what a run reported, after its fetches stopped:
// true makes the caller start again from the committed position, which
// re-creates the consumer (the very path of a start); false: ctx ended.
func (c *Consumer) consumerLost(ctx context.Context, l lostConsumer) bool {
	if l.foreign != nil {
		return c.conflict(ctx, l)
	}
	c.countError("consumer_deleted")
	msg := fmt.Sprintf("consumer %s on %s was deleted while the ledger ran (%v); re-created from the committed position", c.o.Durable, c.o.Stream, l.why)
	c.mu.Lock()
	c.st.LastError = msg
	pos := c.st.Position.StreamSeq
	c.mu.Unlock()
	c.o.Log.Warn("ledger ingest: the durable consumer was deleted while the ledger ran; re-creating it from the committed position (nothing is applied twice or skipped)",
		"consumer", c.o.Durable, "stream", c.o.Stream, "reason", l.why.Error(), "committed_seq", pos)
	c.keepName = true
	return c.pace(ctx)
}

// pace makes a re-creation that follows the last one within a minute
// wait first (100 ms growing to 30 s), so whatever keeps deleting the
// consumer is not answered in a tight loop; after a quiet minute it is
// made again at once.
func (c *Consumer) pace(ctx context.Context) bool {
	if c.recreateBo == nil {
		c.recreateBo = newBackoff()
	}
	last := c.recreated
	c.recreated = time.Now()
	if time.Since(last) > time.Minute {
		c.recreateBo.Reset()
		return true
	}
	return sleep(ctx, c.recreateBo.NextBackOff())
}

// conflict: a consumer this ledger did not make holds the durable's name
// (an operator or another program re-created it, maybe with another
// filter or start). Reading from it could skip or repeat events, and
// deleting it would fight whoever made it, so ingest waits, says so once
// (log, status, errors), and re-creates its own when the name is free
// again. A restart takes the name back, as every start does.
func (c *Consumer) conflict(ctx context.Context, l lostConsumer) bool {
	c.mu.Lock()
	pos := c.st.Position
	c.mu.Unlock()
	diff := configDiff(c.config(pos), l.foreign.Config)
	err := fmt.Errorf("consumer %s on %s was replaced or changed by someone other than this ledger (created %s; %s); ingest waits until it is deleted or the ledger restarts",
		c.o.Durable, c.o.Stream, l.foreign.Created.UTC().Format(time.RFC3339), diff)
	c.countError("consumer_replaced")
	c.setState(StateConsumerConflict, err)
	c.o.Log.Error("ledger ingest: the durable consumer was replaced or changed by someone other than this ledger; ingest waits and leaves it alone: delete it (the ledger then re-creates its own) or restart the ledger (which takes the name back)",
		"consumer", c.o.Durable, "stream", c.o.Stream, "created", l.foreign.Created.UTC().Format(time.RFC3339Nano),
		"settings", diff, "reason", l.why.Error(), "committed_seq", pos.StreamSeq)
	bo := newBackoff()
	for sleep(ctx, bo.NextBackOff()) {
		ictx, cancel := context.WithTimeout(ctx, lookupTimeout)
		_, err := c.o.JS.Consumer(ictx, c.o.Stream, c.o.Durable)
		cancel()
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			c.o.Log.Info("ledger ingest: the consumer that replaced the ledger's is gone; re-creating the ledger's from the committed position", "consumer", c.o.Durable)
			c.keepName = true
			return true
		}
	}
	return false
}

// configDiff names the settings of got that differ from want, the
// consumer the ledger would make now.
func configDiff(want, got jetstream.ConsumerConfig) string {
	var d []string
	add := func(name string, g, w any) {
		if fmt.Sprint(g) != fmt.Sprint(w) {
			d = append(d, fmt.Sprintf("%s %v (the ledger's: %v)", name, g, w))
		}
	}
	filter := func(cfg jetstream.ConsumerConfig) string {
		if cfg.FilterSubject != "" {
			return cfg.FilterSubject
		}
		if len(cfg.FilterSubjects) == 0 {
			return "none"
		}
		return strings.Join(cfg.FilterSubjects, ",")
	}
	add("filter", filter(got), filter(want))
	add("ack_policy", got.AckPolicy, want.AckPolicy)
	add("deliver_policy", got.DeliverPolicy, want.DeliverPolicy)
	if got.DeliverPolicy == jetstream.DeliverByStartSequencePolicy || want.DeliverPolicy == jetstream.DeliverByStartSequencePolicy {
		add("start_seq", got.OptStartSeq, want.OptStartSeq)
	}
	add("ack_wait", got.AckWait, want.AckWait)
	add("max_deliver", got.MaxDeliver, want.MaxDeliver)
	add("description", fmt.Sprintf("%q", got.Description), fmt.Sprintf("%q", want.Description))
	if len(d) == 0 {
		return "the same settings as the ledger's (another ledger instance?)"
	}
	return "differs: " + strings.Join(d, "; ")
}
