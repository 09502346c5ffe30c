// Package bucket owns the verdicts' JetStream key-value bucket
// (docs/policy.md, "The bucket"): its name and settings, its keys, the
// ledger's side that publishes verdicts and heartbeats (Publisher) and the
// host's side that mirrors them into local files for the hook (Follower).
//
// Keys:
//
//	u.<hex of the user name>  one policy.Verdict as JSON, for every user whose
//	                          verdict says something (denied, or a session limit
//	                          applies); no key means allowed
//	heartbeat                 Heartbeat as JSON, rewritten every few seconds
//	                          by the active ledger: the hosts' proof that their
//	                          mirror is current
//
// Only the ledger writes the bucket; hosts only read it. The NATS
// permissions that enforce this are in docs/nats.md's fleet block
// (docs/policy.md, "Permissions").
package bucket

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
)

// DefaultName is the bucket's default name (POLICY_BUCKET on hosts,
// LEDGER_POLICY_BUCKET on the ledger).
const DefaultName = "OCSERV_POLICY"

// HeartbeatKey is the heartbeat's key; UserPrefix starts every user's.
const (
	HeartbeatKey = "heartbeat"
	UserPrefix   = "u."
)

// MaxValue bounds a value the follower accepts (and the bucket's max
// message size when the ledger creates it).
const MaxValue = 64 << 10

// Config is the bucket the ledger creates when it is missing (and it is
// allowed to): one value per key, file storage. The central operator may
// create it otherwise (replicas); the ledger never changes an existing one.
func Config(name string) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:       name,
		Description:  "ocserv-telemetry: the ledger's policy verdict per user and its heartbeat (created by ocserv-telemetry-ledger)",
		History:      1,
		MaxValueSize: MaxValue,
		Storage:      jetstream.FileStorage,
		Replicas:     1,
	}
}

// Key is user's key.
func Key(user string) string { return UserPrefix + hex.EncodeToString([]byte(user)) }

// UserOf is the user a key names ("" and false for another key).
func UserOf(key string) (string, bool) {
	h, ok := strings.CutPrefix(key, UserPrefix)
	if !ok {
		return "", false
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) == 0 {
		return "", false
	}
	return string(b), true
}

// Heartbeat is the heartbeat's value.
type Heartbeat struct {
	// Time is the ledger's clock when it wrote the heartbeat; every
	// verdict decided before it is in the bucket.
	Time time.Time `json:"time"`
	// Instance names the ledger instance that wrote it.
	Instance string `json:"instance,omitempty"`
	// Verdicts counts the user keys the ledger holds in the bucket.
	Verdicts int `json:"verdicts"`
}

// ErrMissing: the bucket does not exist and creating it is not allowed.
var ErrMissing = errors.New("policy bucket does not exist")

// Ensure looks the bucket up, creating it when missing and create is set.
func Ensure(ctx context.Context, js jetstream.JetStream, name string, create bool) (jetstream.KeyValue, bool, error) {
	kv, err := js.KeyValue(ctx, name)
	if err == nil {
		return kv, false, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, false, fmt.Errorf("look up policy bucket %s: %w", name, err)
	}
	if !create {
		return nil, false, fmt.Errorf("%w: %s (and creating it is off)", ErrMissing, name)
	}
	kv, err = js.CreateKeyValue(ctx, Config(name))
	if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		kv, err = js.KeyValue(ctx, name) // another instance made it first
		return kv, false, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("create policy bucket %s: %w", name, err)
	}
	return kv, true, nil
}

// Decode reads a user key's value, checking it is that user's verdict.
func Decode(user string, b []byte) (policy.Verdict, error) {
	var v policy.Verdict
	if len(b) > MaxValue {
		return v, fmt.Errorf("verdict of %q: %d bytes, more than %d", user, len(b), MaxValue)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("verdict of %q does not parse: %w", user, err)
	}
	if v.User != user {
		return v, fmt.Errorf("the value under %q's key is %q's verdict", user, v.User)
	}
	if v.V != policy.VerdictVersion {
		return v, fmt.Errorf("verdict of %q is version %d; this build reads %d", user, v.V, policy.VerdictVersion)
	}
	if err := policy.ValidUser(user); err != nil {
		return v, fmt.Errorf("verdict of %q: %w", user, err)
	}
	return v, nil
}
