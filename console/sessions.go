package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// Session is one row of the sessions file: a logged-in browser. The
// cookie carries "<id>.<secret>"; only the secret's SHA-256 is stored, so
// a copy of the file cannot be replayed as a cookie.
type Session struct {
	ID         string    `json:"id"`
	SecretHash string    `json:"secret_sha256"`
	User       string    `json:"user"`
	CSRF       string    `json:"csrf"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`
	LastSeen   time.Time `json:"last_seen"`
	IP         string    `json:"ip"`
	UserAgent  string    `json:"user_agent"`

	// Flash is a one-line message for the next page (not persisted).
	flash string
}

// Sessions holds the rows in memory and in a file (JSON, 0600, written
// atomically whenever a row is made or removed), so a restart of the
// ledger does not log everybody out. Several ledger instances do not
// share it: behind a load balancer, pin a browser to one instance.
type Sessions struct {
	path string
	ttl  time.Duration // absolute lifetime from login
	idle time.Duration // idle timeout
	now  func() time.Time

	mu   sync.Mutex
	rows map[string]*Session
}

// ErrNoSession: the cookie names no live session.
var ErrNoSession = errors.New("no such session")

// OpenSessions loads path ("" keeps sessions in memory only). Expired rows
// are dropped on load.
func OpenSessions(path string, ttl, idle time.Duration, now func() time.Time) (*Sessions, error) {
	if now == nil {
		now = time.Now
	}
	s := &Sessions{path: path, ttl: ttl, idle: idle, now: now, rows: map[string]*Session{}}
	if path == "" {
		return s, nil
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("console sessions: %w", err)
	}
	var rows []*Session
	if err := json.Unmarshal(b, &rows); err != nil {
		// A damaged file only logs people out; it must not stop the
		// console. It is replaced at the next write.
		return s, nil
	}
	t := now()
	for _, r := range rows {
		if r.ID != "" && s.live(r, t) {
			s.rows[r.ID] = r
		}
	}
	return s, nil
}

func (s *Sessions) live(r *Session, t time.Time) bool {
	return t.Before(r.Expires) && (s.idle <= 0 || t.Sub(r.LastSeen) < s.idle)
}

func randToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error()) // never returns an error on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// Create makes a new session for user and returns the cookie value.
func (s *Sessions) Create(user, ip, ua string) (string, *Session, error) {
	t := s.now()
	secret := randToken(32)
	r := &Session{
		ID: randToken(16), SecretHash: hashSecret(secret), User: user, CSRF: randToken(32),
		Created: t, Expires: t.Add(s.ttl), LastSeen: t, IP: ip, UserAgent: short(ua),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows[r.ID] = r
	if err := s.saveLocked(); err != nil {
		delete(s.rows, r.ID)
		return "", nil, err
	}
	cp := *r
	return r.ID + "." + secret, &cp, nil
}

// Lookup returns the session the cookie value names, if it is live; the
// secret is compared in constant time. It marks the session as seen.
func (s *Sessions) Lookup(cookie string) (Session, error) {
	id, secret, ok := strings.Cut(cookie, ".")
	if !ok || id == "" || secret == "" || len(cookie) > 200 {
		return Session{}, ErrNoSession
	}
	t := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rows[id]
	if !ok || subtle.ConstantTimeCompare([]byte(r.SecretHash), []byte(hashSecret(secret))) != 1 {
		return Session{}, ErrNoSession
	}
	if !s.live(r, t) {
		delete(s.rows, id)
		s.saveLocked()
		return Session{}, ErrNoSession
	}
	r.LastSeen = t
	return *r, nil
}

// Flash sets a message for the session's next page.
func (s *Sessions) Flash(id, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.rows[id]; ok {
		r.flash = msg
	}
}

// TakeFlash returns and clears the session's message.
func (s *Sessions) TakeFlash(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rows[id]
	if !ok {
		return ""
	}
	m := r.flash
	r.flash = ""
	return m
}

// Delete removes a session (logout, revoke); it reports whether it existed.
func (s *Sessions) Delete(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.rows[id]; !ok {
		return false
	}
	delete(s.rows, id)
	s.saveLocked()
	return true
}

// DeleteUser removes every session of user (the account was deleted or
// its password changed) and returns how many there were.
func (s *Sessions) DeleteUser(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, r := range s.rows {
		if r.User == user {
			delete(s.rows, id)
			n++
		}
	}
	if n > 0 {
		s.saveLocked()
	}
	return n
}

// List returns user's live sessions, newest first.
func (s *Sessions) List(user string) []Session {
	t := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Session
	for _, r := range s.rows {
		if r.User == user && s.live(r, t) {
			out = append(out, *r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out
}

// Sweep drops expired rows.
func (s *Sessions) Sweep() {
	t := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.rows)
	for id, r := range s.rows {
		if !s.live(r, t) {
			delete(s.rows, id)
		}
	}
	if len(s.rows) != n {
		s.saveLocked()
	}
}

func (s *Sessions) saveLocked() error {
	if s.path == "" {
		return nil
	}
	rows := make([]*Session, 0, len(s.rows))
	for _, r := range s.rows {
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].ID < rows[j].ID })
	b, err := json.Marshal(rows)
	if err != nil {
		return fmt.Errorf("console sessions: %w", err)
	}
	if err := writeFileAtomic(s.path, b, 0o600); err != nil {
		return fmt.Errorf("console sessions: %w", err)
	}
	return nil
}
