package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/postgres"
	"github.com/ocserv-telemetry/ocserv-telemetry/natsjs"
)

type statusCmd struct{ env }

// statusReport is what `ledger status` prints.
type statusReport struct {
	Engine        string          `json:"engine"`
	Database      string          `json:"database"`
	Position      ledger.Position `json:"position"`
	Servers       int             `json:"servers"`
	Stream        string          `json:"stream"`
	StreamLastSeq uint64          `json:"stream_last_seq,omitempty"`
	Consumer      string          `json:"consumer"`
	Pending       *uint64         `json:"consumer_pending,omitempty"`
	NATSError     string          `json:"nats_error,omitempty"`
}

// Run reports the database's position against the stream. It works with
// NATS down (the database part), and with the service running or not.
func (c *statusCmd) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	cfgPath := fs.String("config", "", "configuration file (default $"+configEnv+" or "+defaultConfigPath+")")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	st, probs, err := loadSettings(configPath(*cfgPath, c.getenv))
	if err != nil {
		return err
	}
	warn(c.stderr, probs)
	db, err := openStore(ctx, st.Database, ledger.ApplyOptions{}, st.StandbyPoll)
	if err != nil {
		return err
	}
	defer db.Close()
	r := statusReport{Engine: db.Engine(), Database: redactDSN(st.Database), Stream: st.Agent.NATS.StreamName, Consumer: st.Consumer}
	if r.Position, err = db.Position(ctx); err != nil {
		return err
	}
	if l, err := db.Servers(ctx); err == nil {
		r.Servers = len(l)
	}
	conn, err := natsjs.Connect(st.Agent.NATS, natsjs.Options{Name: "ocserv-telemetry-ledger status"}, slog.New(slog.DiscardHandler))
	if err == nil {
		defer conn.Close()
		nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if s, err := conn.JS.Stream(nctx, st.Agent.NATS.StreamName); err == nil {
			r.StreamLastSeq = s.CachedInfo().State.LastSeq
			if cons, err := s.Consumer(nctx, st.Consumer); err == nil {
				if info, err := cons.Info(nctx); err == nil {
					p := info.NumPending + uint64(info.NumAckPending)
					r.Pending = &p
				}
			}
		} else {
			r.NATSError = err.Error()
		}
	} else {
		r.NATSError = err.Error()
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "database\t%s (%s)\n", r.Database, r.Engine)
	fmt.Fprintf(tw, "applied up to\tstream sequence %d\n", r.Position.StreamSeq)
	if !r.Position.LastEventTime.IsZero() {
		fmt.Fprintf(tw, "newest event\t%s\n", r.Position.LastEventTime.Format(time.RFC3339))
	}
	fmt.Fprintf(tw, "events\t%d applied, %d duplicates, %d rejected, %d expired\n", r.Position.Applied, r.Position.Duplicates, r.Position.Rejected, r.Position.Expired)
	fmt.Fprintf(tw, "servers\t%d\n", r.Servers)
	if r.NATSError != "" {
		fmt.Fprintf(tw, "stream\t%s: %s\n", r.Stream, r.NATSError)
	} else {
		fmt.Fprintf(tw, "stream\t%s, last sequence %d\n", r.Stream, r.StreamLastSeq)
		if r.Pending != nil {
			fmt.Fprintf(tw, "consumer\t%s, %d pending\n", r.Consumer, *r.Pending)
		} else {
			fmt.Fprintf(tw, "consumer\t%s: not created yet\n", r.Consumer)
		}
	}
	return tw.Flush()
}

// redactDSN is LEDGER_DATABASE as status prints it: a PostgreSQL URL
// without its password (in the userinfo or a query parameter).
func redactDSN(dsn string) string {
	if !isPostgres(dsn) {
		return dsn
	}
	return postgres.Redact(dsn)
}
