package livestate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Claim is the value of "<server_id>.claim" in the state bucket: which
// host publishes under this server_id. A host refreshes its claim every
// snapshot interval; a claim not refreshed for three intervals (plus 30s)
// is stale, and a claim its owner released at a clean stop is free.
type Claim struct {
	ServerID    string `json:"server_id"`
	SpoolID     string `json:"spool_id"`
	Hostname    string `json:"hostname"`
	BootID      string `json:"boot_id,omitempty"`
	PID         int    `json:"pid"`
	Instance    string `json:"instance"` // random per shipper process
	Version     string `json:"version,omitempty"`
	ClaimedAt   string `json:"claimed_at"`
	RefreshedAt string `json:"refreshed_at"`
	RefreshS    int    `json:"refresh_s"`
	Released    bool   `json:"released,omitempty"`
}

// Claim states.
const (
	ClaimUnknown  = "unknown"  // not checked yet (NATS unreachable)
	ClaimOwned    = "owned"    // this host holds the server_id
	ClaimConflict = "conflict" // another live host holds it (cloned image?)
)

func (c Claim) stale(now time.Time) bool {
	if c.Released {
		return true
	}
	t, err := time.Parse(time.RFC3339Nano, c.RefreshedAt)
	if err != nil {
		return true // unreadable: nobody can be shown to hold it
	}
	refresh := time.Duration(max(c.RefreshS, 1)) * time.Second
	return now.Sub(t) > 3*refresh+30*time.Second
}

// sameHost: the claim was made by this spool on this boot of this host
// (a restart of the shipper), so it may be taken over at once.
func (c Claim) sameHost(o Claim) bool {
	return c.SpoolID == o.SpoolID && c.Hostname == o.Hostname && c.BootID == o.BootID
}

// claimer keeps the claim in the bucket with optimistic concurrency: the
// revision of our last write must still be the key's, or someone else
// wrote it.
type claimer struct {
	ours  Claim
	rev   uint64
	state string
	other *Claim
}

type claimResult struct {
	state   string
	changed bool   // state or other party changed: log it
	note    string // what happened, for the log line
}

func decodeClaim(b []byte) (Claim, error) {
	var c Claim
	err := json.Unmarshal(b, &c)
	return c, err
}

// refresh claims or re-asserts the server_id. Errors are NATS trouble: the
// state is left as it was.
func (c *claimer) refresh(ctx context.Context, kv jetstream.KeyValue, now time.Time) (claimResult, error) {
	key := ClaimKey(c.ours.ServerID)
	c.ours.RefreshedAt = now.UTC().Format(time.RFC3339Nano)
	if c.ours.ClaimedAt == "" {
		c.ours.ClaimedAt = c.ours.RefreshedAt
	}
	val, err := json.Marshal(c.ours)
	if err != nil {
		return claimResult{}, err
	}
	if c.rev != 0 {
		rev, err := kv.Update(ctx, key, val, c.rev)
		if err == nil {
			c.rev = rev
			return c.set(ClaimOwned, nil, ""), nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			return claimResult{}, fmt.Errorf("refresh claim %s: %w", key, err)
		}
		c.rev = 0 // someone else wrote it: look at who
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		// Create also succeeds over a delete marker (an operator removed
		// the claim to resolve a conflict).
		rev, err := kv.Create(ctx, key, val)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return claimResult{state: c.state}, fmt.Errorf("claim %s: created by another host at the same moment; looking again next time", key)
		}
		if err != nil {
			return claimResult{}, fmt.Errorf("create claim %s: %w", key, err)
		}
		c.rev = rev
		return c.set(ClaimOwned, nil, "server_id claimed"), nil
	}
	if err != nil {
		return claimResult{}, fmt.Errorf("read claim %s: %w", key, err)
	}
	other, derr := decodeClaim(e.Value())
	switch {
	case derr == nil && other.Instance == c.ours.Instance:
		// Our own write whose answer we missed.
		c.rev = e.Revision()
		return c.set(ClaimOwned, nil, ""), nil
	case derr == nil && !other.Released && !other.stale(now) && !other.sameHost(c.ours):
		return c.set(ClaimConflict, &other, ""), nil
	}
	note := "server_id claimed"
	switch {
	case derr != nil:
		note = "server_id claimed over an unreadable claim"
	case other.sameHost(c.ours):
		note = "server_id claim taken over from an earlier run on this host"
	case other.Released:
		note = "server_id claim taken over (released by its holder)"
	default:
		note = fmt.Sprintf("server_id claim taken over from a stale one (host %s, spool %s, refreshed %s)", other.Hostname, other.SpoolID, other.RefreshedAt)
	}
	rev, err := kv.Update(ctx, key, val, e.Revision())
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return claimResult{state: c.state}, fmt.Errorf("claim %s: changed while taking it over; looking again next time", key)
	}
	if err != nil {
		return claimResult{}, fmt.Errorf("take over claim %s: %w", key, err)
	}
	c.rev = rev
	return c.set(ClaimOwned, nil, note), nil
}

func (c *claimer) set(state string, other *Claim, note string) claimResult {
	changed := state != c.state
	if other != nil && (c.other == nil || c.other.Instance != other.Instance) {
		changed = true
	}
	c.state, c.other = state, other
	return claimResult{state: state, changed: changed, note: note}
}

// release marks our claim free at a clean stop, so the next start (here
// or on a replacement host) takes it at once.
func (c *claimer) release(ctx context.Context, kv jetstream.KeyValue) error {
	if c.rev == 0 || c.state != ClaimOwned {
		return nil
	}
	r := c.ours
	r.Released = true
	r.RefreshedAt = time.Now().UTC().Format(time.RFC3339Nano)
	val, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = kv.Update(ctx, ClaimKey(c.ours.ServerID), val, c.rev)
	c.rev = 0
	return err
}
