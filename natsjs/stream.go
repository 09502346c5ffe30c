package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamSpec is what the shipper expects of the events stream.
type StreamSpec struct {
	Name      string
	Subjects  []string // "<prefix>.events.>"
	DupWindow time.Duration
	Create    bool // NATS_CREATE_STREAMS
}

// EventsSubjects is the stream's subject filter for a prefix.
func EventsSubjects(prefix string) []string { return []string{prefix + ".events.>"} }

// Config is the stream configuration the shipper creates: file storage,
// limits retention, one replica, the duplicate window. The central operator
// may create it differently (replicas, limits); the shipper only warns about
// differences that change its guarantee.
func (s StreamSpec) Config() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        s.Name,
		Description: "ocserv-telemetry session events (created by ocserv-telemetry-shipper)",
		Subjects:    s.Subjects,
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  s.DupWindow,
		Replicas:    1,
	}
}

// EnsureResult says what EnsureStream did.
type EnsureResult struct {
	Created     bool
	Differences []string // settings of an existing stream that differ
}

// ErrStreamMissing means the stream does not exist and creating it is not
// allowed (NATS_CREATE_STREAMS=off).
var ErrStreamMissing = errors.New("events stream does not exist and NATS_CREATE_STREAMS is off")

// EnsureStream creates the stream when missing (and allowed) and otherwise
// compares it with spec. It never updates or deletes a stream: hundreds of
// hosts share it and its owner is the central operator.
func EnsureStream(ctx context.Context, js jetstream.JetStream, spec StreamSpec) (EnsureResult, error) {
	s, err := js.Stream(ctx, spec.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if !spec.Create {
			return EnsureResult{}, fmt.Errorf("stream %s: %w", spec.Name, ErrStreamMissing)
		}
		_, err = js.CreateStream(ctx, spec.Config())
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another host created it between our look and our create.
			return EnsureStream(ctx, js, StreamSpec{Name: spec.Name, Subjects: spec.Subjects, DupWindow: spec.DupWindow})
		}
		if err != nil {
			return EnsureResult{}, fmt.Errorf("create stream %s: %w", spec.Name, err)
		}
		return EnsureResult{Created: true}, nil
	}
	if err != nil {
		return EnsureResult{}, fmt.Errorf("look up stream %s: %w", spec.Name, err)
	}
	return EnsureResult{Differences: Compare(s.CachedInfo().Config, spec)}, nil
}

// Compare lists how an existing stream differs from what the shipper
// expects, in words an operator can act on.
func Compare(have jetstream.StreamConfig, spec StreamSpec) []string {
	var out []string
	for _, want := range spec.Subjects {
		if !SubjectCovered(want, have.Subjects) {
			out = append(out, fmt.Sprintf("subjects %v do not cover %s: events published there are not stored", have.Subjects, want))
		}
	}
	if have.Storage != jetstream.FileStorage {
		out = append(out, fmt.Sprintf("storage is %s, not file: events do not survive a server restart", have.Storage))
	}
	if have.Duplicates != spec.DupWindow {
		out = append(out, fmt.Sprintf("duplicate window is %s, not %s (NATS_DUPLICATE_WINDOW): a retry later than the window is stored twice", have.Duplicates, spec.DupWindow))
	}
	if have.Sealed {
		out = append(out, "the stream is sealed: nothing can be stored")
	}
	if have.NoAck {
		out = append(out, "no_ack is set: publishes are never acknowledged, so nothing is ever deleted from the spool")
	}
	if have.AllowRollup {
		// Permissions are on subjects, not headers: a host allowed to
		// publish its own events could send one (docs/nats.md).
		out = append(out, "rollups are allowed: any host may remove every stored event with one message carrying Nats-Rollup: all; nothing of ocserv-telemetry needs them: nats stream edit "+have.Name+" --no-allow-rollup")
	}
	return out
}

// SubjectCovered reports whether every subject matching want also matches
// one of the filters: whether an existing stream's subjects take in all the
// subjects we publish on.
func SubjectCovered(want string, filters []string) bool {
	w := strings.Split(want, ".")
	for _, f := range filters {
		if subsetOf(w, strings.Split(f, ".")) {
			return true
		}
	}
	return false
}

func subsetOf(w, f []string) bool {
	for i := range w {
		if i >= len(f) {
			return false
		}
		switch {
		case f[i] == ">":
			return true
		case w[i] == ">":
			return false // want is wider than a filter without '>' here
		case f[i] == "*":
			continue
		case w[i] == "*" || w[i] != f[i]:
			return false
		}
	}
	return len(w) == len(f)
}

// EnsureLoop runs EnsureStream until it succeeds or ctx ends, retrying
// with backoff while NATS is unreachable. A missing stream that may not be
// created is logged once and retried (an operator may create it). checked
// is closed after the first attempt that reached a server, whatever its
// outcome: the shipper publishes after that, so that its own creation of
// the stream is not raced, yet an account that may publish but not look at
// streams still delivers.
func EnsureLoop(ctx context.Context, js jetstream.JetStream, spec StreamSpec, log *slog.Logger, checked chan<- struct{}) {
	once := sync.OnceFunc(func() { close(checked) })
	defer once()
	// An operator may create the stream at any time: never give up.
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 200 * time.Millisecond
	b.MaxInterval = 10 * time.Second
	b.Multiplier = 2
	b.MaxElapsedTime = 0
	failures := 0
	var res EnsureResult
	err := backoff.RetryNotify(func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		r, err := EnsureStream(cctx, js, spec)
		if err == nil || !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			once()
		}
		res = r
		return err
	}, backoff.WithContext(b, ctx), func(err error, _ time.Duration) {
		failures++
		if failures == 1 || failures%30 == 0 {
			log.Warn("stream check failed; retrying", "stream", spec.Name, "err", err.Error(), "failures", failures)
		}
	})
	if err != nil {
		return // ctx ended
	}
	if failures > 0 {
		log.Info("stream check recovered", "stream", spec.Name, "failures", failures)
	}
	if res.Created {
		log.Info("stream created", "stream", spec.Name, "subjects", strings.Join(spec.Subjects, ","), "duplicate_window", spec.DupWindow.String())
	}
	for _, d := range res.Differences {
		log.Warn("existing stream differs; leaving it as it is", "stream", spec.Name, "difference", d)
	}
}
