package ledger

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"

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
//
// The chunks go through two stages: the database's (claim the event ids,
// load the stored rows of sessions not seen yet) and the projection's.
// A chunk's claims and loads are under way while the chunk before it is
// projected, so the database and the projection work at the same time
// instead of each waiting for the other. Only the claims are written
// before Finish, so a chunk's loads read the rows the transaction started
// with whichever chunk the projection has reached, as in one stage.
func ApplyChunks(ctx context.Context, tx IngestTx, next Chunks, o ApplyOptions) (BatchResult, error) {
	a := NewApplier(tx, o)
	if err := a.projectAll(ctx, next); err != nil {
		return a.res, err
	}
	return a.Finish(ctx)
}

// ApplyChunksAfter is ApplyChunks in a transaction that starts before the
// one it follows has committed (carry is what that one handed over; nil:
// none), up to the rows to write: the engine writes them (after the
// transaction before has written its own, so neither waits for a row
// the other holds) and commits (after that one has committed).
//
// The rows the transaction before wrote are not visible here until it
// commits, so they are taken from carry instead of the database: every
// session row it changed or made (with its links, and every link it
// made) and the position it wrote. Every other row the database holds is
// as it will be after that commit, since a transaction changes no row
// but those it carries. Writing the same rows waits for that commit
// (PostgreSQL's row locks), and this transaction must not commit unless
// that one did: the engine sees to both (NewPending).
func ApplyChunksAfter(ctx context.Context, tx IngestTx, next Chunks, o ApplyOptions, carry *Carry) (Prepared, error) {
	a := NewApplier(tx, o)
	if carry != nil {
		a.p.load(carry.sessions, carry.links)
		for uid := range carry.sessions {
			a.asked[uid] = true
		}
		a.pos = &carry.pos
	}
	if err := a.projectAll(ctx, next); err != nil {
		return Prepared{Result: a.res}, err
	}
	res, c, err := a.changes(ctx)
	if err != nil {
		return Prepared{Result: res}, err
	}
	if c == nil {
		return Prepared{Result: res, Carry: carry}, nil // nothing to write: what was carried still holds
	}
	return Prepared{Result: res, Changes: c, Carry: a.carry(res.Position)}, nil
}

// Prepared is a transaction claimed and projected, its rows not yet
// written (ApplyChunksAfter): the engine writes Changes (none when nil)
// with IngestTx.Write, then commits.
type Prepared struct {
	Result  BatchResult
	Changes *Changes
	Carry   *Carry // what the transaction after this one takes
}

// Carry is what a transaction hands the next one when that one starts
// before it has committed (ApplyChunksAfter): the rows the database will
// hold once it has. It holds only what one transaction changed, so a
// chain of them holds no more than the last.
type Carry struct {
	sessions map[string]*Session // the session rows it changed or made, as written
	links    map[string]string   // their links, and every link it made
	pos      Position            // the position it wrote
}

// carry is what this transaction hands the next: the rows it changed,
// as copies, since this one's are still to be written while the next
// one changes its own.
func (a *Applier) carry(pos Position) *Carry {
	c := &Carry{sessions: make(map[string]*Session, len(a.p.touched)), links: map[string]string{}, pos: pos}
	for uid := range a.p.touched {
		x := *a.p.sessions[uid]
		c.sessions[uid] = &x
		if l, ok := a.p.links[uid]; ok {
			c.links[uid] = l
		}
	}
	for uid, l := range a.p.newLinks {
		c.links[uid] = l
	}
	return c
}

// projectAll takes every chunk next yields through both stages.
func (a *Applier) projectAll(ctx context.Context, next Chunks) error {
	var inFlight *chunk // its claims and loads are under way
	defer func() {
		if inFlight != nil {
			<-inFlight.done // the transaction is not left to a stage still using it
		}
	}()
	for {
		msgs := next()
		var c *chunk
		if msgs != nil {
			c = a.check(msgs)
		}
		done := inFlight
		if done != nil {
			<-done.done
			inFlight = nil
			if done.err != nil {
				return done.err
			}
		}
		if c != nil {
			inFlight = c
			go func() {
				defer close(c.done)
				c.err = a.claimAndLoad(ctx, c)
			}()
		}
		if done != nil {
			a.project(done)
		}
		if msgs == nil {
			return nil
		}
	}
}

// Applier is one transaction's projection, fed chunk by chunk (Add) and
// written once (Finish). Nothing but the event ids' claims is written
// before Finish, so every stored row it loads is the one the transaction
// started with.
type Applier struct {
	tx      IngestTx
	horizon time.Time
	// inBatch holds the event ids seen in this transaction as their 16
	// bytes: a decoded id's text shares one allocation with the rest of
	// its event's strings, and keeping it would keep them all until the
	// commit (a third of the ingest benchmark's live heap).
	inBatch  map[uuid.UUID]bool
	asked    map[string]bool // session_uids whose stored rows were looked up (claimAndLoad's alone)
	p        *projection
	rejected []Rejected
	res      BatchResult
	last     Message // the last message added: the position moves to it
	any      bool
	lastTime time.Time // the latest event time applied
	// pos, when set, is the position to advance instead of the stored
	// one: the one a transaction not yet committed wrote (Carry).
	pos *Position
}

// chunk is one chunk's events between the stages: checked (check), then
// claimed and their sessions' stored rows loaded (claimAndLoad, which
// closes done), then projected (project).
type chunk struct {
	evs      []*Event
	claims   []Claim
	isNew    []bool
	sessions map[string]*Session
	links    map[string]string
	err      error
	done     chan struct{}
}

// NewApplier starts one transaction's projection on tx.
func NewApplier(tx IngestTx, o ApplyOptions) *Applier {
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	a := &Applier{tx: tx, inBatch: map[uuid.UUID]bool{}, asked: map[string]bool{}, p: newProjection(nil, nil)}
	if o.Retention.Sessions > 0 {
		a.horizon = now.Add(-o.Retention.Sessions)
	}
	return a
}

// Add decodes and checks msgs, claims their new event ids, loads the
// stored rows of sessions this transaction has not seen yet, and projects
// the new events onto them.
func (a *Applier) Add(ctx context.Context, msgs []Message) error {
	c := a.check(msgs)
	if c == nil {
		return nil
	}
	if err := a.claimAndLoad(ctx, c); err != nil {
		return err
	}
	a.project(c)
	return nil
}

// check decodes and checks msgs: the rejected, the expired and the
// transaction's own repeats are counted; the rest are returned to be
// claimed (nil when msgs is empty).
func (a *Applier) check(msgs []Message) *chunk {
	if len(msgs) == 0 {
		return nil
	}
	a.last, a.any = msgs[len(msgs)-1], true
	c := &chunk{done: make(chan struct{})}
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
		id, err := uuid.Parse(ev.ID)
		if err != nil { // Decode gives UUIDs only; kept out all the same
			a.rejected = append(a.rejected, reject(m, "event_id: "+err.Error()))
			a.res.Rejected++
			continue
		}
		if a.inBatch[id] {
			a.res.Duplicates++
			continue
		}
		a.inBatch[id] = true
		c.evs = append(c.evs, ev)
		c.claims = append(c.claims, Claim{EventID: ev.ID, StreamSeq: m.StreamSeq, Time: ev.Time})
	}
	return c
}

// claimAndLoad is a chunk's database stage: it claims the chunk's event
// ids and loads the stored rows (and links) of the sessions its new
// events concern that no chunk before asked for. It touches only the
// chunk, the transaction and the asked set, which no other stage uses,
// so it runs beside the projection of the chunk before.
func (a *Applier) claimAndLoad(ctx context.Context, c *chunk) error {
	if len(c.claims) == 0 {
		return nil
	}
	isNew, err := a.tx.Claim(ctx, c.claims)
	if err != nil {
		return fmt.Errorf("claim event ids: %w", err)
	}
	c.isNew = isNew
	crashpoint.Hit(CrashMidBatch)
	var uids []string
	ask := func(u string) {
		if u != "" && !a.asked[u] {
			a.asked[u] = true
			uids = append(uids, u)
		}
	}
	for i, ev := range c.evs {
		if !isNew[i] {
			continue
		}
		ask(ev.SessionUID)
		if ev.Rec != nil {
			for _, j := range ev.Rec.JoinedUIDs {
				ask(j)
			}
		}
	}
	if len(uids) == 0 {
		return nil
	}
	if c.sessions, err = a.tx.LoadSessions(ctx, uids); err != nil {
		return fmt.Errorf("load sessions: %w", err)
	}
	if c.links, err = a.tx.LoadLinks(ctx, uids); err != nil {
		return fmt.Errorf("load session links: %w", err)
	}
	return nil
}

// project is a chunk's last stage: its new events onto the projection,
// after the stored rows it loaded.
func (a *Applier) project(c *chunk) {
	if c.sessions != nil || c.links != nil {
		a.p.load(c.sessions, c.links)
	}
	for i, ev := range c.evs {
		if !c.isNew[i] {
			a.res.Duplicates++
			continue
		}
		a.p.apply(ev)
		if ev.Time.After(a.lastTime) {
			a.lastTime = ev.Time
		}
		a.res.Applied++
	}
}

// Finish writes the transaction's rows and advances the position past the
// last message added; the engine commits after it returns nil.
func (a *Applier) Finish(ctx context.Context) (BatchResult, error) {
	res, c, err := a.changes(ctx)
	if err != nil || c == nil {
		return res, err
	}
	if err := a.tx.Write(ctx, c); err != nil {
		return res, fmt.Errorf("write rows: %w", err)
	}
	return res, nil
}

// changes are the transaction's rows, the position moved past the last
// message added among them (nil when no message was added).
func (a *Applier) changes(ctx context.Context) (BatchResult, *Changes, error) {
	res := a.res
	if !a.any {
		return res, nil, nil
	}
	c := a.p.finish()
	c.Rejected = a.rejected
	var pos Position
	if a.pos != nil {
		pos = *a.pos
	} else {
		var err error
		if pos, err = a.tx.Position(ctx); err != nil {
			return res, nil, fmt.Errorf("read ingest position: %w", err)
		}
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
	res.Position = pos
	res.Users = c.users()
	return res, c, nil
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
