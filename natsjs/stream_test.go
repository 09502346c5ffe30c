package natsjs

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
)

func TestCoveredBy(t *testing.T) {
	for _, tc := range []struct {
		want    string
		filters []string
		ok      bool
	}{
		{"ocserv.events.>", []string{"ocserv.events.>"}, true},
		{"ocserv.events.>", []string{"ocserv.>"}, true},
		{"ocserv.events.>", []string{">"}, true},
		{"ocserv.events.>", []string{"ocserv.*.>"}, true},
		{"ocserv.events.>", []string{"ocserv.events.*"}, false},
		{"ocserv.events.>", []string{"ocserv.events.vpn1.>"}, false},
		{"ocserv.events.>", []string{"other.events.>"}, false},
		{"ocserv.events.>", []string{"ocserv.snapshots.>", "ocserv.events.>"}, true},
	} {
		t.Run(tc.want+" in "+strings.Join(tc.filters, ","), func(t *testing.T) {
			if got := SubjectCovered(tc.want, tc.filters); got != tc.ok {
				t.Fatalf("coveredBy = %v, want %v", got, tc.ok)
			}
		})
	}
}

// Against a real server: created when missing; an existing stream that
// differs is reported and left exactly as it was; a missing stream with
// creation off is an error.
func TestEnsureStream(t *testing.T) {
	srv := natstest.Run(t)
	cfg := config.Default().NATS
	cfg.URLs = []string{srv.ClientURL()}
	c, err := Connect(cfg, Options{Name: "test"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	spec := StreamSpec{Name: "EV", Subjects: EventsSubjects("ocserv"), DupWindow: 2 * time.Hour, Create: true}

	if _, err := EnsureStream(ctx, c.JS, StreamSpec{Name: "EV", Subjects: spec.Subjects, DupWindow: time.Hour}); err == nil {
		t.Fatal("missing stream with creation off: no error")
	}
	res, err := EnsureStream(ctx, c.JS, spec)
	if err != nil || !res.Created || len(res.Differences) != 0 {
		t.Fatalf("create: %+v %v", res, err)
	}
	res, err = EnsureStream(ctx, c.JS, spec)
	if err != nil || res.Created || len(res.Differences) != 0 {
		t.Fatalf("second look: %+v %v", res, err)
	}

	// The operator's own stream, different in two ways that matter.
	if _, err := c.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "OP", Subjects: []string{"other.events.vpn1.>"}, Storage: jetstream.MemoryStorage, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	res, err = EnsureStream(ctx, c.JS, StreamSpec{Name: "OP", Subjects: spec.Subjects, DupWindow: 2 * time.Hour, Create: true})
	if err != nil || res.Created || len(res.Differences) != 3 {
		t.Fatalf("differing stream: %+v %v (want subjects, storage and window reported)", res, err)
	}
	s, err := c.JS.Stream(ctx, "OP")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config; got.Duplicates != time.Minute || got.Storage != jetstream.MemoryStorage || got.Subjects[0] != "other.events.vpn1.>" {
		t.Fatalf("the shipper changed the operator's stream: %+v", got)
	}

	// A stream that allows rollups: any host could empty it with one
	// message on its own subject. Said, and left as it is.
	if _, err := c.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "RU", Subjects: []string{"ru.events.>"}, Duplicates: 2 * time.Hour, AllowRollup: true}); err != nil {
		t.Fatal(err)
	}
	res, err = EnsureStream(ctx, c.JS, StreamSpec{Name: "RU", Subjects: EventsSubjects("ru"), DupWindow: 2 * time.Hour})
	if err != nil || len(res.Differences) != 1 || !strings.Contains(res.Differences[0], "rollups are allowed") {
		t.Fatalf("stream allowing rollups: %+v %v", res, err)
	}
}
