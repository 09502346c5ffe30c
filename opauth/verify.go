package opauth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nkeys"
	"golang.org/x/time/rate"
)

// Refusal codes. They are stable: ctl maps them to exit codes, and audit
// events carry them.
const (
	CodeMalformed    = "malformed"     // not a signed command envelope
	CodeUnsigned     = "unsigned"      // no signature or no key
	CodeUnknownKey   = "unknown_key"   // the key is not in the trusted file
	CodeBadSignature = "bad_signature" // the signature does not match the bytes
	CodeWrongSubject = "wrong_subject" // signed for another subject, server or action
	CodeExpired      = "expired"       // past its expiry (plus skew)
	CodeNotYetValid  = "not_yet_valid" // issued in the future (beyond skew)
	CodeTooLong      = "validity_too_long"
	CodeReplayed     = "replayed"
	CodeForbidden    = "forbidden"    // the key's role does not allow the action
	CodeRateLimited  = "rate_limited" // the key sent more commands than its rate allows
	CodeOverQuota    = "over_quota"   // the key (or its role) holds its quota of live commands
	CodeUnavailable  = "unavailable"
)

// Error is a refusal: a code and a message a person can act on.
type Error struct {
	Code string
	Msg  string
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

func refuse(code, format string, a ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, a...)}
}

// Default per-key rate: commands per second and burst.
const (
	DefaultKeyRate  = 10
	DefaultKeyBurst = 20
)

// Verifier checks requests. Safe for concurrent use.
type Verifier struct {
	Trusted *Trusted
	Nonces  *NonceCache
	// MaxSkew is the clock difference tolerated between operator and
	// server; MaxValidity the longest exp - iat accepted.
	MaxSkew     time.Duration
	MaxValidity time.Duration
	// KeyRate (commands per second) and KeyBurst bound what one trusted
	// key may send; each key has its own bucket, so one key's flood
	// never uses another's. Zero means the defaults.
	KeyRate  float64
	KeyBurst int
	Now      func() time.Time

	limMu    sync.Mutex
	limiters map[string]*rate.Limiter
}

// Verified is what a refused or accepted request was, as far as it could be
// read; Cmd is nil when the body did not parse.
type Verified struct {
	Cmd     *Command
	Key     TrustedKey
	Trusted bool // Key came from the trusted file
}

// Verify is Check then Consume, for callers with no checks of their own
// between them.
func (v *Verifier) Verify(subject, action string, need Role, body []byte) (Verified, *Error) {
	out, err := v.Check(subject, action, need, body)
	if err != nil {
		return out, err
	}
	return out, v.Consume(out)
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Check runs every check of the request received on subject for action
// (which needs role need) except the last: recording its nonce. In order:
// envelope, trusted key, signature, subject and action, validity in time,
// role, replay (a lookup that records nothing), and the key's rate. Only
// a request signed by a trusted key and not yet seen is charged to that
// key's rate, so neither a forger nor a replayer can spend it. The caller
// checks its own arguments, then calls Consume: a refused command never
// uses up a nonce or the cache's room.
func (v *Verifier) Check(subject, action string, need Role, body []byte) (Verified, *Error) {
	var out Verified
	now := v.now()
	if len(body) > MaxBody {
		return out, refuse(CodeMalformed, "request of %d bytes is larger than %d", len(body), MaxBody)
	}
	var env Envelope
	if err := json.Unmarshal(body, &env); err != nil || len(env.Cmd) == 0 {
		return out, refuse(CodeUnsigned, "the request is not a signed command; send it with ctl, or sign it as docs/commands.md describes")
	}
	var c Command
	if err := json.Unmarshal(env.Cmd, &c); err != nil {
		return out, refuse(CodeMalformed, "the signed command does not parse: %v", err)
	}
	out.Cmd = &c
	if env.Sig == "" || c.Key == "" {
		return out, refuse(CodeUnsigned, "the command has no signature or no key; sign it with an operator key (ctl keygen)")
	}
	if c.V != Version {
		return out, refuse(CodeMalformed, "command format v%d; this server speaks v%d", c.V, Version)
	}
	if !nkeys.IsValidPublicUserKey(c.Key) {
		return out, refuse(CodeUnknownKey, "key %q is not an nkeys user public key", short(c.Key))
	}
	k, ok, err := v.Trusted.Lookup(c.Key)
	if err != nil {
		return out, refuse(CodeUnavailable, "the server cannot read its trusted keys (%v); nobody is trusted until that is fixed", err)
	}
	if !ok {
		return out, refuse(CodeUnknownKey, "key %s is not in this server's trusted keys file; add \"<role> %s <name>\" there", c.Key, c.Key)
	}
	out.Key, out.Trusted = k, true
	sig, err := base64.RawURLEncoding.DecodeString(env.Sig)
	if err != nil {
		return out, refuse(CodeBadSignature, "the signature is not base64url")
	}
	pk, err := nkeys.FromPublicKey(c.Key)
	if err != nil {
		return out, refuse(CodeUnknownKey, "key %s: %v", c.Key, err)
	}
	if err := pk.Verify(append([]byte(SignPrefix), env.Cmd...), sig); err != nil {
		return out, refuse(CodeBadSignature, "the signature does not match the command: it was changed after signing or signed with another key")
	}
	if c.Subject != subject || c.Action != action {
		return out, refuse(CodeWrongSubject, "the command was signed for %s (action %s), not for %s", c.Subject, c.Action, subject)
	}
	iat, exp := time.UnixMilli(c.IssuedAt), time.UnixMilli(c.Expires)
	switch {
	case exp.Before(iat):
		return out, refuse(CodeMalformed, "the command expires before it was issued")
	case exp.Sub(iat) > v.MaxValidity:
		return out, refuse(CodeTooLong, "the command is valid for %s; this server accepts at most %s", exp.Sub(iat), v.MaxValidity)
	case iat.After(now.Add(v.MaxSkew)):
		return out, refuse(CodeNotYetValid, "the command was issued %s in the future; check the clocks (tolerated skew %s)", iat.Sub(now).Round(time.Millisecond), v.MaxSkew)
	case now.After(exp.Add(v.MaxSkew)):
		return out, refuse(CodeExpired, "the command expired %s ago; send it again (and check the clocks if this repeats)", now.Sub(exp).Round(time.Millisecond))
	}
	if !k.Role.Permits(action, need) {
		if k.Role == Policy {
			return out, refuse(CodeForbidden, "key %s (%s) has the policy role, which may only disconnect, kick and unkick; not %s", short(c.Key), k.Name, action)
		}
		return out, refuse(CodeForbidden, "key %s (%s) is %s; action %s needs %s", short(c.Key), k.Name, k.Role, action, need)
	}
	if !validNonce(c.Nonce) {
		return out, refuse(CodeMalformed, "the nonce must be 16 to 64 base64url characters")
	}
	if !ValidActor(c.Actor) {
		return out, refuse(CodeMalformed, "actor %q is not 1 to 64 letters, digits or . _ @ + -", short(c.Actor))
	}
	if v.Nonces.Seen(c.Key, c.Nonce, now) {
		return out, replayed(c.Nonce)
	}
	if !v.limiter(c.Key).AllowN(now, 1) {
		r, b := v.rate()
		return out, refuse(CodeRateLimited, "key %s (%s) sent more than %g commands per second (burst %d); slow down and send it again", short(c.Key), k.Name, r, b)
	}
	return out, nil
}

// Consume records the nonce of a request Check accepted (durably, before
// it returns), so the command can run. It is the last step: whatever else
// refuses the command must come before it.
func (v *Verifier) Consume(ver Verified) *Error {
	c := ver.Cmd
	if c == nil || !ver.Trusted {
		return refuse(CodeUnavailable, "internal error: consuming an unverified command")
	}
	now := v.now()
	err := v.Nonces.Use(c.Key, c.Nonce, ver.Key.Role, time.UnixMilli(c.Expires).Add(v.MaxSkew), now)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrReplayed):
		return replayed(c.Nonce)
	case errors.Is(err, ErrKeyQuota):
		return refuse(CodeOverQuota, "key %s (%s) already has %d commands within their validity; send it again when some have expired, or sign with shorter validity", short(c.Key), ver.Key.Name, v.Nonces.lim.PerKey)
	case errors.Is(err, ErrRoleQuota):
		return refuse(CodeOverQuota, "the %s keys together have %d commands within their validity; send it again when some have expired", ver.Key.Role, v.Nonces.lim.PerRole)
	default:
		return refuse(CodeUnavailable, "cannot record the nonce (%v); refusing rather than risking a replay", err)
	}
}

func replayed(nonce string) *Error {
	return refuse(CodeReplayed, "this command (nonce %s) was already received; a command runs once, sign a new one", nonce)
}

func (v *Verifier) rate() (float64, int) {
	r, b := v.KeyRate, v.KeyBurst
	if r <= 0 {
		r = DefaultKeyRate
	}
	if b <= 0 {
		b = DefaultKeyBurst
	}
	return r, b
}

// maxIdleLimiters bounds the limiters kept: one per trusted key that sent
// something (the file decides how many there are), and a full bucket is
// the same as none, so idle ones are dropped past this.
const maxIdleLimiters = 1024

// limiter is key's token bucket, made at its first command.
func (v *Verifier) limiter(key string) *rate.Limiter {
	v.limMu.Lock()
	defer v.limMu.Unlock()
	if l, ok := v.limiters[key]; ok {
		return l
	}
	if v.limiters == nil {
		v.limiters = map[string]*rate.Limiter{}
	}
	r, b := v.rate()
	if len(v.limiters) >= maxIdleLimiters {
		for k, l := range v.limiters {
			if l.Tokens() >= float64(l.Burst()) {
				delete(v.limiters, k)
			}
		}
	}
	l := rate.NewLimiter(rate.Limit(r), b)
	v.limiters[key] = l
	return l
}

func validNonce(n string) bool {
	if len(n) < 16 || len(n) > 64 {
		return false
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func short(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
