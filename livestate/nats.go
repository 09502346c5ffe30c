package livestate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/natsjs"
)

// SnapshotsSubjects is the snapshots stream's subject filter.
func SnapshotsSubjects(prefix string) []string { return []string{prefix + ".snapshots.>"} }

// SnapshotSubject is where one kind of one server's snapshots goes.
func SnapshotSubject(prefix, serverID, kind string) string {
	return prefix + ".snapshots." + serverID + "." + kind
}

// StreamConfig is the snapshots stream the shipper creates when it is
// missing: file storage, MaxMsgsPerSubject snapshots (parts) kept per
// subject, a day at most, a short duplicate window (a part's retry).
func StreamConfig(name, prefix string, history int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              name,
		Description:       "ocserv-telemetry live snapshots (created by ocserv-telemetry-shipper)",
		Subjects:          SnapshotsSubjects(prefix),
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		MaxMsgsPerSubject: int64(history),
		MaxAge:            24 * time.Hour,
		Discard:           jetstream.DiscardOld,
		Duplicates:        2 * time.Minute,
		Replicas:          1,
	}
}

// BucketConfig is the state bucket the shipper creates when it is missing.
func BucketConfig(name string) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      name,
		Description: "ocserv-telemetry: latest state and server_id claim of each server (created by ocserv-telemetry-shipper)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    1,
	}
}

// CompareStream lists how an existing snapshots stream differs from what
// the shipper needs, in words an operator can act on.
func CompareStream(have jetstream.StreamConfig, prefix string) []string {
	var out []string
	want := SnapshotsSubjects(prefix)[0]
	if !natsjs.SubjectCovered(want, have.Subjects) {
		out = append(out, fmt.Sprintf("subjects %v do not cover %s: snapshots published there are not stored", have.Subjects, want))
	}
	if have.MaxMsgsPerSubject <= 0 && have.MaxAge <= 0 && have.MaxMsgs <= 0 && have.MaxBytes <= 0 {
		out = append(out, "no limit (max_msgs_per_subject, max_age, max_msgs or max_bytes): snapshots accumulate forever")
	}
	if have.Sealed {
		out = append(out, "the stream is sealed: nothing can be stored")
	}
	if have.NoAck {
		out = append(out, "no_ack is set: snapshot publishes are never acknowledged and count as failed")
	}
	if have.AllowRollup {
		out = append(out, "rollups are allowed: any host may remove every server's snapshots with one message carrying Nats-Rollup: all: nats stream edit "+have.Name+" --no-allow-rollup")
	}
	return out
}

// CompareBucket lists how an existing state bucket differs.
func CompareBucket(st jetstream.KeyValueStatus, interval time.Duration) []string {
	var out []string
	if ttl := st.TTL(); ttl > 0 && ttl < 3*interval {
		out = append(out, fmt.Sprintf("TTL %s is shorter than three snapshot intervals (%s): claims and state expire between refreshes", ttl, 3*interval))
	}
	if kst, ok := st.(*jetstream.KeyValueBucketStatus); ok && kst.StreamInfo().Config.AllowRollup {
		out = append(out, fmt.Sprintf("rollups are allowed: a NATS user that may write one key of the bucket (any host) can remove every server's keys with one message (Nats-Rollup: all); the shipper never needs them: nats stream edit %s --no-allow-rollup", kst.StreamInfo().Config.Name))
	}
	return out
}

// denyRollups turns rollups off on a bucket the shipper has just
// created. nats.go creates every bucket with them allowed (its Purge
// needs them); a message with the header Nats-Rollup: all on any subject
// of the stream then removes every other message, and NATS permissions,
// which are on subjects only, cannot stop a host that may write its own
// keys from sending one. The shipper puts, updates and deletes, never
// purges.
func denyRollups(ctx context.Context, js jetstream.JetStream, bucket string) error {
	s, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return fmt.Errorf("look up the bucket's stream: %w", err)
	}
	cfg := s.CachedInfo().Config
	if !cfg.AllowRollup {
		return nil
	}
	cfg.AllowRollup = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("turn rollups off on %s: %w", cfg.Name, err)
	}
	return nil
}

// natsSide publishes snapshots and keeps the bucket: stream and bucket
// checked (created when missing and allowed), the claim, the parts.
type natsSide struct {
	o     *Options
	js    jetstream.JetStream
	kv    jetstream.KeyValue
	ready bool

	valueLimit int // the bucket's max value size, 0: none
	claim      claimer
	prevParts  map[string]int // parts of the last snapshot written per kind
}

// ensure looks up (or creates) the stream and the bucket. Differences are
// logged once; nothing existing is ever changed.
func (n *natsSide) ensure(ctx context.Context) error {
	o := n.o
	s, err := n.js.Stream(ctx, o.StreamName)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if !o.Create {
			return fmt.Errorf("snapshots stream %s does not exist and NATS_CREATE_STREAMS is off", o.StreamName)
		}
		_, err = n.js.CreateStream(ctx, StreamConfig(o.StreamName, o.Prefix, o.History))
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("create snapshots stream %s: %w", o.StreamName, err)
		}
		if err == nil {
			o.Log.Info("stream created", "stream", o.StreamName, "subjects", SnapshotsSubjects(o.Prefix)[0], "max_msgs_per_subject", o.History)
		}
	case err != nil:
		return fmt.Errorf("look up snapshots stream %s: %w", o.StreamName, err)
	default:
		for _, d := range CompareStream(s.CachedInfo().Config, o.Prefix) {
			o.Log.Warn("existing stream differs; leaving it as it is", "stream", o.StreamName, "difference", d)
		}
	}
	kv, err := n.js.KeyValue(ctx, o.Bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		if !o.Create {
			return fmt.Errorf("state bucket %s does not exist and NATS_CREATE_STREAMS is off", o.Bucket)
		}
		kv, err = n.js.CreateKeyValue(ctx, BucketConfig(o.Bucket))
		if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			kv, err = n.js.KeyValue(ctx, o.Bucket)
		} else if err == nil {
			// Not cut short by a stop: a shipper stopped between the
			// bucket's creation and this would leave rollups allowed for
			// good (the next ones leave an existing bucket as it is).
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			rerr := denyRollups(dctx, n.js, o.Bucket)
			cancel()
			if rerr != nil {
				// The bucket works; the check below warns about it.
				o.Log.Warn("bucket created, but its rollups are still allowed", "bucket", o.Bucket, "err", rerr.Error())
			} else {
				o.Log.Info("bucket created", "bucket", o.Bucket)
			}
		}
		if err != nil {
			return fmt.Errorf("create state bucket %s: %w", o.Bucket, err)
		}
	case err != nil:
		return fmt.Errorf("look up state bucket %s: %w", o.Bucket, err)
	}
	if st, err := kv.Status(ctx); err == nil {
		for _, d := range CompareBucket(st, o.Interval) {
			o.Log.Warn("existing bucket differs; leaving it as it is", "bucket", o.Bucket, "difference", d)
		}
		if kst, ok := st.(*jetstream.KeyValueBucketStatus); ok {
			if mv := kst.StreamInfo().Config.MaxMsgSize; mv > 0 {
				n.valueLimit = int(mv)
			}
		}
	}
	n.kv = kv
	n.ready = true
	return nil
}

// limit is the largest snapshot part: the server's max payload less room
// for the headers, and the bucket's value limit.
func (n *natsSide) limit() int {
	mp := int64(1 << 20)
	if n.o.MaxPayload != nil {
		if v := n.o.MaxPayload(); v > 0 {
			mp = v
		}
	}
	l := int(mp) - 512 // headers: Nats-Msg-Id and the four snapshot headers fit well within
	if n.valueLimit > 0 && n.valueLimit < l {
		l = n.valueLimit
	}
	return l
}

// publish sends one snapshot's parts to the stream, then writes them to
// the bucket: parts 2..N first, part 1 last, so a reader that finds part 1
// of snapshot X finds the rest of X too (unless a newer snapshot is being
// written, which it sees by the snapshot_id and reads again).
func (n *natsSide) publish(ctx context.Context, kind, snapID string, parts [][]byte) error {
	o := n.o
	subj := SnapshotSubject(o.Prefix, o.ServerID, kind)
	for i, p := range parts {
		m := nats.NewMsg(subj)
		m.Data = p
		m.Header.Set(HdrSnapshotID, snapID)
		m.Header.Set(HdrKind, kind)
		m.Header.Set(HdrPart, strconv.Itoa(i+1))
		m.Header.Set(HdrParts, strconv.Itoa(len(parts)))
		m.Header.Set(jetstream.MsgIDHeader, snapID+"."+strconv.Itoa(i+1))
		if _, err := n.js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("publish %s part %d/%d: %w", subj, i+1, len(parts), err)
		}
	}
	for i := len(parts) - 1; i >= 0; i-- {
		key := partKey(o.ServerID, kind, i+1)
		if _, err := n.kv.Put(ctx, key, parts[i]); err != nil {
			return fmt.Errorf("write %s in bucket %s: %w", key, o.Bucket, err)
		}
	}
	if n.prevParts == nil {
		n.prevParts = map[string]int{}
	}
	for p := len(parts) + 1; p <= n.prevParts[kind]; p++ {
		if err := n.kv.Delete(ctx, partKey(o.ServerID, kind, p)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("remove %s from bucket %s: %w", partKey(o.ServerID, kind, p), o.Bucket, err)
		}
	}
	n.prevParts[kind] = len(parts)
	return nil
}
