package ledger

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/crashpoint"
)

// Crash points of Apply (tests kill the real service at them).
const (
	CrashMidBatch = "ledger-mid-batch" // event ids claimed, rows not yet written, nothing committed
)

// ApplyOptions are the engine's settings that Apply needs.
type ApplyOptions struct {
	// Retention: events older than Retention.Sessions before Now are
	// skipped (counted as expired), so a replay cannot bring back what
	// retention removed. Zero keeps everything.
	Retention Retention
	Now       func() time.Time
}

// ApplyTx is the engine-independent body of IngestStore.Apply: decode and
// check each message, claim the new event ids, project the new events onto
// the sessions they concern, write the rows and the position. The engine
// runs it inside one transaction and commits after it returns nil.
func ApplyTx(ctx context.Context, tx IngestTx, msgs []Message, o ApplyOptions) (BatchResult, error) {
	a := NewApplier(tx, o)
	if err := a.Add(ctx, msgs); err != nil {
		return a.res, err
	}
	return a.Finish(ctx)
}

// Chunks yields the messages of one transaction chunk by chunk, in stream
// order, and nil when there are no more. The consumer hands over each
// fetch as it arrives, so a transaction can hold many fetches while a
// backlog lasts without holding all their messages at once.
type Chunks func() []Message

// OneChunk is msgs as the only chunk.
func OneChunk(msgs []Message) Chunks {
	done := false
	return func() []Message {
		if done {
			return nil
		}
		done = true
		return msgs
	}
}

// ApplyChunks is ApplyTx over every chunk next yields: one transaction,
// one projection, the rows written once at the end. Rows that several
// chunks change (a session's counters, a user's usage of the day) are
// written once per transaction instead of once per chunk, which is what
// makes a backlog cheaper to drain than live traffic.
func ApplyChunks(ctx context.Context, tx IngestTx, next Chunks, o ApplyOptions) (BatchResult, error) {
	a := NewApplier(tx, o)
	for msgs := next(); msgs != nil; msgs = next() {
		if err := a.Add(ctx, msgs); err != nil {
			return a.res, err
		}
	}
	return a.Finish(ctx)
}

// Applier is one transaction's projection, fed chunk by chunk (Add) and
// written once (Finish). Nothing but the event ids' claims is written
// before Finish, so every stored row it loads is the one the transaction
// started with.
type Applier struct {
	tx       IngestTx
	horizon  time.Time
	inBatch  map[string]bool // event ids seen in this transaction
	asked    map[string]bool // session_uids whose stored rows were looked up
	p        *projection
	rejected []Rejected
	res      BatchResult
	last     Message // the last message added: the position moves to it
	any      bool
	lastTime time.Time // the latest event time applied
}

// NewApplier starts one transaction's projection on tx.
func NewApplier(tx IngestTx, o ApplyOptions) *Applier {
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	a := &Applier{tx: tx, inBatch: map[string]bool{}, asked: map[string]bool{}, p: newProjection(nil, nil)}
	if o.Retention.Sessions > 0 {
		a.horizon = now.Add(-o.Retention.Sessions)
	}
	return a
}

// Add decodes and checks msgs, claims their new event ids, loads the
// stored rows of sessions this transaction has not seen yet, and projects
// the new events onto them.
func (a *Applier) Add(ctx context.Context, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	a.last, a.any = msgs[len(msgs)-1], true
	var (
		evs    []*Event
		claims []Claim
	)
	for _, m := range msgs {
		ev, err := m.decode()
		if err != nil {
			a.rejected = append(a.rejected, reject(m, err.Error()))
			a.res.Rejected++
			continue
		}
		if !a.horizon.IsZero() && ev.Time.Before(a.horizon) {
			a.res.Expired++
			continue
		}
		if a.inBatch[ev.ID] {
			a.res.Duplicates++
			continue
		}
		a.inBatch[ev.ID] = true
		evs = append(evs, ev)
		claims = append(claims, Claim{EventID: ev.ID, StreamSeq: m.StreamSeq, Time: ev.Time})
	}
	if len(claims) == 0 {
		return nil
	}
	isNew, err := a.tx.Claim(ctx, claims)
	if err != nil {
		return fmt.Errorf("claim event ids: %w", err)
	}
	fresh := evs[:0]
	for i, ev := range evs {
		if isNew[i] {
			fresh = append(fresh, ev)
		} else {
			a.res.Duplicates++
		}
	}
	crashpoint.Hit(CrashMidBatch)
	if len(fresh) == 0 {
		return nil
	}
	var uids []string
	ask := func(u string) {
		if u != "" && !a.asked[u] {
			a.asked[u] = true
			uids = append(uids, u)
		}
	}
	for _, ev := range fresh {
		ask(ev.SessionUID)
		if ev.Rec != nil {
			for _, j := range ev.Rec.JoinedUIDs {
				ask(j)
			}
		}
	}
	if len(uids) > 0 {
		sessions, err := a.tx.LoadSessions(ctx, uids)
		if err != nil {
			return fmt.Errorf("load sessions: %w", err)
		}
		links, err := a.tx.LoadLinks(ctx, uids)
		if err != nil {
			return fmt.Errorf("load session links: %w", err)
		}
		a.p.load(sessions, links)
	}
	for _, ev := range fresh {
		a.p.apply(ev)
		if ev.Time.After(a.lastTime) {
			a.lastTime = ev.Time
		}
	}
	a.res.Applied += len(fresh)
	return nil
}

// Finish writes the transaction's rows and advances the position past the
// last message added; the engine commits after it returns nil.
func (a *Applier) Finish(ctx context.Context) (BatchResult, error) {
	res := a.res
	if !a.any {
		return res, nil
	}
	c := a.p.finish()
	c.Rejected = a.rejected
	pos, err := a.tx.Position(ctx)
	if err != nil {
		return res, fmt.Errorf("read ingest position: %w", err)
	}
	if a.last.StreamSeq > pos.StreamSeq {
		pos.StreamSeq, pos.StreamTime = a.last.StreamSeq, a.last.Time.UTC().Truncate(time.Microsecond)
	}
	if a.lastTime.After(pos.LastEventTime) {
		pos.LastEventTime = a.lastTime
	}
	pos.Applied += int64(res.Applied)
	pos.Duplicates += int64(res.Duplicates)
	pos.Rejected += int64(res.Rejected)
	pos.Expired += int64(res.Expired)
	c.Position = pos
	if err := a.tx.Write(ctx, c); err != nil {
		return res, fmt.Errorf("write rows: %w", err)
	}
	res.Position = pos
	res.Users = c.users()
	return res, nil
}

// users lists, sorted, the user names whose rows c changes.
func (c *Changes) users() []string {
	set := map[string]bool{}
	for _, s := range c.Sessions {
		if s.Username != "" {
			set[s.Username] = true
		}
	}
	for _, u := range c.Usage {
		if u.Username != "" {
			set[u.Username] = true
		}
	}
	if len(set) == 0 {
		return nil
	}
	out := make([]string, 0, len(set))
	for u := range set {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// reject makes the rejected_events row of a message.
func reject(m Message, reason string) Rejected {
	r := Rejected{StreamSeq: m.StreamSeq, Subject: clean(m.Subject), Reason: clean(reason),
		Received: m.Time.UTC().Truncate(time.Microsecond)}
	p := m.Data
	if len(p) > maxPayload {
		p = p[:maxPayload]
	}
	r.Payload = append([]byte(nil), p...)
	// The id, when one can be read, helps find the event's source.
	var w struct {
		EventID string `json:"event_id"`
	}
	if jsonUnmarshal(p, &w) == nil {
		r.EventID = clean(short(w.EventID))
	}
	return r
}

// RejectTx is the engine-independent body of IngestStore.Reject.
func RejectTx(ctx context.Context, tx IngestTx, m Message, reason string) error {
	pos, err := tx.Position(ctx)
	if err != nil {
		return fmt.Errorf("read ingest position: %w", err)
	}
	if m.StreamSeq > pos.StreamSeq {
		pos.StreamSeq, pos.StreamTime = m.StreamSeq, m.Time.UTC().Truncate(time.Microsecond)
	}
	pos.Rejected++
	return tx.Write(ctx, &Changes{Rejected: []Rejected{reject(m, reason)}, Position: pos})
}
