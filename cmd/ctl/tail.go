package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

func tailCmd(g *globals) *cobra.Command {
	var types []string
	var user, since string
	var max int
	c := &cobra.Command{
		Use:   "tail",
		Short: "live events from the events stream (filters: --server, --type, --user, --since)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, t := range types {
				if !validType(t) {
					return usageErr("--type %q is not an event type (%s)", t, typeList())
				}
			}
			for _, s := range g.servers {
				if err := config.ValidToken(s); err != nil {
					return usageErr("--server %q: %v", s, err)
				}
			}
			cc := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
			if since != "" {
				t, err := parseSince(since, time.Now())
				if err != nil {
					return usageErr("--since: %v", err)
				}
				cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
			}
			s, err := g.open(false)
			if err != nil {
				return err
			}
			defer s.close()
			prefix := s.st.Agent.SubjectPrefix
			servers, tps := g.servers, types
			if len(servers) == 0 {
				servers = []string{"*"}
			}
			if len(tps) == 0 {
				tps = []string{"*"}
			}
			for _, sv := range servers {
				for _, t := range tps {
					cc.FilterSubjects = append(cc.FilterSubjects, prefix+".events."+sv+"."+t)
				}
			}
			var js jetstream.JetStream
			if d := s.st.Agent.NATS.Domain; d != "" {
				js, err = jetstream.NewWithDomain(s.nc, d)
			} else {
				js, err = jetstream.New(s.nc)
			}
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cons, err := js.OrderedConsumer(ctx, s.st.Agent.NATS.StreamName, cc)
			if err != nil {
				return fmt.Errorf("tail stream %s: %w", s.st.Agent.NATS.StreamName, err)
			}
			it, err := cons.Messages()
			if err != nil {
				return fmt.Errorf("tail stream %s: %w", s.st.Agent.NATS.StreamName, err)
			}
			go func() { <-ctx.Done(); it.Stop() }()
			n := 0
			for {
				m, err := it.Next()
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
					return nil
				}
				if err != nil {
					return fmt.Errorf("tail: %w", err)
				}
				if !g.printEvent(m.Subject(), m.Data(), user) {
					continue
				}
				if n++; max > 0 && n >= max {
					return nil
				}
			}
		},
	}
	c.Flags().StringSliceVarP(&types, "type", "t", nil, "event types ("+typeList()+"), repeatable")
	c.Flags().StringVarP(&user, "user", "u", "", "only events about this user (session user, or the user an audited command named)")
	c.Flags().StringVar(&since, "since", "", "start this long ago (10m) or at this time (RFC 3339) instead of now")
	c.Flags().IntVarP(&max, "count", "n", 0, "stop after this many events (0: until interrupted)")
	return c
}

// printEvent prints one message of the stream: with --json its bytes
// exactly, else one line with every field escaped. It reports whether the
// event was printed (not filtered out by user, and an event at all).
func (g *globals) printEvent(subject string, data []byte, user string) bool {
	var ev events.Event
	if json.Unmarshal(data, &ev) != nil {
		fmt.Fprintf(g.stderr, "ctl: %s: not an event\n", clean(subject))
		return false
	}
	if user != "" && eventUser(&ev) != user {
		return false
	}
	if g.json {
		g.stdout.Write(append(data[:len(data):len(data)], '\n'))
	} else {
		fmt.Fprintln(g.stdout, eventLine(&ev))
	}
	return true
}

func validType(t string) bool {
	for _, x := range events.AllTypes {
		if string(x) == t {
			return true
		}
	}
	return false
}

func typeList() string {
	var s []string
	for _, x := range events.AllTypes {
		s = append(s, string(x))
	}
	return strings.Join(s, ", ")
}

func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (10m) nor an RFC 3339 time", s)
}

// eventUser is the user an event is about.
func eventUser(ev *events.Event) string {
	if ev.Session != nil && ev.Session.Username != "" {
		return ev.Session.Username
	}
	if ev.Audit != nil {
		var a struct {
			Args map[string]string `json:"args"`
		}
		if json.Unmarshal(*ev.Audit, &a) == nil {
			return a.Args["user"]
		}
	}
	return ""
}

// eventLine is one line about an event. Every field is remote data (an
// audit's arguments are whatever a refused request's sender chose), so
// each is escaped (clean): the line never carries a control character.
func eventLine(ev *events.Event) string {
	b := &strings.Builder{}
	fmt.Fprintf(b, "%s %s %-11s", clean(ev.Time), clean(ev.ServerID), clean(string(ev.Type)))
	if ev.Session != nil {
		fmt.Fprintf(b, " user=%s id=%d ip=%s", dash(clean(ev.Session.Username)), ev.Session.ID, dash(clean(ev.Session.IPReal)))
	}
	if ev.Admitted != nil && !*ev.Admitted {
		fmt.Fprintf(b, " refused=%q", ev.Refusal) // %q escapes every non-printable rune
	}
	if ev.Audit != nil {
		var a struct {
			Phase   string            `json:"phase"`
			Action  string            `json:"action"`
			KeyName string            `json:"key_name"`
			Code    string            `json:"code"`
			Args    map[string]string `json:"args"`
		}
		json.Unmarshal(*ev.Audit, &a)
		fmt.Fprintf(b, " %s %s by=%s", clean(a.Phase), clean(a.Action), dash(clean(a.KeyName)))
		if a.Code != "" {
			fmt.Fprintf(b, " code=%s", clean(a.Code))
		}
		if u := a.Args["user"]; u != "" {
			fmt.Fprintf(b, " user=%s", clean(u))
		}
	}
	return b.String()
}
