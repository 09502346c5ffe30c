package sqlite

import (
	"context"
	"os"
	"sync"
	"syscall"
)

// Leader is an exclusive flock on "<database>.lock": a second instance on
// the same file waits as a standby instead of fighting for the writer.
type Leader struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

// Leader returns the store's leadership lock.
func (s *Store) Leader() *Leader { return &Leader{path: s.path + ".lock"} }

// TryLead takes the lock if it is free. A flock is never lost while the
// process lives, so lost is never closed.
func (l *Leader) TryLead(context.Context) (bool, <-chan struct{}, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		return false, nil, nil
	}
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return false, nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if err == syscall.EWOULDBLOCK {
			return false, nil, nil
		}
		return false, nil, err
	}
	l.f = f
	return true, make(chan struct{}), nil
}

// Release unlocks.
func (l *Leader) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
