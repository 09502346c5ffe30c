package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

func TestStatusOffline(t *testing.T) {
	dir := t.TempDir()
	sp := filepath.Join(dir, "spool")
	cfg := filepath.Join(dir, "agent.env")
	os.WriteFile(cfg, []byte("SPOOL_DIR="+sp+"\n"), 0o600)
	s, err := spool.Open(sp, spool.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := s.Append(func(st spool.Stamp) ([]byte, error) {
			return []byte(`{"v":1,"event_id":"e","server_id":"s","seq":1,"type":"connect"}` + "\n"), nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	s.AppendFallback([]byte(`{"v":1}` + "\n"))
	s.Close()

	var out, errb bytes.Buffer
	if code := run([]string{"status", "--config", cfg, "--json"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var st localStatus
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Chunks != 1 || st.BacklogBytes == 0 || st.Fallback != 1 || st.SpoolID == "" || st.Shipper != nil || st.ShipperError == "" {
		t.Errorf("status %+v", st)
	}
	out.Reset()
	if code := run([]string{"status", "--config", cfg}, &out, &errb); code != 0 || !strings.Contains(out.String(), "backlog") {
		t.Errorf("text status: %d %q", code, out.String())
	}
}

func TestUsageErrors(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"bogus"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), `unknown command "bogus"`) {
		t.Errorf("bogus: %d %q", code, errb.String())
	}
	if code := run([]string{"status", "--nope"}, &out, &errb); code != exitUsage {
		t.Errorf("bad flag: %d", code)
	}
	cfg := filepath.Join(t.TempDir(), "agent.env")
	os.WriteFile(cfg, []byte("SPOOL_DIR=/nonexistent/spool\n"), 0o600)
	if code := run([]string{"status", "--config", cfg}, &out, &errb); code != exitFail || !strings.Contains(errb.String(), "/nonexistent/spool") {
		t.Errorf("missing spool: %d %q", code, errb.String())
	}
}
