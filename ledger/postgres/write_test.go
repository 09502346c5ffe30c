package postgres_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
)

// TestRefusedRowNamesStatement: a row the database refuses, in any of the
// write path's statements (a COPY, or one of the pipelined batch), fails
// the whole Apply with an error that names the statement and keeps the
// server's, is not taken for the database being down (so the consumer
// applies the batch event by event and rejects that event alone), and
// leaves nothing behind: the same event applies once the row is allowed,
// as new, not as a duplicate.
func TestRefusedRowNamesStatement(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, check, want string
		// before is applied first (and allowed); then the check is
		// added and refused is applied.
		before, refused func(g *ledgertest.Gen, uid string) []ledger.Message
	}{
		{
			name: "new session (COPY)", check: `ALTER TABLE sessions ADD CONSTRAINT refuse CHECK (username <> 'mallory')`,
			want: "copy new sessions",
			refused: func(g *ledgertest.Gen, uid string) []ledger.Message {
				return []ledger.Message{g.Connect(uid, ledgertest.Conn{User: "mallory", VPN4: "10.8.0.9"}, t0)}
			},
		},
		{
			name: "stored session (batch)", check: `ALTER TABLE sessions ADD CONSTRAINT refuse CHECK (state = 'open')`,
			want: "upsert sessions",
			before: func(g *ledgertest.Gen, uid string) []ledger.Message {
				return []ledger.Message{g.Connect(uid, ledgertest.Conn{User: "mallory", VPN4: "10.8.0.9"}, t0)}
			},
			refused: func(g *ledgertest.Gen, uid string) []ledger.Message {
				return []ledger.Message{g.Disconnect(uid, 1000, 2000, 60, t0.Add(time.Minute))}
			},
		},
		{
			name: "usage_monthly (batch)", check: `ALTER TABLE usage_monthly ADD CONSTRAINT refuse CHECK (bytes_in < 1000000)`,
			want: "upsert usage_monthly",
			before: func(g *ledgertest.Gen, uid string) []ledger.Message {
				return []ledger.Message{g.Connect(uid, ledgertest.Conn{User: "mallory", VPN4: "10.8.0.9"}, t0)}
			},
			refused: func(g *ledgertest.Gen, uid string) []ledger.Message {
				return []ledger.Message{g.Disconnect(uid, 5000000, 2000, 60, t0.Add(time.Minute))}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, dsn := migrated(t, ledger.ApplyOptions{})
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)

			g := ledgertest.NewGen("vpn1", &ledgertest.Seq{})
			uid := ledgertest.UID()
			if tc.before != nil {
				if _, err := s.Apply(ctx, tc.before(g, uid)); err != nil {
					t.Fatal(err)
				}
			}
			before, err := s.Position(ctx)
			if err != nil {
				t.Fatal(err)
			}
			sum := ledgertest.Checksum(t, s)
			if _, err := conn.Exec(ctx, tc.check); err != nil {
				t.Fatal(err)
			}
			msgs := tc.refused(g, uid)
			_, err = s.Apply(ctx, msgs)
			var pe *pgconn.PgError
			if err == nil || !strings.Contains(err.Error(), tc.want+": ") || !errors.As(err, &pe) || pe.ConstraintName != "refuse" {
				t.Fatalf("Apply of a refused row: %v, want an error naming %q with the server's (constraint refuse)", err, tc.want)
			}
			if ledger.ErrorCode(err) == ledger.ECodeUnavailable {
				t.Fatalf("a refused row taken for the database being down: %v", err)
			}
			if p, err := s.Position(ctx); err != nil || p != before {
				t.Fatalf("position after the refused batch: %+v (%v), want %+v", p, err, before)
			}
			if after := ledgertest.Checksum(t, s); !maps.Equal(after, sum) {
				t.Fatalf("tables changed by a refused batch:\n%v\n%v", sum, after)
			}
			if _, err := conn.Exec(ctx, `ALTER TABLE `+strings.Fields(tc.check)[2]+` DROP CONSTRAINT refuse`); err != nil {
				t.Fatal(err)
			}
			r, err := s.Apply(ctx, msgs)
			if err != nil || r.Applied != len(msgs) || r.Duplicates != 0 {
				t.Fatalf("the same events once allowed: %+v, %v; want applied as new", r, err)
			}
		})
	}
}

// TestCopyConflictTakesUpsert: a session the batch takes for new (it
// found no stored row) but whose row is there after all makes the COPY
// fail on the primary key; the COPY is undone and every row of the
// batch takes the upsert, in the same transaction. Here the stored
// session lost its counters row, so the join that loads sessions misses
// it.
func TestCopyConflictTakesUpsert(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	s, dsn := migrated(t, ledger.ApplyOptions{})
	g := ledgertest.NewGen("vpn1", &ledgertest.Seq{})
	uid, other := ledgertest.UID(), ledgertest.UID()
	if _, err := s.Apply(ctx, []ledger.Message{g.Connect(uid, ledgertest.Conn{User: "pat", VPN4: "10.8.0.9"}, t0)}); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DELETE FROM session_counters WHERE session_uid = $1`, uid); err != nil {
		t.Fatal(err)
	}
	r, err := s.Apply(ctx, []ledger.Message{
		g.Connect(other, ledgertest.Conn{User: "sam", VPN4: "10.8.0.10"}, t0.Add(time.Second)),
		g.Disconnect(uid, 1000, 2000, 60, t0.Add(time.Minute)),
	})
	if err != nil || r.Applied != 2 {
		t.Fatalf("a batch whose COPY conflicts: %+v, %v; want both events applied", r, err)
	}
	for _, want := range []struct{ uid, state string }{{uid, ledger.StateDisconnect}, {other, ledger.StateOpen}} {
		var n int
		var state string
		err := conn.QueryRow(ctx, `SELECT count(*), min(state) FROM sessions JOIN session_counters USING (session_uid) WHERE session_uid = $1`,
			want.uid).Scan(&n, &state)
		if err != nil || n != 1 || state != want.state {
			t.Fatalf("session %s after the conflict: %d rows, state %q (%v); want 1 row, %q", want.uid, n, state, err, want.state)
		}
	}
}
