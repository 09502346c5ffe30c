package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Checksummer digests the rows of one table in a canonical form that does
// not depend on the engine: the engines read their rows into the domain
// types, in primary-key order, and hand them here.
type Checksummer struct {
	h    hash.Hash
	rows int
	b    strings.Builder
}

// NewChecksummer starts a table's digest.
func NewChecksummer() *Checksummer { return &Checksummer{h: sha256.New()} }

// Row adds one row made of the given values.
func (c *Checksummer) Row(vals ...any) {
	c.b.Reset()
	for i, v := range vals {
		if i > 0 {
			c.b.WriteByte('|')
		}
		switch x := v.(type) {
		case string:
			c.b.WriteString(strconv.Quote(x))
		case time.Time:
			if x.IsZero() {
				c.b.WriteString("-")
			} else {
				c.b.WriteString(x.UTC().Format(time.RFC3339Nano))
			}
		case []byte:
			c.b.WriteString(hex.EncodeToString(x))
		case json.RawMessage:
			c.b.WriteString(strconv.Quote(string(x)))
		case map[string]string:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(&c.b, "%q=%q,", k, x[k])
			}
		default:
			fmt.Fprint(&c.b, x)
		}
	}
	c.b.WriteByte('\n')
	c.h.Write([]byte(c.b.String()))
	c.rows++
}

// Sum is "<rows>:<sha256 hex>".
func (c *Checksummer) Sum() string {
	return strconv.Itoa(c.rows) + ":" + hex.EncodeToString(c.h.Sum(nil))
}

// SessionRow is a session's values in checksum order.
func SessionRow(s *Session) []any {
	return []any{s.UID, s.LogicalUID, s.ServerID, s.SpoolID, s.Username, s.Groupname, s.VHost, s.WorkerID, s.Device,
		s.IPReal, s.IPRealLocal, s.VPNIPv4, s.VPNIPv4Local, s.VPNIPv6, s.VPNIPv6Local, s.Hostname, s.UserAgent,
		s.DeviceType, s.DevicePlatform, s.CookieID, s.ConnectedAt, s.ConnectedCoarse, s.EndedAt, s.EndedCoarse,
		s.State, s.EndReason, s.Origin, s.BytesIn, s.BytesOut, s.Seconds, s.Samples, s.LastSampleAt, s.Settled,
		s.AcctIn, s.AcctOut}
}

// ChecksumTables are what Checksum digests: every projection table (a
// session's row joined with its counters, as "sessions") and the applied
// and rejected events (not ingest_state, whose counters say how often
// events were seen, not what they mean).
var ChecksumTables = []string{"sessions", "session_links", "samples", "usage_daily", "usage_monthly", "audit", "spool_notices",
	"servers", "applied_events", "rejected_events"}

// Tables are every data table (Reset empties them).
var Tables = append([]string{"session_counters"}, ChecksumTables...)

// AuditRow is an audit entry's values in checksum order.
func AuditRow(a *AuditEntry) []any {
	return []any{a.EventID, a.ServerID, a.Time, a.Phase, a.Action, a.Subject, a.Key, a.KeyName, a.Role, a.OK,
		a.Code, a.Message, a.Args, a.ElapsedMS, a.Suppressed, a.Actor}
}
