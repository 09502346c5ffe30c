package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/config"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// localStatus is what `ctl status` reports: what is on disk now, and the
// shipper's own account of itself if it has written one.
type localStatus struct {
	SpoolDir      string          `json:"spool_dir"`
	SpoolID       string          `json:"spool_id,omitempty"`
	Chunks        int             `json:"chunks"`
	BacklogBytes  int64           `json:"backlog_bytes"`
	OldestPending *time.Time      `json:"oldest_pending,omitempty"`
	Fallback      int             `json:"fallback_files"`
	Quarantined   int             `json:"quarantine_files"`
	Shipper       json.RawMessage `json:"shipper,omitempty"`
	ShipperError  string          `json:"shipper_status_error,omitempty"`
}

func statusCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "", "agent config file (default $"+config.PathEnv+" or "+config.DefaultPath+")")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: status: %v", errUsage, err)
	}
	path := config.Path(*cfgPath, os.Getenv)
	cfg, probs, err := config.Load(path)
	if err != nil {
		return err
	}
	for _, p := range probs {
		fmt.Fprintf(os.Stderr, "ctl: config %s: %v\n", path, p)
	}
	st, err := readStatus(cfg.SpoolDir)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprintf(stdout, "spool       %s (id %s)\n", st.SpoolDir, orNone(st.SpoolID))
	fmt.Fprintf(stdout, "backlog     %d bytes in %d file(s)", st.BacklogBytes, st.Chunks)
	if st.OldestPending != nil {
		fmt.Fprintf(stdout, ", oldest written %s ago", time.Since(*st.OldestPending).Round(time.Second))
	}
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "fallback    %d file(s) waiting to be numbered\n", st.Fallback)
	fmt.Fprintf(stdout, "quarantine  %d file(s)\n", st.Quarantined)
	if st.Shipper != nil {
		fmt.Fprintf(stdout, "shipper     %s\n", st.Shipper)
	} else {
		fmt.Fprintf(stdout, "shipper     no status file (%s)\n", st.ShipperError)
	}
	return nil
}

func readStatus(dir string) (*localStatus, error) {
	s, err := spool.Open(dir, spool.Options{})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	st := &localStatus{SpoolDir: dir, SpoolID: s.Meta().SpoolID}
	chunks, err := s.Chunks()
	if err != nil {
		return nil, err
	}
	state, _ := s.LoadState()
	for _, c := range chunks {
		left := c.Size - state.Progress(c)
		if left <= 0 {
			continue
		}
		st.Chunks++
		st.BacklogBytes += left
		if st.OldestPending == nil || c.ModTime.Before(*st.OldestPending) {
			t := c.ModTime
			st.OldestPending = &t
		}
	}
	fb, err := s.Fallbacks()
	if err != nil {
		return nil, err
	}
	st.Fallback = len(fb)
	q, _ := filepath.Glob(filepath.Join(dir, spool.QuarantineDir, "*.bad"))
	st.Quarantined = len(q)
	b, err := os.ReadFile(filepath.Join(dir, spool.StatusFile))
	switch {
	case err != nil:
		st.ShipperError = err.Error()
	case !json.Valid(b):
		st.ShipperError = "status file is not valid JSON"
	default:
		st.Shipper = json.RawMessage(b)
	}
	return st, nil
}

func orNone(s string) string {
	if s == "" {
		return "none yet"
	}
	return s
}
