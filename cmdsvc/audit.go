package cmdsvc

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/google/uuid"
	"golang.org/x/time/rate"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// Audit phases. A read-write command gets "accepted" before it runs (if
// that cannot be written, it does not run) and "done" after; a read-only
// one only "done"; a refusal "refused".
const (
	PhaseRefused  = "refused"
	PhaseAccepted = "accepted"
	PhaseDone     = "done"
)

// Audit is the payload of an audit event (docs/commands.md).
type Audit struct {
	Phase   string `json:"phase"`
	Action  string `json:"action"`
	Subject string `json:"subject"`
	// Reply is the reply subject of a request dropped for it.
	Reply     string            `json:"reply,omitempty"`
	Key       string            `json:"key,omitempty"`
	KeyName   string            `json:"key_name,omitempty"`
	Role      string            `json:"role,omitempty"`
	Args      map[string]string `json:"args,omitempty"`
	Nonce     string            `json:"nonce,omitempty"`
	IssuedAt  string            `json:"issued_at,omitempty"`
	ExpiresAt string            `json:"expires_at,omitempty"`
	OK        bool              `json:"ok"`
	Code      string            `json:"code,omitempty"`
	Message   string            `json:"message,omitempty"`
	ElapsedMS int64             `json:"elapsed_ms,omitempty"`
	// SuppressedRefusals counts refusals since the previous audited one
	// that were not written (rate limit).
	SuppressedRefusals int64 `json:"suppressed_refusals,omitempty"`
	// Actor is the person the key acted for: the web console's user
	// (opauth.Command.Actor), signed with the command.
	Actor string `json:"actor,omitempty"`
}

// auditNS is the UUIDv5 namespace of audit event ids.
var auditNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/ocserv-telemetry/ocserv-telemetry/audit-event"))

// auditor writes audit events through the spool.
type auditor struct {
	sp       *spool.Spool
	serverID string
	log      *slog.Logger

	lim        *rate.Limiter
	mu         sync.Mutex
	suppressed int64
}

func newAuditor(sp *spool.Spool, serverID string, perMinute int, log *slog.Logger) *auditor {
	if perMinute <= 0 {
		perMinute = 60
	}
	return &auditor{
		sp: sp, serverID: serverID, log: log,
		lim: rate.NewLimiter(rate.Every(time.Minute/time.Duration(perMinute)), perMinute),
	}
}

// fill copies what is known of the command into a; the arguments are
// redacted against the action's parameters ps.
func fill(a *Audit, v opauth.Verified, ps []Param) {
	if v.Cmd == nil {
		return
	}
	c := v.Cmd
	a.Key, a.Nonce = truncate(c.Key, 64), truncate(c.Nonce, 64)
	a.Actor = truncate(strings.ToValidUTF8(c.Actor, "?"), 64)
	if c.IssuedAt != 0 {
		a.IssuedAt = time.UnixMilli(c.IssuedAt).UTC().Format(time.RFC3339Nano)
	}
	if c.Expires != 0 {
		a.ExpiresAt = time.UnixMilli(c.Expires).UTC().Format(time.RFC3339Nano)
	}
	if v.Trusted {
		a.KeyName, a.Role = v.Key.Name, string(v.Key.Role)
	}
	a.Args = redact(c.Args, ps)
}

// Values put in the audit in place of an argument's.
const (
	auditSealed   = "(sealed)"
	auditRedacted = "(redacted)"
)

// redact keeps arguments readable in the audit without their secrets: a
// sealed argument shows as (sealed); an argument the action does not take,
// or whose name suggests a secret, as (redacted) — in every audit,
// refused or accepted, since a careless client may put a password in
// clear under any name. Values are cut so a flood of huge ones stays
// small.
func redact(args map[string]string, ps []Param) map[string]string {
	if len(args) == 0 {
		return nil
	}
	known := map[string]Param{}
	for _, p := range ps {
		known[p.Name] = p
	}
	out := map[string]string{}
	n := 0
	for k, v := range args {
		if n++; n > 16 {
			out["…"] = fmt.Sprintf("%d more arguments", len(args)-16)
			break
		}
		p, ok := known[k]
		k = truncate(strings.ToValidUTF8(k, "?"), 64)
		switch {
		case strings.HasSuffix(k, opauth.SealedSuffix):
			out[k] = auditSealed
		case !ok, SecretName(k) && !p.NotSecret:
			out[k] = auditRedacted
		default:
			out[k] = truncate(strings.ToValidUTF8(v, "?"), 256)
		}
	}
	return out
}

// secretWords mark an argument name as secret when they are one of its
// words (split at anything but letters and digits, and at case changes);
// secretParts when they appear anywhere in it ("newpassword", "apiToken").
var (
	secretWords = map[string]bool{"key": true, "pw": true, "pwd": true, "pass": true, "pin": true, "otp": true, "seed": true,
		"private": true, "auth": true, "cred": true, "creds": true}
	secretParts = []string{"password", "passwd", "passphrase", "secret", "token", "credential", "cookie", "apikey", "privkey"}
)

// SecretName reports whether an argument's name suggests it holds a
// secret: password, secret, key, token and their kin.
func SecretName(name string) bool {
	lower := strings.ToLower(name)
	for _, p := range secretParts {
		if strings.Contains(lower, p) {
			return true
		}
	}
	var word []rune
	prevLower := false
	flush := func() bool {
		w := strings.ToLower(string(word))
		word = word[:0]
		return secretWords[w]
	}
	for _, r := range name {
		isLetter := unicode.IsLetter(r) || unicode.IsDigit(r)
		if !isLetter || (unicode.IsUpper(r) && prevLower) {
			if flush() {
				return true
			}
		}
		if isLetter {
			word = append(word, r)
		}
		prevLower = unicode.IsLower(r)
	}
	return flush()
}

// refused writes a refusal unless the rate limit says not to; then it is
// only counted, and the count goes into the next refusal written. id makes
// the event_id: a refusal of one message is one fact. It reports whether
// the refusal was written (the caller logs it only then).
func (au *auditor) refused(a Audit, idParts ...string) bool {
	au.mu.Lock()
	if !au.lim.Allow() {
		au.suppressed++
		n := au.suppressed
		au.mu.Unlock()
		if n == 1 || n%1000 == 0 {
			au.log.Warn("refused commands over the audit rate; counting instead of writing", "suppressed", n)
		}
		return false
	}
	a.SuppressedRefusals, au.suppressed = au.suppressed, 0
	au.mu.Unlock()
	a.Phase, a.OK = PhaseRefused, false
	if err := au.write(a, idParts...); err != nil {
		au.log.Error("cannot write the audit of a refused command", "action", a.Action, "code", a.Code, "err", err.Error())
	}
	return true
}

// write appends one audit event. Its event_id is a UUIDv5 of the server,
// phase and idParts (key and nonce for a signed command), so writing the
// same fact again, after a restart, cannot mint a second id.
func (au *auditor) write(a Audit, idParts ...string) error {
	payload, err := json.Marshal(a)
	if err != nil {
		return err
	}
	raw := json.RawMessage(payload)
	name := strings.Join(append([]string{au.serverID, a.Phase}, idParts...), "\x00")
	id := uuid.NewSHA1(auditNS, []byte(name)).String()
	_, err = au.sp.Append(func(st spool.Stamp) ([]byte, error) {
		ev := events.Event{
			V: events.SchemaVersion, EventID: id, ServerID: au.serverID,
			SpoolID: st.SpoolID, Seq: st.Seq, Type: events.Audit,
			Time: time.Now().UTC().Format(time.RFC3339Nano), BootID: spool.BootID(),
			Audit: &raw,
		}
		return ev.Marshal()
	})
	if err != nil {
		return fmt.Errorf("write audit event: %w", err)
	}
	return nil
}
