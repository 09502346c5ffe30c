package ledger

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/crashpoint"
)

// Crash points of Apply (tests kill the real service at them).
const (
	CrashMidBatch = "ledger-mid-batch" // event ids claimed, rows not yet written, nothing committed
)

// ApplyOptions are the engine's settings that Apply needs.
type ApplyOptions struct {
	// Retention: events older than Retention.Sessions before Now are
	// skipped (counted as expired), so a replay cannot bring back what
	// retention removed. Zero keeps everything.
	Retention Retention
	Now       func() time.Time
}

// ApplyTx is the engine-independent body of IngestStore.Apply: decode and
// check each message, claim the new event ids, project the new events onto
// the sessions they concern, write the rows and the position. The engine
// runs it inside one transaction and commits after it returns nil.
func ApplyTx(ctx context.Context, tx IngestTx, msgs []Message, o ApplyOptions) (BatchResult, error) {
	var res BatchResult
	if len(msgs) == 0 {
		return res, nil
	}
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	var horizon time.Time
	if o.Retention.Sessions > 0 {
		horizon = now.Add(-o.Retention.Sessions)
	}
	var (
		evs      []*Event
		claims   []Claim
		rejected []Rejected
		inBatch  = map[string]bool{}
	)
	for _, m := range msgs {
		ev, err := m.decode()
		if err != nil {
			rejected = append(rejected, reject(m, err.Error()))
			continue
		}
		if !horizon.IsZero() && ev.Time.Before(horizon) {
			res.Expired++
			continue
		}
		if inBatch[ev.ID] {
			res.Duplicates++
			continue
		}
		inBatch[ev.ID] = true
		evs = append(evs, ev)
		claims = append(claims, Claim{EventID: ev.ID, StreamSeq: m.StreamSeq, Time: ev.Time})
	}
	var fresh []*Event
	if len(claims) > 0 {
		isNew, err := tx.Claim(ctx, claims)
		if err != nil {
			return res, fmt.Errorf("claim event ids: %w", err)
		}
		for i, ev := range evs {
			if isNew[i] {
				fresh = append(fresh, ev)
			} else {
				res.Duplicates++
			}
		}
	}
	crashpoint.Hit(CrashMidBatch)
	var c *Changes
	if len(fresh) > 0 {
		uidSet := map[string]bool{}
		for _, ev := range fresh {
			if ev.SessionUID != "" {
				uidSet[ev.SessionUID] = true
			}
			if ev.Rec != nil {
				for _, j := range ev.Rec.JoinedUIDs {
					uidSet[j] = true
				}
			}
		}
		uids := make([]string, 0, len(uidSet))
		for u := range uidSet {
			uids = append(uids, u)
		}
		sessions, err := tx.LoadSessions(ctx, uids)
		if err != nil {
			return res, fmt.Errorf("load sessions: %w", err)
		}
		links, err := tx.LoadLinks(ctx, uids)
		if err != nil {
			return res, fmt.Errorf("load session links: %w", err)
		}
		c = Project(sessions, links, fresh)
	} else {
		c = &Changes{}
	}
	c.Rejected = rejected
	pos, err := tx.Position(ctx)
	if err != nil {
		return res, fmt.Errorf("read ingest position: %w", err)
	}
	res.Applied, res.Rejected = len(fresh), len(rejected)
	last := msgs[len(msgs)-1]
	if last.StreamSeq > pos.StreamSeq {
		pos.StreamSeq, pos.StreamTime = last.StreamSeq, last.Time.UTC().Truncate(time.Microsecond)
	}
	for _, ev := range fresh {
		if ev.Time.After(pos.LastEventTime) {
			pos.LastEventTime = ev.Time
		}
	}
	pos.Applied += int64(res.Applied)
	pos.Duplicates += int64(res.Duplicates)
	pos.Rejected += int64(res.Rejected)
	pos.Expired += int64(res.Expired)
	c.Position = pos
	if err := tx.Write(ctx, c); err != nil {
		return res, fmt.Errorf("write rows: %w", err)
	}
	res.Position = pos
	res.Users = c.users()
	return res, nil
}

// users lists, sorted, the user names whose rows c changes.
func (c *Changes) users() []string {
	set := map[string]bool{}
	for _, s := range c.Sessions {
		if s.Username != "" {
			set[s.Username] = true
		}
	}
	for _, u := range c.Usage {
		if u.Username != "" {
			set[u.Username] = true
		}
	}
	if len(set) == 0 {
		return nil
	}
	out := make([]string, 0, len(set))
	for u := range set {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// reject makes the rejected_events row of a message.
func reject(m Message, reason string) Rejected {
	r := Rejected{StreamSeq: m.StreamSeq, Subject: clean(m.Subject), Reason: clean(reason),
		Received: m.Time.UTC().Truncate(time.Microsecond)}
	p := m.Data
	if len(p) > maxPayload {
		p = p[:maxPayload]
	}
	r.Payload = append([]byte(nil), p...)
	// The id, when one can be read, helps find the event's source.
	var w struct {
		EventID string `json:"event_id"`
	}
	if jsonUnmarshal(p, &w) == nil {
		r.EventID = clean(short(w.EventID))
	}
	return r
}

// RejectTx is the engine-independent body of IngestStore.Reject.
func RejectTx(ctx context.Context, tx IngestTx, m Message, reason string) error {
	pos, err := tx.Position(ctx)
	if err != nil {
		return fmt.Errorf("read ingest position: %w", err)
	}
	if m.StreamSeq > pos.StreamSeq {
		pos.StreamSeq, pos.StreamTime = m.StreamSeq, m.Time.UTC().Truncate(time.Microsecond)
	}
	pos.Rejected++
	return tx.Write(ctx, &Changes{Rejected: []Rejected{reject(m, reason)}, Position: pos})
}
