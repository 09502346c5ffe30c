package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/natstest"
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

// ctl's errors never quote the NATS credentials of its configuration.
func TestCtlNeverPrintsNATSSecrets(t *testing.T) {
	const pw, tok = "Pl4ntedPassw0rd", "Pl4ntedT0ken"
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		Users: []*server.User{{Username: "op", Password: "right"}}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready")
	}
	defer srv.Shutdown()
	dir := t.TempDir()
	for _, url := range []string{
		strings.Replace(srv.ClientURL(), "nats://", "nats://op:"+pw+"@", 1),
		"nats://" + tok + "@127.0.0.1:1",
		"nats://op:" + pw + "@127.0.0.1:notaport",
	} {
		cfg := filepath.Join(dir, "ctl.env")
		os.WriteFile(cfg, []byte("NATS_URL="+url+"\nNATS_PASSWORD="+pw+"\nCTL_TIMEOUT=2s\n"), 0o600)
		var out, errb bytes.Buffer
		code := run([]string{"servers", "--config", cfg}, &out, &errb)
		if code == 0 || errb.Len() == 0 {
			t.Fatalf("%s: exit %d, stderr %q", url, code, errb.String())
		}
		for _, sec := range []string{pw, tok} {
			if strings.Contains(out.String()+errb.String(), sec) {
				t.Errorf("ctl printed %s: %s", sec, errb.String())
			}
		}
	}
}

// CTL_INBOX_PREFIX is one subject prefix; ctl's requests use it.
func TestCtlInboxPrefix(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ctl.env")
	os.WriteFile(cfg, []byte("CTL_INBOX_PREFIX=_INBOX_alice\n"), 0o600)
	st, err := loadSettings(cfg, func(string) string { return "" }, func(string) {})
	if err != nil || st.InboxPrefix != "_INBOX_alice" {
		t.Fatalf("%+v %v", st, err)
	}
	for _, bad := range []string{"_INBOX.>", "a,b", "has space", ""} {
		os.WriteFile(cfg, []byte("CTL_INBOX_PREFIX="+bad+"\n"), 0o600)
		if _, err := loadSettings(cfg, func(string) string { return "" }, func(string) {}); err == nil || !strings.Contains(err.Error(), "CTL_INBOX_PREFIX") {
			t.Errorf("CTL_INBOX_PREFIX=%q: %v", bad, err)
		}
	}
	srv := natstest.Run(t)
	os.WriteFile(cfg, []byte("NATS_URL="+srv.ClientURL()+"\nCTL_INBOX_PREFIX=_INBOX_alice\n"), 0o600)
	st, _ = loadSettings(cfg, func(string) string { return "" }, func(string) {})
	nc, err := st.connect(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if in := nc.NewRespInbox(); !strings.HasPrefix(in, "_INBOX_alice.") {
		t.Errorf("inbox %s", in)
	}
}
