package main

import (
	"context"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/postgres"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
)

// store is an engine with its leadership lock.
type store struct {
	ledger.Store
	leader ledger.Leader
}

// ingestStore is what the consumer is given: the store, and the engine's
// pipelined transactions where it has them (ledger.PipelinedIngest),
// which the embedded ledger.Store alone would hide from the consumer.
func (s *store) ingestStore() interface {
	ledger.IngestStore
	Ping(ctx context.Context) error
} {
	if p, ok := s.Store.(ledger.PipelinedIngest); ok {
		return pipelinedStore{store: s, PipelinedIngest: p}
	}
	return s
}

type pipelinedStore struct {
	*store
	ledger.PipelinedIngest
}

// openStore opens the database named by dsn: a postgres:// URL or a path.
func openStore(ctx context.Context, dsn string, o ledger.ApplyOptions, standbyPoll time.Duration) (*store, error) {
	if isPostgres(dsn) {
		s, err := postgres.Open(ctx, dsn, postgres.Options{Apply: o})
		if err != nil {
			return nil, err
		}
		return &store{Store: s, leader: s.Leader(standbyPoll)}, nil
	}
	s, err := sqlite.Open(ctx, dsn, sqlite.Options{Apply: o})
	if err != nil {
		return nil, err
	}
	return &store{Store: s, leader: s.Leader()}, nil
}

// migrate applies the missing schema versions.
func migrate(ctx context.Context, dsn string) ([]int64, int64, error) {
	if isPostgres(dsn) {
		v, err := postgres.Migrate(ctx, dsn)
		return v, postgres.SchemaVersion(), err
	}
	v, err := sqlite.Migrate(ctx, dsn)
	return v, sqlite.SchemaVersion(), err
}
