package console

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// Times a person types or a datetime-local input sends; all are UTC.
var timeLayouts = []string{
	time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02",
}

// parseTime reads a time field; "" is the zero time.
func parseTime(name, v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, nil
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%s: %q is not a time like 2026-11-24 07:18 or 2026-11-24T07:18:00Z (UTC)", name, short(v))
}

// textArg checks a free-text filter: at most max bytes of printable UTF-8.
func textArg(name, v string, max int) (string, error) {
	v = strings.TrimSpace(v)
	if len(v) > max {
		return "", fmt.Errorf("%s: longer than %d characters", name, max)
	}
	if !utf8.ValidString(v) {
		return "", fmt.Errorf("%s: not valid UTF-8", name)
	}
	for _, r := range v {
		if !unicode.IsPrint(r) {
			return "", fmt.Errorf("%s: contains a control character", name)
		}
	}
	return v, nil
}

// intArg reads an optional bounded integer.
func intArg(name, v string, min, max int) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		return 0, fmt.Errorf("%s: %q is not a number from %d to %d", name, short(v), min, max)
	}
	return n, nil
}

// ledgerFail maps a ledger error to a page: its own message for a bad
// argument, a plain sentence for an unavailable database, and a logged
// internal error otherwise.
func (s *Server) ledgerFail(w http.ResponseWriter, r *http.Request, c *reqCtx, err error) {
	var le *ledger.Error
	switch ledger.ErrorCode(err) {
	case ledger.ECodeInvalid:
		msg := err.Error()
		if errors.As(err, &le) {
			msg = le.Message
		}
		s.fail(w, r, c, http.StatusBadRequest, "Bad input: "+msg+".")
	case ledger.ECodeNotFound:
		s.fail(w, r, c, http.StatusNotFound, "Not found.")
	case ledger.ECodeUnavailable:
		s.o.Log.Warn("console: ledger unavailable", "path", r.URL.Path, "err", err.Error())
		s.fail(w, r, c, http.StatusServiceUnavailable, "The ledger's database does not answer right now; try again shortly.")
	default:
		s.o.Log.Error("console: ledger query", "path", r.URL.Path, "err", err.Error())
		s.fail(w, r, c, http.StatusInternalServerError, "Internal error querying the ledger; it has been logged.")
	}
}
