package testbed

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

// These tests cover the parts of the bed that need no root, so that
// `make test` catches a broken parser before `make e2e` runs.

func TestParseOcctlUsersReference(t *testing.T) {
	// Real `occtl -j show users` output of ocserv 1.1.6 (numbers as
	// strings, "(none)" for no group).
	out, err := os.ReadFile("testdata/show-users.json")
	if err != nil {
		t.Fatal(err)
	}
	us, err := parseOcctlUsers(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []OcctlUser{
		{ID: 9114, Username: "alice", Groupname: "", Device: "vpns0", RemoteIP: "127.0.0.1", IPv4: "192.168.250.50", RX: 0, TX: 400},
		{ID: 9113, Username: "bob", Groupname: "staff", Device: "vpns1", RemoteIP: "127.0.0.1", IPv4: "192.168.250.106", RX: 0, TX: 400},
	}
	if !slices.Equal(us, want) {
		t.Fatalf("got %+v\nwant %+v", us, want)
	}
}

func TestParseOcctlUsersNumbersAndErrors(t *testing.T) {
	us, err := parseOcctlUsers([]byte(`[{"ID": 7, "Username": "x", "RX": 12, "TX": "34"}]`))
	if err != nil || len(us) != 1 || us[0].RX != 12 || us[0].TX != 34 {
		t.Fatalf("numbers and numeric strings: %+v, %v", us, err)
	}
	for _, bad := range []string{`[{"Username": "x", "RX": 1, "TX": 1}]`, `[{"ID": 1, "TX": 1}]`, `[{"ID": 1,}]`} {
		if _, err := parseOcctlUsers([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestParseOcctlBansReference(t *testing.T) {
	out, err := os.ReadFile("testdata/show-ip-bans-2.json")
	if err != nil {
		t.Fatal(err)
	}
	ips, err := parseOcctlBans(out)
	if err != nil || !slices.Equal(ips, []string{"127.0.0.1"}) {
		t.Fatalf("got %q, %v", ips, err)
	}
}

func TestEventsReadsSpoolFilesInSeqOrder(t *testing.T) {
	dir := t.TempDir()
	b := &Bed{t: t, spoolDir: dir}
	write := func(rel, data string) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("pending/0001.ndjson", `{"v":1,"seq":2,"type":"connect","session":{"id":5,"username":"bob"}}`+"\n"+
		`{"v":1,"seq":1,"type":"connect","session":{"id":4,"username":"alice"}}`+"\n")
	// The last line has no newline yet: a write in progress, not read.
	write("queue.ndjson", `{"v":1,"seq":3,"type":"disconnect","session":{"id":4,"username":"alice"},"stats":{"bytes_in":9,"bytes_out":8}}`+"\n"+`{"v":1,"seq":4,"ty`)
	write("fallback/x.ndjson", `{"v":1,"type":"host-update","session":{"id":5}}`+"\n")

	evs, err := b.Events()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, string(e.Type)+":"+strings.TrimSpace(Summarize([]events.Event{e})))
	}
	if len(evs) != 4 || evs[0].Seq != 1 || evs[1].Seq != 2 || evs[2].Seq != 3 || evs[3].Seq != 0 {
		t.Fatalf("order: %q", got)
	}
	if n := len(Filter(evs, Match{Type: events.Connect, Username: "alice", ID: 4})); n != 1 {
		t.Errorf("Filter found %d alice connects", n)
	}
	if !Count(Match{Type: events.Disconnect}, 1)(evs) || Count(Match{Type: events.Disconnect}, 2)(evs) {
		t.Errorf("Count disagrees with the spool")
	}

	// A complete line that is not an event is a product defect: reported.
	write("queue.ndjson", "not json\n")
	if _, err := b.Events(); err == nil || !strings.Contains(err.Error(), "queue.ndjson line 1") {
		t.Errorf("invalid line: err = %v", err)
	}
}

func TestShQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/hook":  "'/usr/bin/hook'",
		"/tmp/it's here": `'/tmp/it'\''s here'`,
	} {
		if got := shQuote(in); got != want {
			t.Errorf("shQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestHookBinaryFromEnv(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "hook")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OCSERV_TELEMETRY_HOOK", exe)
	if got, err := HookBinary(); err != nil || got != exe {
		t.Fatalf("HookBinary() = %q, %v", got, err)
	}
	t.Setenv("OCSERV_TELEMETRY_HOOK", filepath.Join(t.TempDir(), "missing"))
	if _, err := HookBinary(); err == nil {
		t.Fatalf("missing hook accepted")
	}
}

func TestHookBinaryNotBuilt(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(root, "e2e")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OCSERV_TELEMETRY_HOOK", "")
	t.Chdir(sub)
	_, err := HookBinary()
	if err == nil || !strings.Contains(err.Error(), "run make build first") {
		t.Fatalf("HookBinary() without bin/hook: %v", err)
	}
	if err := os.Mkdir(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "hook"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := HookBinary(); err != nil || got != filepath.Join(root, "bin", "hook") {
		t.Fatalf("HookBinary() = %q, %v", got, err)
	}
}

func TestWithoutSaveStamps(t *testing.T) {
	in := "# Generated by iptables-save v1.8.9 (nf_tables) on Wed Dec  2 02:05:18 2026\n*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j OCTEL-vpns0\nCOMMIT\n# Completed on Wed Dec  2 02:05:18 2026\n"
	want := "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j OCTEL-vpns0\nCOMMIT\n"
	if got := withoutSaveStamps(in); got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}
