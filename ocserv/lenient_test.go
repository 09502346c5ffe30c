package ocserv

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fixtureDir holds real occtl 1.1.6 output, byte for byte as printed.
const fixtureDir = "../testdata/occtl-1.1.6-json"

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// canon re-encodes a value so trees compare as JSON text.
func canon(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %#v: %v", v, err)
	}
	return string(b)
}

func noteText(ns []Note) string {
	var s []string
	for _, n := range ns {
		s = append(s, n.String())
	}
	return strings.Join(s, "\n")
}

func TestParseRepairs(t *testing.T) {
	cases := []struct {
		name  string
		in    string
		want  string   // canonical JSON of Interface()
		notes []string // substrings, one per expected note, in order
	}{
		{"valid", `{"a": [1, "x", true, null, -2.5e3]}`, `{"a":[1,"x",true,null,-2.5e3]}`, nil},
		{"empty array as occtl prints it", "[\n]\n", `[]`, nil},
		{"trailing comma in object", `[{"a": 1,}]`, `[{"a":1}]`, []string{"byte 8: trailing comma before '}'"}},
		{"trailing comma in array", `[1, 2, ]`, `[1,2]`, []string{"byte 5: trailing comma before ']'"}},
		{"trailing commas of 1.3.0 show sessions", "[\n  {\n    \"Session\": \"a\",\n  },\n\n  {\n    \"Session\": \"b\",\n  },\n]\n",
			`[{"Session":"a"},{"Session":"b"}]`, []string{"trailing comma before '}'", "trailing comma before '}'", "trailing comma before ']'"}},
		{"missing comma between members", `{"a": "1" "b": 2}`, `{"a":"1","b":2}`, []string{"byte 10: missing comma between object members"}},
		{"missing comma between objects", `[{"a": 1} {"a": 2}]`, `[{"a":1},{"a":2}]`, []string{"byte 10: missing comma between array elements"}},
		{"missing closers at EOF", `[{"a": [1, 2`, `[{"a":[1,2]}]`, []string{"missing ']'", "missing '}'", "missing ']'"}},
		{"mismatched closer", `[{"a": 1]`, `[{"a":1}]`, []string{"byte 8: missing '}' before ']'"}},
		{"stray closer at top", `{"a": 1}}`, `{"a":1}`, []string{"byte 8: stray '}'"}},
		{"duplicate key, last wins", `{"TX": "1 KB/sec", "RX": "5", "TX": "20"}`, `{"RX":"5","TX":"20"}`, []string{`byte 30: duplicate key "TX": the last value is used`}},
		{"several top-level values", `{"a": 1} {"a": 2}`, `[{"a":1},{"a":2}]`, []string{"byte 9: 2 top-level values read as one array"}},
		{"True as a word", `{"r": True, "s": FALSE, "n": NULL}`, `{"n":null,"r":true,"s":false}`, []string{`unquoted "True" read as true`, `unquoted "FALSE"`, `unquoted "NULL"`}},
		{"unquoted text", `{"v": (invalid)}`, `{"v":"(invalid)"}`, []string{`byte 6: unquoted "(invalid)" read as a string`}},
		{"bad escape kept", `{"r": "a\qb"}`, `{"r":"a\\qb"}`, []string{`byte 8: invalid escape \q`}},
		{"unicode escapes", `["\u00e9\ud83d\ude00", "\ud800x"]`, "[\"é😀\",\"\uFFFDx\"]", nil},
		{"raw control character", "[\"a\tb\"]", `["a\tb"]`, []string{"raw control character 0x09"}},
		{"invalid UTF-8", "[\"a\xffb\"]", "[\"a\uFFFDb\"]", []string{"invalid UTF-8"}},
		{"doubled comma", `[1,,2]`, `[1,2]`, []string{"byte 3: extra comma"}},
		{"byte order mark", "\xef\xbb\xbf[]", `[]`, []string{"byte order mark"}},
		{"big counter kept exact", `{"RX": 18446744073709551615}`, `{"RX":18446744073709551615}`, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, notes, err := Parse([]byte(c.in))
			if err != nil {
				t.Fatalf("Parse(%q): %v", c.in, err)
			}
			if got := canon(t, v.Interface()); got != c.want {
				t.Errorf("Parse(%q) = %s, want %s", c.in, got, c.want)
			}
			if len(notes) != len(c.notes) {
				t.Fatalf("Parse(%q): %d notes, want %d:\n%s", c.in, len(notes), len(c.notes), noteText(notes))
			}
			for i, n := range notes {
				if !strings.Contains(n.String(), c.notes[i]) {
					t.Errorf("note %d = %q, want it to contain %q", i, n, c.notes[i])
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		in     string
		offset int
		msg    string
	}{
		{"", 0, "no JSON value"},
		{" \n ", 3, "no JSON value"},
		{`{"a" 1}`, 5, `':' expected after key "a"`},
		{`["abc`, 1, "string not terminated"},
		{`{"a": }`, 6, "value expected, found '}'"},
		{`[1, :]`, 4, "value expected, found ':'"},
		{`{: 1}`, 1, "object key expected, found ':'"},
		{`{"a": 1, {}}`, 9, "object key expected, found '{'"},
		{`{1: 2}`, 1, "object key expected, found number"},
		{`{"a":`, 5, "value expected, end of output"},
		{strings.Repeat("[", MaxDepth+5), MaxDepth, "nested deeper than 64"},
	}
	for _, c := range cases {
		_, _, err := Parse([]byte(c.in))
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q): err = %v, want a *ParseError", c.in, err)
			continue
		}
		if pe.Offset != c.offset || !strings.Contains(pe.Msg, c.msg) {
			t.Errorf("Parse(%q): %v, want byte %d and %q", c.in, err, c.offset, c.msg)
		}
		if !strings.HasPrefix(err.Error(), "occtl output: byte ") {
			t.Errorf("error %q does not name the output and the byte", err)
		}
	}
}

// TestParseAgreesWithEncodingJSON checks the lenient reader against the
// standard decoder on every fixture the standard decoder accepts: same
// tree, no notes (nothing to repair). The invalid fixtures must fail the
// standard decoder, or they would not test the repairs.
func TestParseAgreesWithEncodingJSON(t *testing.T) {
	invalid := map[string]bool{
		"show-iroutes.json": true, "show-session.json": true,
		"show-sessions-all.json": true, "show-sessions-valid.json": true,
	}
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	if err != nil || len(files) != 16 {
		t.Fatalf("fixtures: %d files, %v (want the 16 real JSON outputs)", len(files), err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		data := fixture(t, name)
		if json.Valid(data) == invalid[name] {
			t.Errorf("%s: json.Valid = %v, expected the opposite", name, json.Valid(data))
			continue
		}
		v, notes, err := Parse(data)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if invalid[name] {
			if len(notes) == 0 {
				t.Errorf("%s: invalid JSON repaired without a note", name)
			}
			continue
		}
		if len(notes) != 0 {
			t.Errorf("%s: notes on valid JSON:\n%s", name, noteText(notes))
		}
		var want any
		d := json.NewDecoder(strings.NewReader(string(data)))
		d.UseNumber()
		if err := d.Decode(&want); err != nil {
			t.Fatal(err)
		}
		if got := v.Interface(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: tree differs from encoding/json:\n got %s\nwant %s", name, canon(t, got), canon(t, want))
		}
	}
}

// TestParseIRoutesFixtureTree pins what the reader makes of 1.1.6's show
// iroutes, the most broken output: one object, both users' members in
// order, with the repairs noted where they happened.
func TestParseIRoutesFixtureTree(t *testing.T) {
	data := fixture(t, "show-iroutes.json")
	v, notes, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if v.Kind != Object || len(v.Members) != 14 {
		t.Fatalf("root: %s with %d members, want an object with 14", v.Kind, len(v.Members))
	}
	var keys []string
	for _, m := range v.Members {
		keys = append(keys, m.Key)
	}
	want := "ID Username vhost Device IP iRoutes IP ID Username vhost Device IP iRoutes IP"
	if strings.Join(keys, " ") != want {
		t.Errorf("members %q, want %q", keys, want)
	}
	missing := strings.Index(string(data), `"ID":  9113`)
	var sawMissing bool
	dups := 0
	for _, n := range notes {
		if strings.Contains(n.Msg, "missing comma between object members") && n.Offset == missing {
			sawMissing = true
		}
		if strings.Contains(n.Msg, "duplicate key") {
			dups++
		}
	}
	if !sawMissing {
		t.Errorf("no missing-comma note at byte %d:\n%s", missing, noteText(notes))
	}
	// IP (user 1), then ID, Username, vhost, Device, IP, iRoutes, IP of user 2.
	if dups != 8 {
		t.Errorf("%d duplicate-key notes, want 8:\n%s", dups, noteText(notes))
	}
	if ip, _ := v.Get("IP"); ip.Text != "192.168.250.106" {
		t.Errorf("Get(IP) = %q, want the last one", ip.Text)
	}
}

func TestNotesAreBounded(t *testing.T) {
	in := "[" + strings.Repeat("1,,", 500) + "]"
	_, notes, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != maxNotes+1 || !strings.Contains(notes[maxNotes].Msg, "further notes left out") {
		t.Errorf("%d notes, last %q; want %d and a summary", len(notes), notes[len(notes)-1], maxNotes+1)
	}
}
