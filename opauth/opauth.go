// Package opauth owns the operator-command security layer that sits on top
// of NATS authentication and subject permissions: signing a command with an
// operator's nkey (ed25519, user keys "U…"), verifying it against a file of
// trusted keys with a role each, bounding its validity in time, refusing a
// replay through a nonce cache that survives restarts, and sealing secrets
// (passwords) to the server's curve key (nkeys xkeys).
//
// Wire format (one NATS request body, JSON):
//
//	{"cmd": {"v":1, "subject":"ocserv.cmd.vpn1.kick", "action":"kick",
//	         "args":{"user":"alice"}, "iat":1700000000000, "exp":1700000060000,
//	         "nonce":"…", "key":"U…"},
//	 "sig": "<base64url ed25519 signature>"}
//
// The signature is over the exact bytes of "cmd" as sent, prefixed with a
// domain separator (SignPrefix), so there is no canonical form to get wrong:
// the verifier checks the bytes it received and only then parses them. The
// signed part holds the full subject (with the server_id), the action, every
// argument (sealed ones as ciphertext), issued-at and expiry in Unix
// milliseconds, a random nonce and the key id (the public key itself).
package opauth

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nkeys"
)

// Version is the value of "v" this package signs and accepts.
const Version = 1

// SignPrefix separates these signatures from any other use of the key.
const SignPrefix = "ocserv-telemetry command v1\x00"

// MaxBody bounds a request body; a command is a few hundred bytes.
const MaxBody = 64 << 10

// Roles of a trusted key.
type Role string

const (
	ReadOnly  Role = "read-only"
	ReadWrite Role = "read-write"
	// Policy is the role of the ledger's policy key (docs/policy.md): it
	// may end sessions and keep users out, the actions in PolicyActions,
	// and nothing else, not even a read. A leaked ledger key can then
	// disconnect users, never change a password, a config or a rule.
	Policy Role = "policy"
)

// PolicyActions are the only actions the policy role may run.
var PolicyActions = map[string]bool{"disconnect": true, "kick": true, "unkick": true}

// Allows reports whether a key with role r may run an action that needs need.
func (r Role) Allows(need Role) bool {
	return r == ReadWrite || (r == ReadOnly && need == ReadOnly)
}

// Permits reports whether a key with role r may run action, which needs
// need: the policy role by its own list, the others by Allows.
func (r Role) Permits(action string, need Role) bool {
	if r == Policy {
		return PolicyActions[action]
	}
	return r.Allows(need)
}

// Command is the signed part of a request.
type Command struct {
	V        int               `json:"v"`
	Subject  string            `json:"subject"`
	Action   string            `json:"action"`
	Args     map[string]string `json:"args,omitempty"`
	IssuedAt int64             `json:"iat"` // Unix milliseconds
	Expires  int64             `json:"exp"` // Unix milliseconds
	Nonce    string            `json:"nonce"`
	Key      string            `json:"key"` // the operator's public key ("U…"), also the key id
	// Actor names the person a service key acts for (the web console's
	// logged-in user), so the audit says who asked, not only which key
	// signed. It is signed like every other field; absent for a person's
	// own key. See ValidActor.
	Actor string `json:"actor,omitempty"`
}

// ValidActor accepts an actor: empty, or 1 to 64 bytes of letters, digits
// and . _ @ + - (the console's account names).
func ValidActor(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '@' || r == '+' || r == '-') {
			return false
		}
	}
	return true
}

// Envelope is the request body: the signed bytes and their signature.
type Envelope struct {
	Cmd json.RawMessage `json:"cmd"`
	Sig string          `json:"sig"`
}

// NewCommand fills in a command valid from now for ttl with a fresh nonce.
func NewCommand(subject, action string, args map[string]string, now time.Time, ttl time.Duration) Command {
	var n [18]byte
	rand.Read(n[:])
	return Command{
		V: Version, Subject: subject, Action: action, Args: args,
		IssuedAt: now.UnixMilli(), Expires: now.Add(ttl).UnixMilli(),
		Nonce: base64.RawURLEncoding.EncodeToString(n[:]),
	}
}

// Sign sets c.Key to kp's public key and returns the request body.
func Sign(kp nkeys.KeyPair, c Command) ([]byte, error) {
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("sign command: %w", err)
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return nil, errors.New("sign command: the operator key must be an nkeys user key (seed starting with SU)")
	}
	c.Key = pub
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("sign command: %w", err)
	}
	sig, err := kp.Sign(append([]byte(SignPrefix), b...))
	if err != nil {
		return nil, fmt.Errorf("sign command: %w", err)
	}
	return json.Marshal(Envelope{Cmd: b, Sig: base64.RawURLEncoding.EncodeToString(sig)})
}

// Sealed arguments: the secret itself travels as SealedSuffix-named
// ciphertext, and SealedBy names the one-time curve key it was sealed with.
const (
	SealedSuffix = "_sealed"
	SealedBy     = "sealed_by"
)

// Seal puts secret into args as name+SealedSuffix, sealed to the server's
// public curve key ("X…") with a fresh one-time curve key whose public half
// goes in args[SealedBy]. Call it before Sign: the signature then covers
// the ciphertext. A command carries at most one secret.
func Seal(args map[string]string, name, secret, serverXKey string) error {
	if !nkeys.IsValidPublicCurveKey(serverXKey) {
		return fmt.Errorf("seal %s: %q is not a curve public key (X…)", name, serverXKey)
	}
	if args[SealedBy] != "" {
		return fmt.Errorf("seal %s: a command carries one sealed secret", name)
	}
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		return fmt.Errorf("seal %s: %w", name, err)
	}
	defer kp.Wipe()
	pub, _ := kp.PublicKey()
	ct, err := kp.Seal([]byte(secret), serverXKey)
	if err != nil {
		return fmt.Errorf("seal %s: %w", name, err)
	}
	args[name+SealedSuffix] = base64.RawURLEncoding.EncodeToString(ct)
	args[SealedBy] = pub
	return nil
}

// Open returns the secret args[name+SealedSuffix] sealed to xkp.
func Open(xkp nkeys.KeyPair, args map[string]string, name string) ([]byte, error) {
	ct, ok := args[name+SealedSuffix]
	if !ok {
		return nil, fmt.Errorf("%s must be sealed to the server's curve key (argument %s%s), never sent in clear", name, name, SealedSuffix)
	}
	by := args[SealedBy]
	if !nkeys.IsValidPublicCurveKey(by) {
		return nil, fmt.Errorf("%s: %s is not a curve public key", name, SealedBy)
	}
	b, err := base64.RawURLEncoding.DecodeString(ct)
	if err != nil {
		return nil, fmt.Errorf("%s%s is not base64url", name, SealedSuffix)
	}
	pt, err := xkp.Open(b, by)
	if err != nil {
		return nil, fmt.Errorf("%s cannot be opened with this server's curve key (sealed for another server?)", name)
	}
	return pt, nil
}

// NewCurveSeed makes a server curve key seed ("SX…").
func NewCurveSeed() ([]byte, error) {
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		return nil, err
	}
	return kp.Seed()
}
