package console

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/time/rate"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/natsjs"
	"github.com/ocserv-telemetry/ocserv-telemetry/shipper"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// Console audit actions (the hosts' own audits use the command names).
const (
	AuditLogin  = "console-login"
	AuditLogout = "console-logout"
)

// Auditor records the console's audit events: every login, failed or
// not, every logout, every action asked for.
type Auditor interface {
	Audit(a cmdsvc.Audit) error
}

// SpoolAuditor writes audit events into a spool of the console's own and
// ships it to the events stream with the product's shipper, exactly as a
// VPN host's command service does: an event is on disk (fsynced) before
// Audit returns, and reaches the stream (and the ledger) whenever NATS
// is reachable. The console's server_id names it in the subjects
// (<prefix>.events.<server_id>.audit).
type SpoolAuditor struct {
	sp       *spool.Spool
	dir      string
	serverID string
	// Failed logins are limited like the command service's refusals, so
	// a guessing flood cannot fill the spool; the count of those not
	// written goes into the next one that is.
	lim        *rate.Limiter
	mu         sync.Mutex
	suppressed int64
}

// OpenSpoolAuditor opens (creating it when missing) the spool in dir.
func OpenSpoolAuditor(dir, serverID string) (*SpoolAuditor, error) {
	sp, err := spool.Open(dir, spool.Options{Fsync: true, LockWait: 2 * time.Second, Create: true})
	if err != nil {
		return nil, fmt.Errorf("console audit spool: %w", err)
	}
	return &SpoolAuditor{sp: sp, dir: dir, serverID: serverID, lim: rate.NewLimiter(rate.Every(time.Second), 60)}, nil
}

// Audit appends one audit event. A refusal over the rate is counted, not
// written, and reported as written.
func (a *SpoolAuditor) Audit(rec cmdsvc.Audit) error {
	if rec.Phase == cmdsvc.PhaseRefused {
		a.mu.Lock()
		if !a.lim.Allow() {
			a.suppressed++
			a.mu.Unlock()
			return nil
		}
		rec.SuppressedRefusals, a.suppressed = a.suppressed, 0
		a.mu.Unlock()
	}
	payload, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	raw := json.RawMessage(payload)
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	_, err = a.sp.Append(func(st spool.Stamp) ([]byte, error) {
		ev := events.Event{
			V: events.SchemaVersion, EventID: id.String(), ServerID: a.serverID,
			SpoolID: st.SpoolID, Seq: st.Seq, Type: events.Audit,
			Time: time.Now().UTC().Format(time.RFC3339Nano), BootID: spool.BootID(),
			Audit: &raw,
		}
		return ev.Marshal()
	})
	if err != nil {
		return fmt.Errorf("write console audit event: %w", err)
	}
	return nil
}

// Ship delivers the spool to the events stream until ctx ends.
func (a *SpoolAuditor) Ship(ctx context.Context, conn *natsjs.Conn, prefix string, log *slog.Logger) error {
	pub := natsjs.NewPublisher(conn, 64)
	defer pub.Close()
	wake, stop, err := shipper.Watch(a.dir, log)
	if err != nil {
		return fmt.Errorf("console audit spool: %w", err)
	}
	defer stop()
	sh, err := shipper.New(shipper.Options{
		Spool: a.sp, Publisher: pub, Log: log, ServerID: a.serverID, Prefix: prefix, Durable: true,
		Wake: wake, Reconnected: conn.Connected(), MaxInFlight: 64,
	})
	if err != nil {
		return fmt.Errorf("console audit shipper: %w", err)
	}
	return sh.Run(ctx)
}

// Close closes the spool.
func (a *SpoolAuditor) Close() error { return a.sp.Close() }
