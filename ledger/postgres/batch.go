package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// batch is a pgx.Batch whose statements have names: the first statement
// the server refuses is reported by name ("upsert usage_daily: ERROR:
// ..."), where pgx alone returns the bare error of a batch of ten.
type batch struct {
	pgx.Batch
	names []string
}

func (b *batch) queue(name, sql string, args ...any) *pgx.QueuedQuery {
	b.names = append(b.names, name)
	return b.Queue(sql, args...)
}

// send runs the batch in one round trip and reads every result, in order.
func (b *batch) send(ctx context.Context, tx pgx.Tx) error {
	if b.Len() == 0 {
		return nil
	}
	br := tx.SendBatch(ctx, &b.Batch)
	for i, name := range b.names {
		var err error
		if fn := b.QueuedQueries[i].Fn; fn != nil {
			err = fn(br)
		} else {
			_, err = br.Exec()
		}
		if err != nil {
			br.Close()
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return br.Close()
}
