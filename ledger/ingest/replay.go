package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// ReplayOptions say what to replay.
type ReplayOptions struct {
	JS       jetstream.JetStream
	Stream   string
	Prefix   string
	Store    ledger.IngestStore
	FromSeq  uint64    // 0 with FromTime zero: the stream's first message
	FromTime time.Time // used when FromSeq is 0
	Batch    int       // default 500
	// Progress, when set, is called after each batch.
	Progress func(done uint64, last uint64)
}

// ReplayResult counts what a replay did.
type ReplayResult struct {
	Messages   uint64
	Applied    int64
	Duplicates int64
	Rejected   int64
	Expired    int64
	LastSeq    uint64
}

// Replay applies the stream from a sequence or a time up to its last
// message at the time of the call, in stream order, through an ordered
// (ephemeral, unacknowledged) consumer. Applying is idempotent, so a
// replay over a database changes only what it had not applied; into an
// empty one it rebuilds the tables.
func Replay(ctx context.Context, o ReplayOptions) (ReplayResult, error) {
	var res ReplayResult
	if o.Batch <= 0 {
		o.Batch = 500
	}
	st, err := o.JS.Stream(ctx, o.Stream)
	if err != nil {
		return res, fmt.Errorf("replay: stream %s: %w", o.Stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return res, fmt.Errorf("replay: stream %s: %w", o.Stream, err)
	}
	end := info.State.LastSeq
	if end == 0 || o.FromSeq > end {
		return res, nil
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{o.Prefix + ".events.>"}, DeliverPolicy: jetstream.DeliverAllPolicy}
	switch {
	case o.FromSeq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, o.FromSeq
	case !o.FromTime.IsZero():
		t := o.FromTime
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	cons, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return res, fmt.Errorf("replay: consumer: %w", err)
	}
	for res.LastSeq < end {
		batch, err := cons.Fetch(o.Batch, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return res, fmt.Errorf("replay: fetch: %w", err)
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) && len(msgs) == 0 {
			return res, fmt.Errorf("replay: fetch: %w", err)
		}
		if len(msgs) == 0 {
			// Nothing more matches the filter up to end.
			if n, _ := cons.Info(ctx); n != nil && n.NumPending == 0 {
				break
			}
			continue
		}
		lm := toMessages(msgs)
		// Stop at the end seen at the start, so a live stream ends.
		cut := len(lm)
		for i, m := range lm {
			if m.StreamSeq > end {
				cut = i
				break
			}
		}
		lm = lm[:cut]
		if len(lm) == 0 {
			break
		}
		r, err := o.Store.Apply(ctx, lm)
		if err != nil {
			return res, fmt.Errorf("replay: apply up to stream sequence %d: %w", lm[len(lm)-1].StreamSeq, err)
		}
		res.Messages += uint64(len(lm))
		res.Applied += int64(r.Applied)
		res.Duplicates += int64(r.Duplicates)
		res.Rejected += int64(r.Rejected)
		res.Expired += int64(r.Expired)
		res.LastSeq = lm[len(lm)-1].StreamSeq
		if o.Progress != nil {
			o.Progress(res.Messages, res.LastSeq)
		}
		if cut < len(msgs) {
			break
		}
	}
	return res, nil
}
