package ledger

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Cursor is a keyset position: the last row of a page (its time and id),
// so the next page starts strictly after it whatever was inserted since.
type Cursor struct {
	Time time.Time
	ID   string
}

// Encode makes the opaque text a client passes back.
func (c Cursor) Encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.Time.UnixMicro(), 10) + "." + c.ID))
}

// DecodeCursor reads a cursor made by Encode.
func DecodeCursor(s string) (Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, Errorf(ECodeInvalid, "cursor: not a cursor from a previous page")
	}
	ts, id, ok := strings.Cut(string(b), ".")
	us, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil {
		return Cursor{}, Errorf(ECodeInvalid, "cursor: not a cursor from a previous page")
	}
	if _, err := uuid.Parse(id); err != nil {
		return Cursor{}, Errorf(ECodeInvalid, "cursor: not a cursor from a previous page")
	}
	return Cursor{Time: time.UnixMicro(us).UTC(), ID: id}, nil
}

func limit(n int) (int, error) {
	switch {
	case n == 0:
		return DefaultLimit, nil
	case n < 0 || n > MaxLimit:
		return 0, Errorf(ECodeInvalid, "limit: %d is not within 1..%d", n, MaxLimit)
	}
	return n, nil
}

// Check validates q and fills its defaults; engines call it first.
func (q *HistoryQuery) Check() error {
	var err error
	if q.Limit, err = limit(q.Limit); err != nil {
		return err
	}
	if q.IP != "" {
		if q.IP, err = CanonIP(q.IP); err != nil {
			return Errorf(ECodeInvalid, "ip: %q is not an IP address", short(q.IP))
		}
	}
	if q.LogicalUID != "" {
		u, err := uuid.Parse(q.LogicalUID)
		if err != nil {
			return Errorf(ECodeInvalid, "logical: %q is not a session uid", short(q.LogicalUID))
		}
		q.LogicalUID = u.String()
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return Errorf(ECodeInvalid, "from: %s is not before to %s", q.From.Format(time.RFC3339), q.To.Format(time.RFC3339))
	}
	return nil
}

// Check validates q and fills its defaults.
func (q *WhoQuery) Check() error {
	if q.IP == "" {
		return Errorf(ECodeInvalid, "ip: required")
	}
	ip, err := CanonIP(q.IP)
	if err != nil {
		return Errorf(ECodeInvalid, "ip: %q is not an IP address", short(q.IP))
	}
	q.IP = ip
	if q.At.IsZero() {
		return Errorf(ECodeInvalid, "at: required")
	}
	switch q.Kind {
	case "":
		q.Kind = WhoAny
	case WhoAny, WhoVPN, WhoReal:
	default:
		return Errorf(ECodeInvalid, "kind: %q is not any, vpn or real", short(q.Kind))
	}
	return nil
}

// Check validates q and fills its defaults (this month, by range).
func (q *UsageQuery) Check(now time.Time) error {
	if q.From.IsZero() {
		n := now.UTC()
		q.From = time.Date(n.Year(), n.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	if q.To.IsZero() {
		q.To = time.Date(q.From.Year(), q.From.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	}
	q.From, q.To = truncDay(q.From), truncDay(q.To)
	if !q.From.Before(q.To) {
		return Errorf(ECodeInvalid, "from: %s is not before to %s", Day(q.From), Day(q.To))
	}
	switch q.By {
	case "":
		q.By = ByRange
	case ByDay, ByMonth, ByRange:
	default:
		return Errorf(ECodeInvalid, "by: %q is not day, month or range", short(q.By))
	}
	if q.Top < 0 || q.Top > 100000 {
		return Errorf(ECodeInvalid, "top: %d is not within 0..100000", q.Top)
	}
	return nil
}

// FromMonthly reports whether q can be answered from usage_monthly: whole
// months, every server together, no row per day.
func (q *UsageQuery) FromMonthly() bool {
	whole := func(t time.Time) bool { return t.Day() == 1 }
	return q.By != ByDay && q.Server == "" && !q.PerServer && whole(q.From) && whole(q.To)
}

// Period is the label of a usage row for day under q.By.
func (q *UsageQuery) Period(day string) string {
	switch q.By {
	case ByDay:
		return day
	case ByMonth:
		return day[:7]
	}
	return Day(q.From) + ".." + Day(q.To)
}

func truncDay(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// Check validates q and fills its defaults.
func (q *AuditQuery) Check() error {
	var err error
	if q.Limit, err = limit(q.Limit); err != nil {
		return err
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return Errorf(ECodeInvalid, "from: %s is not before to %s", q.From.Format(time.RFC3339), q.To.Format(time.RFC3339))
	}
	return nil
}
