package bucket

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
)

// Publisher is the ledger's side: it puts verdicts and heartbeats. It
// counts what it sent, for the benchmarks' publish volume.
type Publisher struct {
	KV       jetstream.KeyValue
	Instance string

	Puts, Deletes, Bytes int64
}

// Published returns the verdicts the bucket holds now, by user, read in
// one pass of a watcher over the last value of every key (fast at 100,000
// keys, unlike a Get per key). A value that does not decode is returned
// with allowed false and the problem in its message, so the engine
// replaces it.
func (p *Publisher) Published(ctx context.Context) (map[string]policy.Verdict, error) {
	w, err := p.KV.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read policy bucket: %w", err)
	}
	defer w.Stop()
	out := map[string]policy.Verdict{}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("read policy bucket: the watcher stopped")
			}
			if e == nil {
				return out, nil // every current value seen
			}
			user, ok := UserOf(e.Key())
			if !ok {
				continue
			}
			v, err := Decode(user, e.Value())
			if err != nil {
				v = policy.Verdict{User: user, Message: "unreadable: " + err.Error()}
			}
			out[user] = v
		}
	}
}

// Put publishes v.
func (p *Publisher) Put(ctx context.Context, v policy.Verdict) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("publish verdict of %q: %w", v.User, err)
	}
	if _, err := p.KV.Put(ctx, Key(v.User), b); err != nil {
		return fmt.Errorf("publish verdict of %q: %w", v.User, err)
	}
	p.Puts++
	p.Bytes += int64(len(b) + len(Key(v.User)))
	return nil
}

// Delete removes user's verdict (allowed, no limit: the default).
func (p *Publisher) Delete(ctx context.Context, user string) error {
	if err := p.KV.Delete(ctx, Key(user)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete verdict of %q: %w", user, err)
	}
	p.Deletes++
	p.Bytes += int64(len(Key(user)))
	return nil
}

// Heartbeat writes the heartbeat: every verdict decided before now is in
// the bucket.
func (p *Publisher) Heartbeat(ctx context.Context, now time.Time, verdicts int) error {
	b, _ := json.Marshal(Heartbeat{Time: now.UTC(), Instance: p.Instance, Verdicts: verdicts})
	if _, err := p.KV.Put(ctx, HeartbeatKey, b); err != nil {
		return fmt.Errorf("policy heartbeat: %w", err)
	}
	return nil
}
