package main

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Everything ctl prints for a person comes, in part, from remote parties:
// events (a refused request's arguments are whatever its sender chose),
// the servers' replies, discovery metadata, the status file. A terminal
// obeys control characters in that text (cursor movement, line erase, the
// window title, OSC 52 clipboard writes), so none may reach it raw. Two
// layers:
//
//   - clean, on every remote field: every control character, newlines and
//     tabs included (a field must not forge lines or columns), becomes a
//     visible escape;
//   - safeWriter, around stdout (unless --json) and stderr: whatever
//     reaches it, control characters other than ctl's own '\n' and '\t'
//     are escaped, so a field a future change forgets to clean still
//     cannot drive the terminal.
//
// --json output bypasses both: it is the data, exactly (JSON escapes C0
// controls itself; a consumer decides what to do with the rest).

// unsafeRune reports whether r must not reach a terminal raw: C0 and C1
// controls, DEL, and the bidirectional-text controls that make a line
// display differently from what it says.
func unsafeRune(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// escapeRune writes the visible form of an unsafe rune.
func escapeRune(b *strings.Builder, r rune) {
	switch {
	case r == '\n':
		b.WriteString(`\n`)
	case r == '\t':
		b.WriteString(`\t`)
	case r == '\r':
		b.WriteString(`\r`)
	case r < 0x80:
		fmt.Fprintf(b, `\x%02x`, r)
	default:
		fmt.Fprintf(b, `\u%04x`, r)
	}
}

// clean makes a remote string safe to print as one field.
func clean(s string) string {
	if isClean(s, false) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unsafeRune(r):
			escapeRune(&b, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// isClean reports whether s needs no escaping (layout: '\n' and '\t'
// allowed).
func isClean(s string, layout bool) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			return false
		}
		if unsafeRune(r) && !(layout && (r == '\n' || r == '\t')) {
			return false
		}
		i += n
	}
	return true
}

// safeWriter escapes control characters other than '\n' and '\t' in
// everything written through it. A UTF-8 sequence split across writes is
// held until it is complete.
type safeWriter struct {
	w       io.Writer
	pending []byte
}

func (s *safeWriter) Write(p []byte) (int, error) {
	buf := append(s.pending, p...)
	s.pending = nil
	// Hold an incomplete UTF-8 sequence at the end for the next write.
	if tail := incompleteTail(buf); tail > 0 {
		s.pending = append([]byte(nil), buf[len(buf)-tail:]...)
		buf = buf[:len(buf)-tail]
	}
	str := string(buf)
	if !isClean(str, true) {
		var b strings.Builder
		for i := 0; i < len(str); {
			r, n := utf8.DecodeRuneInString(str[i:])
			switch {
			case r == utf8.RuneError && n <= 1:
				fmt.Fprintf(&b, `\x%02x`, str[i])
			case unsafeRune(r) && r != '\n' && r != '\t':
				escapeRune(&b, r)
			default:
				b.WriteString(str[i : i+n])
			}
			i += n
		}
		str = b.String()
	}
	if _, err := io.WriteString(s.w, str); err != nil {
		return 0, err
	}
	return len(p), nil
}

// flush writes a sequence still held (cut off for good) as escapes.
func (s *safeWriter) flush() {
	if len(s.pending) == 0 {
		return
	}
	var b strings.Builder
	for _, c := range s.pending {
		fmt.Fprintf(&b, `\x%02x`, c)
	}
	s.pending = nil
	io.WriteString(s.w, b.String())
}

// incompleteTail is the length of a UTF-8 sequence cut off at the end of
// b (0 if none): a lead byte, and fewer continuation bytes than it needs.
func incompleteTail(b []byte) int {
	for k := 1; k <= 3 && k <= len(b); k++ {
		c := b[len(b)-k]
		if c&0xc0 == 0x80 {
			continue // a continuation byte: look further back
		}
		need := 0
		switch {
		case c&0xe0 == 0xc0:
			need = 2
		case c&0xf0 == 0xe0:
			need = 3
		case c&0xf8 == 0xf0:
			need = 4
		}
		if need > k {
			return k
		}
		return 0
	}
	return 0
}
