package bucket

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/policy/mirror"
)

// StatusFile is the follower's status, in the spool directory beside the
// mirror: ctl status and the metrics endpoint read it.
const StatusFile = "policy-mirror.json"

// Follower states.
const (
	FollowStarting = "starting" // no bucket reached yet
	FollowSyncing  = "syncing"  // reading the bucket's current values
	FollowSynced   = "synced"   // the mirror holds every verdict; updates applied as they come
	FollowError    = "error"    // the bucket cannot be read; retrying
)

// Status is the follower's account of itself (StatusFile).
type Status struct {
	State  string `json:"state"`
	Bucket string `json:"bucket"`
	// Entries is the number of verdicts in the mirror.
	Entries int `json:"entries"`
	// LedgerTime is the newest heartbeat's time (the ledger's clock);
	// HeartbeatAt is when this host received it.
	LedgerTime  time.Time `json:"ledger_time,omitzero"`
	HeartbeatAt time.Time `json:"heartbeat_at,omitzero"`
	Applied     int64     `json:"applied"`
	// Rejected counts values that were not a valid verdict for their key.
	Rejected   int64     `json:"rejected"`
	LastError  string    `json:"last_error,omitempty"`
	ErrorSince time.Time `json:"error_since,omitzero"`
	Updated    time.Time `json:"updated"`
}

// Follower mirrors the bucket into the local files the hook reads.
type Follower struct {
	JS     jetstream.JetStream
	Bucket string
	Mirror *mirror.Mirror
	// SpoolDir holds the status file.
	SpoolDir string
	Log      *slog.Logger
	Now      func() time.Time

	mu sync.Mutex
	st Status
}

func (f *Follower) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// Status is the current status.
func (f *Follower) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

// Run follows the bucket until ctx ends, reconnecting with capped
// exponential backoff; each failure is logged once per change.
func (f *Follower) Run(ctx context.Context) {
	f.set(func(s *Status) { s.State, s.Bucket = FollowStarting, f.Bucket })
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.MaxElapsedTime = 200*time.Millisecond, 30*time.Second, 0
	lastErr := ""
	for ctx.Err() == nil {
		err := f.follow(ctx, bo)
		if ctx.Err() != nil {
			return
		}
		msg := "the watcher stopped"
		if err != nil {
			msg = err.Error()
		}
		if msg != lastErr {
			f.Log.Warn("policy mirror: cannot follow the verdicts bucket; retrying (the hook applies POLICY_STALE once the mirror is older than POLICY_MAX_AGE)",
				"bucket", f.Bucket, "err", msg)
			lastErr = msg
		}
		f.set(func(s *Status) {
			if s.State != FollowError {
				s.ErrorSince = f.now().UTC()
			}
			s.State, s.LastError = FollowError, msg
		})
		select {
		case <-ctx.Done():
			return
		case <-time.After(bo.NextBackOff()):
		}
	}
}

// follow runs one watcher: the current values first (then the mirror is
// made to match the bucket exactly), then every change.
func (f *Follower) follow(ctx context.Context, bo backoff.BackOff) error {
	kv, err := f.JS.KeyValue(ctx, f.Bucket)
	if err != nil {
		return fmt.Errorf("look up bucket %s: %w", f.Bucket, err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch bucket %s: %w", f.Bucket, err)
	}
	defer w.Stop()
	f.set(func(s *Status) { s.State = FollowSyncing })
	initial := true
	present := map[string]bool{} // the users the mirror holds a verdict for
	var hb *Heartbeat
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok = <-w.Updates():
		}
		if !ok {
			return errors.New("the bucket's watcher stopped")
		}
		if e == nil { // every current value delivered
			initial = false
			if err := f.prune(present); err != nil {
				return err
			}
			if hb != nil {
				if err := f.heartbeat(*hb); err != nil {
					return err
				}
			}
			f.set(func(s *Status) { s.State, s.LastError, s.Entries = FollowSynced, "", len(present) })
			bo.Reset()
			if f.Log != nil {
				f.Log.Info("policy mirror synced", "bucket", f.Bucket, "verdicts", len(present))
			}
			f.writeStatus()
			continue
		}
		if e.Key() == HeartbeatKey {
			if e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var h Heartbeat
			if err := json.Unmarshal(e.Value(), &h); err != nil || h.Time.IsZero() {
				f.reject("heartbeat does not parse")
				continue
			}
			hb = &h
			if !initial {
				if err := f.heartbeat(h); err != nil {
					return err
				}
			}
			continue
		}
		user, ok := UserOf(e.Key())
		if !ok {
			continue
		}
		switch e.Operation() {
		case jetstream.KeyValuePut:
			v, err := Decode(user, e.Value())
			if err != nil {
				f.reject(err.Error())
				continue
			}
			if err := f.Mirror.Put(v); err != nil {
				return err
			}
			present[user] = true
		default: // delete, purge: allowed again
			if err := f.Mirror.Delete(user); err != nil {
				return err
			}
			delete(present, user)
		}
		f.set(func(s *Status) {
			s.Applied++
			if !initial {
				s.Entries = len(present)
			}
		})
	}
}

// prune removes every verdict the bucket no longer holds (deleted while
// this host was away) and any stray file.
func (f *Follower) prune(seen map[string]bool) error {
	users, odd, err := f.Mirror.Users()
	if err != nil {
		return err
	}
	for _, u := range users {
		if !seen[u] {
			if err := f.Mirror.Delete(u); err != nil {
				return err
			}
		}
	}
	for _, n := range odd {
		if err := f.Mirror.RemoveOdd(n); err != nil {
			return err
		}
	}
	return nil
}

func (f *Follower) heartbeat(h Heartbeat) error {
	now := f.now()
	if err := f.Mirror.Touch(h.Time, now); err != nil {
		return err
	}
	f.set(func(s *Status) { s.LedgerTime, s.HeartbeatAt = h.Time.UTC(), now.UTC() })
	f.writeStatus()
	return nil
}

func (f *Follower) reject(why string) {
	f.set(func(s *Status) { s.Rejected++ })
	if f.Log != nil {
		f.Log.Warn("policy mirror: ignoring a value that is not a valid verdict (who can write the bucket? docs/policy.md, permissions)", "bucket", f.Bucket, "problem", why)
	}
}

func (f *Follower) set(change func(*Status)) {
	f.mu.Lock()
	change(&f.st)
	f.st.Updated = f.now().UTC()
	failing := f.st.State == FollowError
	f.mu.Unlock()
	if failing {
		f.writeStatus()
	}
}

// writeStatus replaces the status file (atomically, 0640).
func (f *Follower) writeStatus() {
	if f.SpoolDir == "" {
		return
	}
	b, _ := json.MarshalIndent(f.Status(), "", "  ")
	tmp, err := os.CreateTemp(f.SpoolDir, ".policy-status-*")
	if err != nil {
		return
	}
	name := tmp.Name()
	defer os.Remove(name)
	err = tmp.Chmod(0o640)
	if err == nil {
		_, err = tmp.Write(append(b, '\n'))
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		os.Rename(name, filepath.Join(f.SpoolDir, StatusFile))
	}
}

// ReadStatus reads a follower's status file in spoolDir.
func ReadStatus(spoolDir string) (Status, error) {
	var s Status
	b, err := os.ReadFile(filepath.Join(spoolDir, StatusFile))
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

// Report is a host's fleet-policy state as status and metrics show it:
// the mirror's freshness against POLICY_MAX_AGE and the follower's own
// status.
type Report struct {
	State      string    `json:"state"` // mirror.StateFresh, StateStale or StateMissing
	Stamp      time.Time `json:"stamp,omitzero"`
	AgeSeconds float64   `json:"age_seconds,omitempty"`
	MaxAge     string    `json:"max_age"`
	StaleMode  string    `json:"stale_mode"`
	Follower   *Status   `json:"follower,omitempty"`
	Error      string    `json:"follower_status_error,omitempty"`
}

// ReadReport reads the mirror in spoolDir and the follower's status file.
func ReadReport(spoolDir string, maxAge time.Duration, staleMode string, now time.Time) Report {
	r := Report{MaxAge: maxAge.String(), StaleMode: staleMode}
	res := mirror.Lookup(spoolDir, "", now, maxAge)
	r.State = res.State
	if res.State != mirror.StateMissing {
		r.Stamp = now.Add(-res.Age).UTC().Truncate(time.Second)
		r.AgeSeconds = res.Age.Seconds()
	}
	if st, err := ReadStatus(spoolDir); err == nil {
		r.Follower = &st
	} else {
		r.Error = err.Error()
	}
	return r
}
