package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ingest"
	"github.com/ocserv-telemetry/ocserv-telemetry/natsjs"
)

type replayCmd struct{ env }

// Run re-applies the stream from --from to its current end.
func (c *replayCmd) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	cfgPath := fs.String("config", "", "configuration file (default $"+configEnv+" or "+defaultConfigPath+")")
	from := fs.String("from", "", "stream sequence (1 = the start) or RFC 3339 time to replay from (required)")
	dsn := fs.String("db", "", "database to apply to instead of LEDGER_DATABASE (a path or a postgres:// URL); migrated first")
	reset := fs.Bool("reset", false, "empty the database's tables first (rebuild); needs --force")
	force := fs.Bool("force", false, "confirm --reset")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	var o ingest.ReplayOptions
	switch {
	case *from == "":
		return usageError{errors.New("--from SEQ|TIME is required")}
	default:
		if n, err := strconv.ParseUint(*from, 10, 64); err == nil && n > 0 {
			o.FromSeq = n
		} else if t, err := time.Parse(time.RFC3339Nano, *from); err == nil {
			o.FromTime = t
		} else {
			return usageError{fmt.Errorf("--from %q is neither a stream sequence (1, 2, …) nor an RFC 3339 time", *from)}
		}
	}
	if *reset && !*force {
		return usageError{errors.New("--reset empties every table of the database: add --force to confirm")}
	}
	st, probs, err := loadSettings(configPath(*cfgPath, c.getenv))
	if err != nil {
		return err
	}
	warn(c.stderr, probs)
	if *dsn != "" {
		if err := st.databaseFlag(*dsn); err != nil {
			return err
		}
		if _, _, err := migrate(ctx, st.Database); err != nil {
			return err
		}
	}
	db, err := openStore(ctx, st.Database, ledger.ApplyOptions{Retention: st.Retention}, st.StandbyPoll)
	if err != nil {
		return err
	}
	defer db.Close()
	// A running active instance applies the same events concurrently;
	// that is safe (event ids), but the order would mix: replay holds
	// the leader lock so it runs alone.
	held, _, err := db.leader.TryLead(ctx)
	if err != nil {
		return err
	}
	if !held {
		return errors.New("another ledger instance is active on this database: stop it (or replay into another one with --db)")
	}
	defer db.leader.Release()
	if *reset {
		if err := db.Reset(ctx); err != nil {
			return err
		}
		fmt.Fprintln(c.stderr, "ledger: tables emptied")
	}
	log := slog.New(slog.NewTextHandler(c.stderr, nil))
	conn, err := natsjs.Connect(st.Agent.NATS, natsjs.Options{Name: "ocserv-telemetry-ledger replay"}, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	o.JS, o.Stream, o.Prefix, o.Store, o.Batch = conn.JS, st.Agent.NATS.StreamName, st.Agent.SubjectPrefix, db, min(st.Batch, ingest.MaxFetch)
	start := time.Now()
	last := time.Now()
	o.Progress = func(done, seq uint64) {
		if time.Since(last) > 5*time.Second {
			fmt.Fprintf(c.stderr, "ledger: replayed %d messages (stream sequence %d)\n", done, seq)
			last = time.Now()
		}
	}
	res, err := ingest.Replay(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "replayed %d messages up to stream sequence %d in %s: %d applied, %d already applied, %d rejected, %d expired\n",
		res.Messages, res.LastSeq, time.Since(start).Round(time.Millisecond), res.Applied, res.Duplicates, res.Rejected, res.Expired)
	return nil
}
