package ledger

import (
	"context"
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
