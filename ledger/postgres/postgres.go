// Package postgres is the ledger's fleet engine: PostgreSQL through pgx v5
// (a pool), for several ledger instances and large fleets. Its SQL and its
// migrations (migrations/, goose, under a session advisory lock so
// instances starting together migrate once; versions aligned with
// ledger/sqlite) are its own; the event logic is package ledger's. Writes
// are set-based (unnest arrays, one statement per table and batch) and
// pipelined in one round trip.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Options configure Open.
type Options struct {
	Apply ledger.ApplyOptions
	// MaxConns bounds the pool (default 8).
	MaxConns int32
}

// Store is a ledger.Store on one PostgreSQL database.
type Store struct {
	dsn  string
	pool *pgxpool.Pool
	o    Options
	// beforeWrite, when set (tests), runs before ApplyChunksAfter's
	// transaction writes its rows.
	beforeWrite func(pgx.Tx)
}

var _ ledger.Store = (*Store)(nil)

func config(dsn string, o Options) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres ledger: %s: %w", Redact(dsn), err)
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 8
	}
	cfg.MaxConns = o.MaxConns
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	cfg.ConnConfig.RuntimeParams["application_name"] = "ocserv-telemetry-ledger"
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	return cfg, nil
}

func open(ctx context.Context, dsn string, o Options) (*Store, error) {
	cfg, err := config(dsn, o)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres ledger: %w", err)
	}
	s := &Store{dsn: dsn, pool: pool, o: o}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, ledger.Unavailable("postgres ledger: connect to "+Redact(dsn), err)
	}
	return s, nil
}

// Open opens the ledger database and checks its schema (ECodeSchema when
// it is not this build's: run `ledger migrate`).
func Open(ctx context.Context, dsn string, o Options) (*Store, error) {
	s, err := open(ctx, dsn, o)
	if err != nil {
		return nil, err
	}
	if err := s.checkSchema(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func provider(dsn string, locked bool) (*goose.Provider, func() error, error) {
	cfg, err := config(dsn, Options{MaxConns: 2})
	if err != nil {
		return nil, nil, err
	}
	db := stdlib.OpenDB(*cfg.ConnConfig)
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	if locked {
		// Several instances may start at once: one migrates, the
		// others wait on the advisory lock and find nothing to do.
		l, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(5, 120))
		if err != nil {
			db.Close()
			return nil, nil, err
		}
		opts = append(opts, goose.WithSessionLocker(l))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, opts...)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return p, db.Close, nil
}

// SchemaVersion is the version this build's migrations reach.
func SchemaVersion() int64 { return ledger.MigrationsVersion(migrations, "migrations") }

func (s *Store) checkSchema(ctx context.Context) error {
	var cur int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&cur)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table
		cur, err = 0, nil
	}
	if err != nil {
		return wrap("postgres ledger: read the schema version", err)
	}
	if want := SchemaVersion(); cur != want {
		return &ledger.Error{Code: ledger.ECodeSchema, Message: fmt.Sprintf(
			"postgres ledger: the database's schema is version %d, this build needs %d; run `ledger migrate`", cur, want)}
	}
	return nil
}

// Migrate applies the missing migrations under goose's session lock and
// returns the versions applied. It never migrates down, and refuses a
// database whose schema is newer than this build's.
func Migrate(ctx context.Context, dsn string) ([]int64, error) {
	p, closeDB, err := provider(dsn, true)
	if err != nil {
		return nil, err
	}
	defer closeDB()
	cur, err := p.GetDBVersion(ctx)
	if err != nil && !errors.Is(err, goose.ErrNoMigrations) {
		return nil, ledger.Unavailable("postgres ledger: read the schema version", err)
	}
	if cur > SchemaVersion() {
		return nil, &ledger.Error{Code: ledger.ECodeSchema, Message: fmt.Sprintf(
			"postgres ledger: the database's schema is version %d, newer than this build's %d: use a newer ledger", cur, SchemaVersion())}
	}
	res, err := p.Up(ctx)
	var out []int64
	for _, r := range res {
		out = append(out, r.Source.Version)
	}
	if err != nil {
		return out, fmt.Errorf("postgres ledger: migrate: %w", err)
	}
	return out, nil
}

// Engine is "postgres".
func (s *Store) Engine() string { return "postgres" }

// Close closes the pool.
func (s *Store) Close() error { s.pool.Close(); return nil }

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return wrap("postgres ledger", s.pool.Ping(ctx))
}

// wrap classifies errors: a connection that cannot be made or was lost,
// and the server shutting down or out of resources, mean unavailable.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var le *ledger.Error
	if errors.As(err, &le) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "08", "53", "57", "58": // connection, resources, operator intervention, system
			return ledger.Unavailable(op, err)
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) || errors.Is(err, pgx.ErrTxClosed) {
		return ledger.Unavailable(op, err)
	}
	// Anything else from the network layer (EOF, reset) is a lost
	// connection too.
	return ledger.Unavailable(op, err)
}

// Redact names a database for logs and reports without its secrets: the
// user, host, port and database only (a password may sit in the userinfo
// or in a query parameter).
func Redact(dsn string) string {
	if cfg, err := pgconn.ParseConfig(dsn); err == nil {
		return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
	}
	return "postgres://…"
}

func tp(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func ft(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func np(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func ns(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
