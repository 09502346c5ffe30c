package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/bucket"
)

// localStatus is what `ctl status` reports offline.
type localStatus = cmdsvc.SpoolStatus

func statusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "local spool backlog and shipper status (offline); with --server/--all, the servers' status over NATS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(g.servers) > 0 || g.all {
				return g.gather("status", nil, printJSONResult)
			}
			return g.localStatus()
		},
	}
}

func (g *globals) localStatus() error {
	path := g.config
	if path == "" {
		path = config.Path("", g.getenv)
	}
	cfg, probs, err := config.Load(path)
	if err != nil {
		return err
	}
	for _, p := range probs {
		fmt.Fprintf(g.stderr, "ctl: config %s: %v\n", path, p)
	}
	st, err := cmdsvc.ReadSpoolStatus(cfg.SpoolDir)
	if err != nil {
		return err
	}
	if cfg.Policy.Enabled {
		r := bucket.ReadReport(cfg.SpoolDir, cfg.Policy.MaxAge, cfg.Policy.Stale, time.Now())
		st.Policy = &r
	}
	out := g.stdout
	if g.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprintf(out, "spool       %s (id %s)\n", clean(st.SpoolDir), clean(orNone(st.SpoolID)))
	fmt.Fprintf(out, "backlog     %d bytes in %d file(s)", st.BacklogBytes, st.Chunks)
	if st.OldestPending != nil {
		fmt.Fprintf(out, ", oldest written %s ago", time.Since(*st.OldestPending).Round(time.Second))
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "fallback    %d file(s) waiting to be numbered\n", st.Fallback)
	fmt.Fprintf(out, "quarantine  %d file(s)\n", st.Quarantined)
	if st.Shipper != nil {
		var one bytes.Buffer // one line: the file is indented
		if json.Compact(&one, st.Shipper) != nil {
			one.Reset()
			one.Write(st.Shipper)
		}
		fmt.Fprintf(out, "shipper     %s\n", clean(one.String()))
	} else {
		fmt.Fprintf(out, "shipper     no status file (%s)\n", clean(st.ShipperError))
	}
	if p := st.Policy; p != nil {
		fmt.Fprintf(out, "policy      verdicts mirror %s", p.State)
		if p.State != "missing" {
			fmt.Fprintf(out, ", %s old", (time.Duration(p.AgeSeconds) * time.Second).String())
		}
		fmt.Fprintf(out, " (max %s; when stale: %s)", p.MaxAge, p.StaleMode)
		if f := p.Follower; f != nil {
			fmt.Fprintf(out, "; follower %s, %d verdict(s)", f.State, f.Entries)
			if f.LastError != "" {
				fmt.Fprintf(out, ", error: %s", f.LastError)
			}
		}
		fmt.Fprintln(out)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none yet"
	}
	return s
}
