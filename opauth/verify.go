package opauth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
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
	CodeForbidden    = "forbidden" // the key's role does not allow the action
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

// Verifier checks requests. Safe for concurrent use.
type Verifier struct {
	Trusted *Trusted
	Nonces  *NonceCache
	// MaxSkew is the clock difference tolerated between operator and
	// server; MaxValidity the longest exp - iat accepted.
	MaxSkew     time.Duration
	MaxValidity time.Duration
	Now         func() time.Time
}

// Verified is what a refused or accepted request was, as far as it could be
// read; Cmd is nil when the body did not parse.
type Verified struct {
	Cmd     *Command
	Key     TrustedKey
	Trusted bool // Key came from the trusted file
}

// Verify checks the request received on subject for action, which needs
// role need. On success the nonce is recorded (durably) before Verify
// returns, so the command can run.
func (v *Verifier) Verify(subject, action string, need Role, body []byte) (Verified, *Error) {
	var out Verified
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
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
	if err := v.Nonces.Use(c.Key, c.Nonce, exp.Add(v.MaxSkew), now); err != nil {
		switch {
		case errors.Is(err, ErrReplayed):
			return out, refuse(CodeReplayed, "this command (nonce %s) was already received; a command runs once, sign a new one", c.Nonce)
		case errors.Is(err, ErrCacheFull):
			return out, refuse(CodeUnavailable, "too many commands within their validity; try again shortly")
		default:
			return out, refuse(CodeUnavailable, "cannot record the nonce (%v); refusing rather than risking a replay", err)
		}
	}
	return out, nil
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
