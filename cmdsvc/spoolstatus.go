package cmdsvc

import (
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/policy/bucket"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// SpoolStatus is what is on disk in a spool now, and the shipper's own
// account of itself if it has written one: `ctl status` offline on the VPN
// host, and the spool-status action over NATS.
type SpoolStatus struct {
	SpoolDir      string          `json:"spool_dir"`
	SpoolID       string          `json:"spool_id,omitempty"`
	Chunks        int             `json:"chunks"`
	BacklogBytes  int64           `json:"backlog_bytes"`
	OldestPending *time.Time      `json:"oldest_pending,omitempty"`
	Fallback      int             `json:"fallback_files"`
	Quarantined   int             `json:"quarantine_files"`
	Shipper       json.RawMessage `json:"shipper,omitempty"`
	ShipperError  string          `json:"shipper_status_error,omitempty"`
	// Policy is the verdicts mirror's state, on hosts with POLICY=on.
	Policy *bucket.Report `json:"policy,omitempty"`
}

// ReadSpoolStatus reads the spool at dir without changing it.
func ReadSpoolStatus(dir string) (*SpoolStatus, error) {
	s, err := spool.Open(dir, spool.Options{})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	st := &SpoolStatus{SpoolDir: dir, SpoolID: s.Meta().SpoolID}
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
