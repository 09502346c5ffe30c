package postgres

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// leaderKey is the advisory lock every ledger instance of one database
// contends for ("ocserv-ledger" in ASCII, folded to 63 bits).
const leaderKey int64 = 0x6f637365727620

// Leader is the session-level advisory lock that makes one instance the
// active one. It lives on a dedicated connection: PostgreSQL frees it when
// that session ends, so a killed instance's lock goes with its connection.
type Leader struct {
	dsn      string
	interval time.Duration

	mu   sync.Mutex
	conn *pgx.Conn
	stop chan struct{}
}

// Leader returns the store's leadership lock; interval is how often a
// held lock's connection is checked.
func (s *Store) Leader(interval time.Duration) *Leader {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	return &Leader{dsn: s.dsn, interval: interval}
}

// TryLead takes the lock if no other session holds it.
func (l *Leader) TryLead(ctx context.Context) (bool, <-chan struct{}, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		return false, nil, nil // held already: the caller has its lost channel
	}
	cfg, err := config(l.dsn, Options{})
	if err != nil {
		return false, nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return false, nil, wrap("postgres ledger: leader connection", err)
	}
	var held bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, leaderKey).Scan(&held); err != nil || !held {
		conn.Close(context.WithoutCancel(ctx))
		return false, nil, wrap("postgres ledger: leader lock", err)
	}
	lost := make(chan struct{})
	l.conn, l.stop = conn, make(chan struct{})
	go l.watch(conn, l.stop, lost)
	return true, lost, nil
}

// watch checks the lock's connection; when it fails the lock is gone
// (PostgreSQL ended the session, or will when it notices).
func (l *Leader) watch(conn *pgx.Conn, stop <-chan struct{}, lost chan<- struct{}) {
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.interval)
		l.mu.Lock()
		err := conn.Ping(ctx)
		l.mu.Unlock()
		cancel()
		if err != nil {
			l.mu.Lock()
			if l.conn == conn {
				conn.Close(context.Background())
				l.conn = nil
			}
			l.mu.Unlock()
			close(lost)
			return
		}
	}
}

// Release unlocks and closes the lock's connection.
func (l *Leader) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return
	}
	close(l.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, leaderKey)
	l.conn.Close(ctx)
	l.conn = nil
}
