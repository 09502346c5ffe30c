package ocserv

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// seeds are every real capture plus the hand-made quirks, so the fuzzer
// starts from what occtl really prints.
func seeds(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no fixtures: %v", err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		strings.Replace(userQuirk, "QUIRK", `"Limit RX": "1 KB/sec", "TX": "2 KB/sec", "RX": "1", "TX": "2"`, 1),
		strings.Replace(userQuirk, "QUIRK", `"Routes": "defaultroute", "raw_connected_at": 1795325131, "Restricted to routes": True`, 1),
		strings.Replace(userQuirk, "QUIRK", `"User-Agent": "(invalid)", "RX": "(invalid)"`, 1),
		`[{"a": 1,},]`, `[{"a": "\ud800"} {"b": [1 2`, `{"ID": 1, "IP": "1.2.3.4" "ID": 2, "IP": "::1"}`,
		"[ ]", "", "{}", `"x"`, strings.Repeat("[", 70),
	} {
		f.Add([]byte(s))
	}
}

// checkErr: failures are *ParseError with an offset inside the input.
func checkErr(t *testing.T, data []byte, err error) {
	t.Helper()
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *ParseError", err, err)
	}
	if pe.Offset < 0 || pe.Offset > len(data) {
		t.Fatalf("error offset %d outside the %d-byte input: %v", pe.Offset, len(data), err)
	}
}

func checkNotes(t *testing.T, data []byte, notes []Note) {
	t.Helper()
	for _, n := range notes {
		if n.Offset < 0 || n.Offset > len(data) || n.Msg == "" {
			t.Fatalf("bad note %v for a %d-byte input", n, len(data))
		}
	}
}

// FuzzParse: the lenient reader never panics; what it returns always
// re-encodes as valid JSON; and on input encoding/json accepts it builds
// the same tree, with no repairs besides the two encoding/json makes too.
func FuzzParse(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		v, notes, err := Parse(data)
		if err != nil {
			checkErr(t, data, err)
			if json.Valid(data) {
				t.Fatalf("valid JSON refused: %v", err)
			}
			return
		}
		checkNotes(t, data, notes)
		out, merr := json.Marshal(v.Interface())
		if merr != nil || !json.Valid(out) {
			t.Fatalf("tree does not re-encode: %v", merr)
		}
		if !json.Valid(data) {
			return
		}
		d := json.NewDecoder(strings.NewReader(string(data)))
		d.UseNumber()
		var want any
		if err := d.Decode(&want); err != nil {
			t.Fatal(err)
		}
		if got := v.Interface(); !reflect.DeepEqual(got, want) {
			t.Fatalf("differs from encoding/json:\n got %#v\nwant %#v", got, want)
		}
		// encoding/json also accepts duplicate keys (last wins) and invalid
		// UTF-8 in strings (replaced by U+FFFD); anything else is a repair
		// valid JSON never needs.
		for _, n := range notes {
			if !strings.Contains(n.Msg, "duplicate key") && !strings.Contains(n.Msg, "invalid UTF-8") {
				t.Fatalf("repair note on valid JSON: %v", n)
			}
		}
	})
}

// The typed parsers never panic, fail only with a *ParseError, and return
// values that hold their invariants and marshal.
func FuzzParseUsers(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		users, notes, err := ParseUsers(data, time.UTC)
		if err != nil {
			checkErr(t, data, err)
			return
		}
		checkNotes(t, data, notes)
		if users == nil {
			t.Fatal("nil list without an error")
		}
		for _, u := range users {
			if u.ID <= 0 || u.Raw == nil || u.MTU < 0 && u.MTU < -1<<31 || (u.ConnectedAtCoarse && u.ConnectedAt.IsZero()) {
				t.Fatalf("invariant broken: %+v", u)
			}
			if !u.HasCounters && (u.RX != 0 || u.TX != 0) {
				t.Fatalf("counters without HasCounters: %+v", u)
			}
			if u.DefaultRoute && strings.Contains(strings.Join(u.Routes, " "), "defaultroute") {
				t.Fatalf("defaultroute left in Routes: %v", u.Routes)
			}
		}
		if _, err := json.Marshal(users); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, notes, err := ParseStatus(data, time.UTC)
		if err != nil {
			checkErr(t, data, err)
			return
		}
		checkNotes(t, data, notes)
		if s.Raw == nil || s.Online != strings.EqualFold(s.Status, "online") || s.Uptime < 0 {
			t.Fatalf("invariant broken: %+v", s)
		}
		if _, err := json.Marshal(s); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseSessions(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		ss, notes, err := ParseSessions(data, time.UTC)
		if err != nil {
			checkErr(t, data, err)
			return
		}
		checkNotes(t, data, notes)
		for _, s := range ss {
			if s.Session == "" && s.FullSession == "" || s.Raw == nil {
				t.Fatalf("invariant broken: %+v", s)
			}
		}
		if _, err := json.Marshal(ss); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseIRoutes(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, notes, err := ParseIRoutes(data)
		if err != nil {
			checkErr(t, data, err)
			return
		}
		checkNotes(t, data, notes)
		for _, r := range rs {
			if r.ID <= 0 || r.Raw == nil {
				t.Fatalf("invariant broken: %+v", r)
			}
		}
		if _, err := json.Marshal(rs); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseBans(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		bs, notes, err := ParseBans(data, time.UTC)
		if err != nil {
			checkErr(t, data, err)
			return
		}
		checkNotes(t, data, notes)
		for _, b := range bs {
			if !b.IP.IsValid() || b.Raw == nil {
				t.Fatalf("invariant broken: %+v", b)
			}
		}
		if _, err := json.Marshal(bs); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseVersion(f *testing.F) {
	f.Add("OpenConnect server control (occtl) version 1.1.6")
	f.Add("ocserv 1.4.2\nGnuTLS version: 3.7.9")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err != nil {
			return
		}
		// What was found reads back as itself.
		if w, err := ParseVersion(v.String()); err != nil || w != v || v.Major < 0 || v.Minor < 0 || v.Patch < 0 {
			t.Fatalf("ParseVersion(%q) = %v, which reads back as %v, %v", s, v, w, err)
		}
	})
}
