package passprompt

import (
	"errors"
	"strings"
	"testing"
)

func TestLine(t *testing.T) {
	for _, c := range []struct {
		in, want string
		err      bool
	}{
		{"s3cret\n", "s3cret", false},
		{"s3cret\r\n", "s3cret", false},
		{"no newline", "no newline", false},
		{"\n", "", false},
		{"first\nsecond\n", "first", false},
		{"", "", true},
	} {
		got, err := Line(strings.NewReader(c.in))
		if (err != nil) != c.err || got != c.want {
			t.Errorf("Line(%q) = %q, %v; want %q, error %v", c.in, got, err, c.want, c.err)
		}
	}
}

// A stream that never ends a line is read only up to the bound.
func TestLineBounded(t *testing.T) {
	got, err := Line(strings.NewReader(strings.Repeat("x", 1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != maxLine {
		t.Fatalf("read %d bytes, want the bound %d", len(got), maxLine)
	}
}

// go test's stdin is not a terminal (it is /dev/null or a pipe): Twice
// must refuse at once rather than wait for a person who is not there.
func TestTwiceWithoutTerminal(t *testing.T) {
	if IsTerminal() {
		t.Skip("stdin is a terminal here; the refusal needs a non-terminal stdin")
	}
	var w strings.Builder
	if _, err := Twice(&w, "password: ", "again: "); !errors.Is(err, ErrNoTerminal) {
		t.Fatalf("Twice without a terminal: %v, want ErrNoTerminal", err)
	}
	if w.Len() != 0 {
		t.Fatalf("prompted %q without a terminal", w.String())
	}
}
