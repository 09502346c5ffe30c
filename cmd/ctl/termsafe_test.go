package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// Strings a hostile party puts in events and replies: terminal title,
// screen clear, OSC 52 clipboard write, 8-bit CSI, a right-to-left
// override, forged lines and columns, invalid UTF-8.
var hostile = []string{
	"\x1b]0;pwned\x07", "\x1b[2J\x1b[H", "\x1b]52;c;ZXZpbA==\x07", "\u009b31mred", "\u202egnp.exe",
	"line\nforged line", "col\tforged", "\r\x1b[Koverwrite", "\xff\xfe", "\x7f", "ok-name",
}

// unsafeIn returns the first rune a terminal would obey in s, allowing
// '\n' and '\t' when layout; -1 if none.
func unsafeIn(s string, layout bool) rune {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			return utf8.RuneError
		}
		if unsafeRune(r) && !(layout && (r == '\n' || r == '\t')) {
			return r
		}
		i += n
	}
	return -1
}

func hostileEvent(s string) []byte {
	adm := false
	audit := json.RawMessage(mustJSON(map[string]any{"phase": s, "action": s, "key_name": s, "code": s, "args": map[string]string{"user": s}}))
	ev := events.Event{V: 1, EventID: s, ServerID: s, Type: events.Type(s), Time: s, Seq: 1,
		Session: &events.Session{Username: s, IPReal: s, Device: s}, Admitted: &adm, Refusal: s, Audit: &audit}
	b, _ := json.Marshal(ev)
	return b
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Property (fuzzed): whatever remote string reaches ctl's human output,
// in events (tail), replies (tables, errors, write results) or discovery,
// no control character reaches the terminal but ctl's own newlines and
// tabs, and a field never adds a line; with --json the data is exact.
func FuzzTerminalOutput(f *testing.F) {
	for _, s := range hostile {
		f.Add(s, 3)
	}
	f.Fuzz(func(t *testing.T, s string, split int) {
		// clean: one field, nothing unsafe, newlines and tabs included.
		if r := unsafeIn(clean(s), false); r != -1 {
			t.Fatalf("clean(%q) keeps %U", s, r)
		}
		if unsafeIn(s, false) == -1 && clean(s) != s {
			t.Fatalf("clean changed a safe string %q", s)
		}
		// safeWriter: any split of the bytes.
		var out bytes.Buffer
		w := &safeWriter{w: &out}
		if split < 0 {
			split = -split
		}
		k := split % (len(s) + 1)
		w.Write([]byte(s[:k]))
		w.Write([]byte(s[k:]))
		w.flush()
		if r := unsafeIn(out.String(), true); r != -1 {
			t.Fatalf("safeWriter passes %U of %q", r, s)
		}
		if unsafeIn(s, true) == -1 && out.String() != s {
			t.Fatalf("safeWriter changed safe text %q to %q", s, out.String())
		}
		// tail: one line, no control character at all; --json exact.
		data := hostileEvent(s)
		var text, raw bytes.Buffer
		g := &globals{stdout: &safeWriter{w: &text}, rawStdout: &raw, stderr: &bytes.Buffer{}}
		if !g.printEvent("ocserv.events.x.audit", data, "") {
			t.Fatalf("event %s not printed", data)
		}
		line := strings.TrimSuffix(text.String(), "\n")
		if r := unsafeIn(line, false); r != -1 || strings.Contains(line, "\n") {
			t.Fatalf("tail line for %q carries %U: %q", s, r, line)
		}
		g = &globals{json: true, stdout: &raw, rawStdout: &raw, stderr: &bytes.Buffer{}}
		g.printEvent("ocserv.events.x.audit", data, "")
		if !bytes.Equal(raw.Bytes(), append(data, '\n')) {
			t.Fatalf("tail --json changed the event:\n%q\n%q", data, raw.Bytes())
		}
		// Replies: a users table and an error, as text and as JSON.
		users := mustJSON([]ocserv.User{{ID: 7, Username: s, Groupname: s, State: s, Device: s}, {ID: 8, Username: "bob"}})
		rs := []result{{ServerID: s, OK: true, Result: users}, {ServerID: "vpn2", Error: &cmdsvc.ReplyError{Code: s, Message: s}}}
		text.Reset()
		g = &globals{stdout: &safeWriter{w: &text}, rawStdout: &raw, stderr: &bytes.Buffer{}}
		g.report(rs, printUsers)
		if r := unsafeIn(text.String(), true); r != -1 {
			t.Fatalf("reply text for %q carries %U:\n%s", s, r, text.String())
		}
		// == s ==, header, 2 users, blank, == vpn2 ==, error line.
		if n := strings.Count(text.String(), "\n"); n != 7 {
			t.Fatalf("reply text for %q has %d lines, want 7:\n%s", s, n, text.String())
		}
		raw.Reset()
		g = &globals{json: true, stdout: &raw, rawStdout: &raw, stderr: &bytes.Buffer{}}
		g.report(rs, printUsers)
		var back struct {
			Servers []result `json:"servers"`
		}
		if err := json.Unmarshal(raw.Bytes(), &back); err != nil {
			t.Fatal(err)
		}
		var want string // s as it survives JSON (invalid UTF-8 replaced)
		json.Unmarshal(mustJSON(s), &want)
		var bu []ocserv.User
		json.Unmarshal(back.Servers[0].Result, &bu)
		if back.Servers[0].ServerID != want || back.Servers[1].Error.Message != want || len(bu) != 2 || bu[0].Username != want {
			t.Fatalf("--json did not keep %q: %s", want, raw.Bytes())
		}
	})
}

// The defect as found: a NATS user without any operator key sends an
// unsigned request whose arguments carry terminal escapes; its refusal is
// audited with the arguments, shipped, and `ctl tail` printed them raw to
// the operator's terminal. Now tail escapes them, and tail --json prints
// the event exactly as shipped.
func TestTailEscapesRefusedRequest(t *testing.T) {
	b := newCtlBed(t, "read-write")
	nc, err := nats.Connect(b.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OCSERV_EVENTS", Subjects: []string{"ocserv.events.>"}}); err != nil {
		t.Fatal(err)
	}
	evil := "\x1b]0;owned\x07\x1b[2J\u009b31m\u202eevil"
	body := mustJSON(map[string]any{"cmd": map[string]any{"v": 1, "action": "unkick", "args": map[string]string{"user": evil}}})
	m, err := nc.RequestWithContext(ctx, "ocserv.cmd.vpn1.unkick", body)
	if err != nil || !bytes.Contains(m.Data, []byte("unsigned")) {
		t.Fatalf("unsigned request: %v %s", err, m.Data)
	}
	// Ship the spool's audit events as the shipper would.
	f, err := os.Open(filepath.Join(b.spool, spool.QueueFile))
	if err != nil {
		t.Fatal(err)
	}
	var shipped [][]byte
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := append([]byte(nil), sc.Bytes()...)
		if _, err := js.Publish(ctx, "ocserv.events.vpn1.audit", line); err != nil {
			t.Fatal(err)
		}
		shipped = append(shipped, line)
	}
	f.Close()
	if len(shipped) != 1 || !bytes.Contains(shipped[0], []byte(`\u001b]0;owned`)) {
		t.Fatalf("spool: %q", shipped)
	}
	out, errs, code := b.run("", "tail", "--since", "1h", "-n", "1")
	if code != 0 {
		t.Fatalf("tail: %d %s", code, errs)
	}
	if r := unsafeIn(out, true); r != -1 || strings.Count(out, "\n") != 1 {
		t.Fatalf("tail printed %U raw: %q", r, out)
	}
	if !strings.Contains(out, `user=\x1b]0;owned\x07\x1b[2J\u009b31m\u202eevil`) || !strings.Contains(out, "code=unsigned") {
		t.Fatalf("tail line %q", out)
	}
	out, _, code = b.run("", "tail", "--since", "1h", "-n", "1", "--json")
	if code != 0 || out != string(shipped[0])+"\n" {
		t.Fatalf("tail --json: %d\n%q\nwant\n%q", code, out, shipped[0])
	}
}
