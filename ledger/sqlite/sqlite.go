// Package sqlite is the ledger's embedded engine: one SQLite file through
// modernc.org/sqlite (pure Go, so the binary stays static), in WAL mode,
// with one writer connection taking immediate transactions and a separate
// pool of readers, so queries never wait behind ingest. Its SQL and its
// migrations (migrations/, goose, versions aligned with ledger/postgres)
// are its own; the event logic is package ledger's.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Options configure Open.
type Options struct {
	Apply ledger.ApplyOptions
	// Readers is the size of the read pool (default: GOMAXPROCS, at least 2).
	Readers int
}

// Store is a ledger.Store on one SQLite file.
type Store struct {
	path string
	w    *sql.DB // one connection: the single writer
	r    *sql.DB // readers
	o    Options
}

var _ ledger.Store = (*Store)(nil)

// dsn configures every connection the pool opens (a PRAGMA run once on
// a pool would reach one connection only): busy_timeout before WAL, so
// the switch to WAL itself waits instead of failing while another process
// holds the file; foreign keys on; full sync (the ledger acks JetStream
// after commit, so a commit must be durable); immediate transactions for
// the writer, so a write never fails half-way on an upgrade of its lock.
// The writer's page cache is 12 MiB (SQLite's default is 2 MiB): a batch
// of 5,000 events changes pages all over the tables it touches (event
// ids derived by hash land at random keys), and a cache smaller than what
// a transaction dirties spills pages to the WAL mid-transaction, so the
// same page is written again and again and read back. The cache lives
// outside Go's heap: cmd/ledger's memory limit leaves it room, and the
// service's peak RSS stays under the design's 128 MiB (measured at 1M
// events: 8 MiB gave 3.7 page writes and 2.7 reads per event, 24 MiB 2.7
// and 1.1, but a peak RSS over 128 MiB). The WAL is checkpointed at
// 10,000 pages (SQLite's default is 1,000, less than one batch writes): a
// page that batch after batch changes (a day's usage rows, the newest
// index pages) goes to the database file once per checkpoint instead of
// once per commit, and most commits wait for one fsync (the WAL's), not
// three (100k events: 0.96 page writes per event instead of 1.27).
func dsn(path string, writer bool) string {
	return "file:" + path + "?" + dsnParams(writer).Encode()
}

// writerCacheKiB is the writer's page cache (PRAGMA cache_size).
const writerCacheKiB = 12 << 10

// walCheckpointPages is the WAL's size, in pages, at which a commit
// checkpoints it (PRAGMA wal_autocheckpoint; SQLite's default is 1,000).
const walCheckpointPages = 10000

// WriterPragmas are the settings of the writer's connection, as a DSN's
// query (the ingest benchmark writes its raw baseline with the same).
func WriterPragmas() string { return dsnParams(true).Encode() }

func dsnParams(writer bool) url.Values {
	v := url.Values{}
	v.Add("_pragma", "busy_timeout(10000)")
	v.Add("_pragma", "journal_mode(WAL)")
	v.Add("_pragma", "foreign_keys(1)")
	v.Add("_pragma", "synchronous(FULL)")
	if writer {
		v.Set("_txlock", "immediate")
		v.Add("_pragma", fmt.Sprintf("cache_size(%d)", -writerCacheKiB))
		v.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", walCheckpointPages))
	} else {
		v.Add("_pragma", "query_only(1)")
	}
	return v
}

// open opens the two pools without checking the schema.
func open(path string, o Options) (*Store, error) {
	if path == "" || path == ":memory:" {
		return nil, fmt.Errorf("sqlite ledger: a file path is needed (an in-memory database would be one per connection)")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("sqlite ledger: %w", err)
	}
	// The file holds every user's history: not for other users' eyes.
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err == nil {
		f.Close()
	} else {
		return nil, fmt.Errorf("sqlite ledger: %w", err)
	}
	w, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		return nil, fmt.Errorf("sqlite ledger %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	if o.Readers <= 0 {
		o.Readers = max(2, runtime.GOMAXPROCS(0))
	}
	r, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite ledger %s: %w", path, err)
	}
	r.SetMaxOpenConns(o.Readers)
	s := &Store{path: path, w: w, r: r, o: o}
	if err := w.Ping(); err != nil {
		s.Close()
		return nil, ledger.Unavailable("open sqlite ledger "+path, err)
	}
	return s, nil
}

func provider(db *sql.DB) (*goose.Provider, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(goose.DialectSQLite3, db, sub, goose.WithDisableGlobalRegistry(true))
}

// Open opens the ledger at path and checks its schema: a database whose
// schema is older than this build (or newer) is refused with
// ECodeSchema; `ledger migrate` (Migrate) brings it up to date.
func Open(ctx context.Context, path string, o Options) (*Store, error) {
	s, err := open(path, o)
	if err != nil {
		return nil, err
	}
	if err := checkSchema(ctx, s.w); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// SchemaVersion is the version this build's migrations reach.
func SchemaVersion() int64 { return ledger.MigrationsVersion(migrations, "migrations") }

func checkSchema(ctx context.Context, db *sql.DB) error {
	p, err := provider(db)
	if err != nil {
		return fmt.Errorf("sqlite ledger: migrations: %w", err)
	}
	cur, target, err := p.GetVersions(ctx)
	if err != nil {
		return ledger.Unavailable("sqlite ledger: read the schema version", err)
	}
	if cur != target {
		return &ledger.Error{Code: ledger.ECodeSchema, Message: fmt.Sprintf(
			"sqlite ledger: the database's schema is version %d, this build needs %d; run `ledger migrate`", cur, target)}
	}
	return nil
}

// Migrate applies the missing migrations to the file at path (creating
// it) and returns the versions applied. It never migrates down.
func Migrate(ctx context.Context, path string) ([]int64, error) {
	s, err := open(path, Options{})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	p, err := provider(s.w)
	if err != nil {
		return nil, fmt.Errorf("sqlite ledger: migrations: %w", err)
	}
	cur, err := p.GetDBVersion(ctx)
	if err != nil && !errors.Is(err, goose.ErrNoMigrations) {
		return nil, fmt.Errorf("sqlite ledger: read the schema version: %w", err)
	}
	if cur > SchemaVersion() {
		return nil, &ledger.Error{Code: ledger.ECodeSchema, Message: fmt.Sprintf(
			"sqlite ledger: the database's schema is version %d, newer than this build's %d: use a newer ledger", cur, SchemaVersion())}
	}
	res, err := p.Up(ctx)
	var out []int64
	for _, r := range res {
		out = append(out, r.Source.Version)
	}
	if err != nil {
		return out, fmt.Errorf("sqlite ledger: migrate: %w", err)
	}
	return out, nil
}

// Engine is "sqlite".
func (s *Store) Engine() string { return "sqlite" }

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Close closes both pools.
func (s *Store) Close() error {
	var err error
	if s.r != nil {
		err = s.r.Close()
	}
	if s.w != nil {
		err = errors.Join(err, s.w.Close())
	}
	return err
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.w.PingContext(ctx); err != nil {
		return ledger.Unavailable("sqlite ledger", err)
	}
	return nil
}

// wrap turns driver errors into coded ones: busy and I/O errors mean the
// database is unavailable right now; the rest are internal.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var le *ledger.Error
	if errors.As(err, &le) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL,
			sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PROTOCOL:
			return ledger.Unavailable(op, err)
		}
	}
	if errors.Is(err, sql.ErrConnDone) {
		return ledger.Unavailable(op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Times are stored as Unix microseconds; zero is NULL.
func us(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func fromUS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
