package ledger

import (
	"context"
	"fmt"
	"time"
)

// Message is one message taken from the events stream.
type Message struct {
	StreamSeq uint64
	Subject   string
	Data      []byte
	Time      time.Time // the stream's timestamp of the message

	pre *predecoded // set by Predecode
}

type predecoded struct {
	ev  *Event
	err error
}

// Predecode decodes m ahead of Apply: the consumer decodes the next batch
// while the previous one commits, so the decoding (a good part of the
// work per event) overlaps the database's.
func (m *Message) Predecode() {
	ev, err := Decode(*m)
	m.pre = &predecoded{ev: ev, err: err}
}

func (m Message) decode() (*Event, error) {
	if m.pre != nil {
		return m.pre.ev, m.pre.err
	}
	return Decode(m)
}

// BatchResult counts what one Apply did with its messages.
type BatchResult struct {
	Applied    int // events that changed the tables
	Duplicates int // events already applied: nothing changed
	Rejected   int // schema violations, kept in rejected_events
	Expired    int // older than the sessions retention: skipped
	Position   Position
	// Users are the user names whose sessions or usage the batch
	// changed, sorted (the policy engine re-evaluates them).
	Users []string
}

// IngestStore is what the consumer needs: apply a batch of messages in one
// transaction, exactly once in effect (docs/ledger.md).
type IngestStore interface {
	// Apply applies msgs, in order, in one transaction together with
	// their event ids and the stream position. An error means nothing
	// was applied; an error with code ECodeUnavailable means the
	// database could not be used.
	Apply(ctx context.Context, msgs []Message) (BatchResult, error)
	// ApplyChunks is Apply over every chunk next yields, in one
	// transaction (ApplyChunks in apply.go): the consumer's way to drain
	// a backlog several fetches per commit.
	ApplyChunks(ctx context.Context, next Chunks) (BatchResult, error)
	// Reject records m as a rejected event with reason (and advances
	// the position past it) in one transaction: for a message whose
	// rows the database itself refused, so it cannot block the stream.
	Reject(ctx context.Context, m Message, reason string) error
	// Position is the last committed ingest position.
	Position(ctx context.Context) (Position, error)
}

// PipelinedIngest is an IngestStore that can build a transaction while
// the one before it is written and committed (PostgreSQL; SQLite has one
// writer at a time). While a backlog lasts, the database then writes one
// transaction's rows as the ledger decodes and projects the next,
// instead of each waiting for the other.
type PipelinedIngest interface {
	// ApplyChunksAfter applies every chunk next yields, as ApplyChunks,
	// in a transaction of its own, begun while prev (nil: none) is
	// written and committed. It returns once the chunks are claimed and
	// projected; the rows are written in the background once prev's are
	// written, and committed once prev has committed: a rollback instead
	// when prev failed. An error means nothing was written, nor will be.
	// prev is the last Pending this store returned; the transaction
	// begins once the one before prev has ended (Pending.WaitBefore):
	// that one's rows are read from the database, prev's are carried.
	ApplyChunksAfter(ctx context.Context, prev *Pending, next Chunks) (*Pending, error)
}

// Pending is a transaction projected, being written and committed
// (PipelinedIngest).
type Pending struct {
	res     BatchResult
	carry   *Carry
	written chan struct{} // closed when its rows are written, or failed to be
	werr    error
	done    chan struct{} // closed when its commit has ended, either way
	err     error
	// before is closed when the transaction before this one has ended
	// (nil: there was none); a channel, not that Pending, so a chain
	// holds one transaction's rows, not every one's.
	before <-chan struct{}
}

// NewPending is a transaction projected (res; carry for the next one)
// whose rows are written by write once prev's (nil: none) are, and
// committed by commit once prev has committed, in a goroutine of its
// own; abort runs instead when prev failed. Writing after prev's writes
// keeps two transactions from each holding a row the other waits for.
func NewPending(res BatchResult, carry *Carry, prev *Pending, write, commit func() error, abort func()) *Pending {
	p := &Pending{res: res, carry: carry, written: make(chan struct{}), done: make(chan struct{})}
	if prev != nil {
		p.before = prev.done
	}
	go func() {
		defer close(p.done)
		if prev != nil {
			<-prev.written
			if prev.werr != nil { // it fails this one, and through it the ones after
				p.werr = fmt.Errorf("the transaction before this one did not commit: %w", prev.werr)
			}
		}
		if p.werr == nil {
			p.werr = write()
		}
		close(p.written)
		p.err = p.werr
		if p.err == nil && prev != nil {
			if err := prev.Wait(); err != nil {
				p.err = fmt.Errorf("the transaction before this one did not commit: %w", err)
			}
		}
		if p.err != nil {
			abort()
			return
		}
		p.err = commit()
	}()
	return p
}

// WaitBefore waits until the transaction before p has ended: the one
// after p may begin then (PipelinedIngest). Nothing to wait for on nil.
func (p *Pending) WaitBefore() {
	if p != nil && p.before != nil {
		<-p.before
	}
}

// Done is closed when the commit has ended, either way.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Wait waits for the commit and returns its error.
func (p *Pending) Wait() error {
	<-p.done
	return p.err
}

// Result is what the transaction applied (committed once Wait returns nil).
func (p *Pending) Result() BatchResult { return p.res }

// Carried is what the transaction hands the next one; nil for none.
func (p *Pending) Carried() *Carry {
	if p == nil {
		return nil
	}
	return p.carry
}

// Leader is an engine's lock that makes one instance of several the
// active one (docs/ledger.md, Availability).
type Leader interface {
	// TryLead takes the lock when it is free. While held, lost is
	// closed if the lock is lost (its connection died).
	TryLead(ctx context.Context) (held bool, lost <-chan struct{}, err error)
	// Release gives the lock up.
	Release()
}

// SessionStore answers history questions.
type SessionStore interface {
	History(ctx context.Context, q HistoryQuery) (Page[Session], error)
	// Session is one session with its samples (ECodeNotFound if unknown).
	Session(ctx context.Context, uid string) (Session, []Sample, error)
}

// WhoStore answers "who held this address at that instant".
type WhoStore interface {
	Who(ctx context.Context, q WhoQuery) ([]Session, error)
}

// UsageStore sums usage per user.
type UsageStore interface {
	Usage(ctx context.Context, q UsageQuery) ([]UsageRow, error)
}

// AuditStore lists audit entries.
type AuditStore interface {
	Audit(ctx context.Context, q AuditQuery) (Page[AuditEntry], error)
}

// ServerStore lists the servers seen and what the ledger refused.
type ServerStore interface {
	Servers(ctx context.Context) ([]Server, error)
	Rejected(ctx context.Context, limit int) ([]Rejected, error)
	Notices(ctx context.Context, limit int) ([]SpoolNotice, error)
}

// MaintenanceStore keeps the database in shape.
type MaintenanceStore interface {
	// Prune deletes what retention no longer keeps, in bounded chunks.
	Prune(ctx context.Context, r Retention, now time.Time) (Pruned, error)
	// Reset empties every table (replay --reset).
	Reset(ctx context.Context) error
	// Checksum digests every projection table's rows in a canonical
	// order and form, the same on every engine: two databases that
	// applied the same events have equal checksums.
	Checksum(ctx context.Context) (map[string]string, error)
	Ping(ctx context.Context) error
}

// Store is one database: every concern, implemented once per engine.
type Store interface {
	IngestStore
	SessionStore
	WhoStore
	UsageStore
	AuditStore
	ServerStore
	MaintenanceStore
	PolicyStore
	// Engine is "sqlite" or "postgres".
	Engine() string
	Close() error
}

// IngestTx is what Apply needs from an engine inside one open transaction.
// The engine's ApplyChunks opens the transaction, calls ApplyChunks with it, and
// commits; the event logic stays here, written once.
type IngestTx interface {
	// Claim inserts the events' ids into applied_events (ON CONFLICT DO
	// NOTHING) and reports, per id, whether it was new.
	Claim(ctx context.Context, claims []Claim) ([]bool, error)
	// LoadSessions returns the existing rows of these session_uids.
	LoadSessions(ctx context.Context, uids []string) (map[string]*Session, error)
	// LoadLinks returns the logical_uid recorded for these session_uids.
	LoadLinks(ctx context.Context, uids []string) (map[string]string, error)
	// Write stores the changes.
	Write(ctx context.Context, c *Changes) error
	// Position is the current ingest position (to be advanced).
	Position(ctx context.Context) (Position, error)
}

// Claim is one event's row in applied_events.
type Claim struct {
	EventID   string
	StreamSeq uint64
	Time      time.Time // the event's own time (retention prunes by it)
}
