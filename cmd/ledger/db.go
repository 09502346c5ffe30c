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
