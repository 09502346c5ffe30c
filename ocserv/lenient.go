package ocserv

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Kind is the type of a Value in the generic tree.
type Kind uint8

// The kinds of Value, as in JSON.
const (
	Null Kind = iota
	Bool
	Number
	String
	Array
	Object
)

func (k Kind) String() string {
	switch k {
	case Null:
		return "null"
	case Bool:
		return "boolean"
	case Number:
		return "number"
	case String:
		return "string"
	case Array:
		return "array"
	case Object:
		return "object"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Value is one node of the tree Parse builds. Objects keep their members
// in the order occtl printed them, duplicates included: show iroutes in
// ≤ 1.3 prints every user's fields into one object, and only the order of
// the members tells the users apart.
type Value struct {
	Kind   Kind
	Offset int // byte offset of the value's first byte in the input

	Bool bool
	// Text is a String's decoded text, or a Number's literal exactly as
	// printed (so 64-bit counters never pass through a float64).
	Text    string
	Elems   []*Value // Array
	Members []Member // Object
}

// Member is one "key": value pair of an object.
type Member struct {
	Key    string
	Offset int // byte offset of the key
	Value  *Value
}

// Get returns the value of the last member named key. The last one wins
// for duplicates because that is right for the one duplicate that carries
// a different meaning (the "TX" byte counter printed after the "TX" rate
// limit in show users ≤ 1.2.0); see the package documentation.
func (v *Value) Get(key string) (*Value, bool) {
	if v == nil || v.Kind != Object {
		return nil, false
	}
	for i := len(v.Members) - 1; i >= 0; i-- {
		if v.Members[i].Key == key {
			return v.Members[i].Value, true
		}
	}
	return nil, false
}

// Interface converts the tree into plain Go values: nil, bool,
// json.Number, string, []any and map[string]any (last duplicate wins,
// as Get). The result marshals back to valid JSON with encoding/json.
func (v *Value) Interface() any {
	if v == nil {
		return nil
	}
	switch v.Kind {
	case Bool:
		return v.Bool
	case Number:
		return json.Number(v.Text)
	case String:
		return v.Text
	case Array:
		out := make([]any, len(v.Elems))
		for i, e := range v.Elems {
			out[i] = e.Interface()
		}
		return out
	case Object:
		out := make(map[string]any, len(v.Members))
		for _, m := range v.Members {
			out[m.Key] = m.Value.Interface()
		}
		return out
	}
	return nil
}

// Note is one repair or conversion the reader made: what occtl printed
// wrong and what was done about it, with the byte offset in its output.
// Notes are for logs and metrics; the values are usable regardless.
type Note struct {
	Offset int
	Msg    string
}

func (n Note) String() string { return fmt.Sprintf("byte %d: %s", n.Offset, n.Msg) }

// ParseError is output that cannot be understood, at byte Offset of what
// Command printed (Command is empty when the bytes did not come from a
// command run by Occtl).
type ParseError struct {
	Command string
	Offset  int
	Msg     string
}

func (e *ParseError) Error() string {
	cmd := e.Command
	if cmd == "" {
		cmd = "occtl output"
	}
	return fmt.Sprintf("%s: byte %d: %s", cmd, e.Offset, e.Msg)
}

// MaxDepth bounds nesting. occtl never nests deeper than 3; the bound
// keeps hostile or corrupt input from exhausting the stack.
const MaxDepth = 64

// maxNotes bounds the notes of one parse: garbage input could otherwise
// produce one note per byte.
const maxNotes = 100

type parser struct {
	data  []byte
	pos   int
	notes []Note
	// dropped counts notes beyond maxNotes, reported once at the end.
	dropped int
}

// Parse reads occtl's JSON leniently into a tree. It repairs, noting each
// repair: trailing commas and doubled commas, missing commas between
// members or elements, missing closing brackets at the end of the input,
// stray closing brackets, mismatched closers, several top-level values
// (read as one array), unquoted words (true/false/null in any case, numbers,
// anything else as a string), invalid escapes (kept literally), raw control
// characters in strings and invalid UTF-8 (replaced by U+FFFD, as
// encoding/json does). Duplicate keys are kept in order (see Value.Get).
// Anything else is a *ParseError with the byte offset.
func Parse(data []byte) (*Value, []Note, error) {
	p := &parser{data: data}
	v, err := p.document()
	if err != nil {
		return nil, nil, err
	}
	if p.dropped > 0 {
		p.notes = append(p.notes, Note{len(data), fmt.Sprintf("%d further notes left out", p.dropped)})
	}
	return v, p.notes, nil
}

func (p *parser) note(off int, format string, args ...any) {
	if len(p.notes) >= maxNotes {
		p.dropped++
		return
	}
	p.notes = append(p.notes, Note{off, fmt.Sprintf(format, args...)})
}

func (p *parser) fail(off int, format string, args ...any) error {
	return &ParseError{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// isDelim ends an unquoted word.
func isDelim(c byte) bool {
	return isSpace(c) || c == ',' || c == ':' || c == '[' || c == ']' || c == '{' || c == '}' || c == '"'
}

func (p *parser) skipSpace() {
	for p.pos < len(p.data) && isSpace(p.data[p.pos]) {
		p.pos++
	}
}

func (p *parser) document() (*Value, error) {
	if len(p.data) >= 3 && p.data[0] == 0xEF && p.data[1] == 0xBB && p.data[2] == 0xBF {
		p.note(0, "byte order mark skipped")
		p.pos = 3
	}
	var top []*Value
	for {
		p.skipSpace()
		if p.pos >= len(p.data) {
			break
		}
		switch c := p.data[p.pos]; c {
		case ']', '}':
			p.note(p.pos, "stray %q at top level ignored", c)
			p.pos++
			continue
		case ',':
			if len(top) == 0 {
				p.note(p.pos, "comma before the first value ignored")
			}
			p.pos++
			continue
		}
		v, err := p.value(0)
		if err != nil {
			return nil, err
		}
		top = append(top, v)
	}
	switch len(top) {
	case 0:
		return nil, p.fail(p.pos, "no JSON value in the output")
	case 1:
		return top[0], nil
	}
	p.note(top[1].Offset, "%d top-level values read as one array", len(top))
	return &Value{Kind: Array, Offset: top[0].Offset, Elems: top}, nil
}

func (p *parser) value(depth int) (*Value, error) {
	p.skipSpace()
	if p.pos >= len(p.data) {
		return nil, p.fail(p.pos, "value expected, end of output")
	}
	if depth >= MaxDepth {
		return nil, p.fail(p.pos, "nested deeper than %d levels", MaxDepth)
	}
	switch c := p.data[p.pos]; c {
	case '{':
		return p.object(depth + 1)
	case '[':
		return p.array(depth + 1)
	case '"':
		off := p.pos
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		return &Value{Kind: String, Offset: off, Text: s}, nil
	case ',', ':', ']', '}':
		return nil, p.fail(p.pos, "value expected, found %q", c)
	}
	return p.word(), nil
}

// word reads an unquoted token: a literal, a number, or text occtl forgot
// to quote.
func (p *parser) word() *Value {
	off := p.pos
	for p.pos < len(p.data) && !isDelim(p.data[p.pos]) {
		p.pos++
	}
	w := string(p.data[off:p.pos])
	switch w {
	case "true":
		return &Value{Kind: Bool, Offset: off, Bool: true}
	case "false":
		return &Value{Kind: Bool, Offset: off}
	case "null":
		return &Value{Kind: Null, Offset: off}
	}
	if validNumber(w) {
		return &Value{Kind: Number, Offset: off, Text: w}
	}
	switch strings.ToLower(w) {
	case "true":
		p.note(off, "unquoted %q read as true", w)
		return &Value{Kind: Bool, Offset: off, Bool: true}
	case "false":
		p.note(off, "unquoted %q read as false", w)
		return &Value{Kind: Bool, Offset: off}
	case "null":
		p.note(off, "unquoted %q read as null", w)
		return &Value{Kind: Null, Offset: off}
	}
	s := w
	if !utf8.ValidString(s) {
		s = fixUTF8(s)
	}
	p.note(off, "unquoted %q read as a string", clip(s))
	return &Value{Kind: String, Offset: off, Text: s}
}

// validNumber reports whether w is a JSON number:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func validNumber(w string) bool {
	i := 0
	if i < len(w) && w[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(w) && w[i] >= '0' && w[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(w) && w[i] == '0' {
		i++
	} else if digits() == 0 {
		return false
	}
	if i < len(w) && w[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(w) && (w[i] == 'e' || w[i] == 'E') {
		i++
		if i < len(w) && (w[i] == '+' || w[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(w)
}

// str reads a quoted string at p.pos.
func (p *parser) str() (string, error) {
	start := p.pos
	p.pos++ // opening quote
	var b strings.Builder
	ctrlNoted := false
	for {
		if p.pos >= len(p.data) {
			return "", p.fail(start, "string not terminated before the end of output")
		}
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			s := b.String()
			if !utf8.ValidString(s) {
				p.note(start, "invalid UTF-8 in a string replaced by U+FFFD")
				s = fixUTF8(s)
			}
			return s, nil
		case c == '\\':
			p.escape(&b)
		case c < 0x20:
			if !ctrlNoted {
				p.note(p.pos, "raw control character 0x%02x in a string kept", c)
				ctrlNoted = true
			}
			b.WriteByte(c)
			p.pos++
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
}

// escape decodes the escape sequence at p.pos (a backslash). Invalid ones
// are kept literally: occtl does not escape the entries of its lists, so a
// backslash there is the value's own.
func (p *parser) escape(b *strings.Builder) {
	off := p.pos
	if p.pos+1 >= len(p.data) {
		b.WriteByte('\\')
		p.pos++
		return
	}
	c := p.data[p.pos+1]
	if r, ok := simpleEscapes[c]; ok {
		b.WriteByte(r)
		p.pos += 2
		return
	}
	if c == 'u' {
		r, ok := hex4(p.data, p.pos+2)
		if ok {
			p.pos += 6
			if utf16.IsSurrogate(r) {
				// A pair is \uD8xx\uDCxx; a lone half becomes U+FFFD as
				// in encoding/json.
				if p.pos+1 < len(p.data) && p.data[p.pos] == '\\' && p.data[p.pos+1] == 'u' {
					if r2, ok2 := hex4(p.data, p.pos+2); ok2 {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							b.WriteRune(dec)
							p.pos += 6
							return
						}
					}
				}
				b.WriteRune(utf8.RuneError)
				return
			}
			b.WriteRune(r)
			return
		}
	}
	p.note(off, "invalid escape \\%c kept literally", c)
	b.WriteByte('\\')
	p.pos++
}

var simpleEscapes = map[byte]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(data[i:i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	return rune(n), true
}

func (p *parser) object(depth int) (*Value, error) {
	obj := &Value{Kind: Object, Offset: p.pos}
	p.pos++ // '{'
	seen := map[string]bool{}
	first, comma := true, false
	commaAt := 0
	for {
		p.skipSpace()
		if p.pos >= len(p.data) {
			p.note(p.pos, "missing '}' at the end of output (object from byte %d) added", obj.Offset)
			return obj, nil
		}
		c := p.data[p.pos]
		switch c {
		case '}':
			if comma {
				p.note(commaAt, "trailing comma before '}' ignored")
			}
			p.pos++
			return obj, nil
		case ']':
			// The enclosing array closes here; this object lost its '}'.
			p.note(p.pos, "missing '}' before ']' (object from byte %d) added", obj.Offset)
			return obj, nil
		case ',':
			if first || comma {
				p.note(p.pos, "extra comma in an object ignored")
			}
			comma, commaAt = true, p.pos
			p.pos++
			continue
		case ':', '{', '[':
			return nil, p.fail(p.pos, "object key expected, found %q", c)
		}
		if !first && !comma {
			p.note(p.pos, "missing comma between object members added")
		}
		keyOff := p.pos
		var key string
		if c == '"' {
			k, err := p.str()
			if err != nil {
				return nil, err
			}
			key = k
		} else {
			w := p.word()
			if w.Kind != String {
				return nil, p.fail(keyOff, "object key expected, found %s", w.Kind)
			}
			key = w.Text
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.fail(p.pos, "':' expected after key %q", clip(key))
		}
		p.pos++
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		if seen[key] {
			p.note(keyOff, "duplicate key %q: the last value is used", clip(key))
		}
		seen[key] = true
		obj.Members = append(obj.Members, Member{Key: key, Offset: keyOff, Value: v})
		first, comma = false, false
	}
}

func (p *parser) array(depth int) (*Value, error) {
	arr := &Value{Kind: Array, Offset: p.pos, Elems: []*Value{}}
	p.pos++ // '['
	first, comma := true, false
	commaAt := 0
	for {
		p.skipSpace()
		if p.pos >= len(p.data) {
			p.note(p.pos, "missing ']' at the end of output (array from byte %d) added", arr.Offset)
			return arr, nil
		}
		switch p.data[p.pos] {
		case ']':
			if comma {
				p.note(commaAt, "trailing comma before ']' ignored")
			}
			p.pos++
			return arr, nil
		case '}':
			p.note(p.pos, "missing ']' before '}' (array from byte %d) added", arr.Offset)
			return arr, nil
		case ',':
			if first || comma {
				p.note(p.pos, "extra comma in an array ignored")
			}
			comma, commaAt = true, p.pos
			p.pos++
			continue
		}
		if !first && !comma {
			p.note(p.pos, "missing comma between array elements added")
		}
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		arr.Elems = append(arr.Elems, v)
		first, comma = false, false
	}
}

// fixUTF8 replaces each invalid byte by U+FFFD, as encoding/json does
// (strings.ToValidUTF8 would fold a run of them into one).
func fixUTF8(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// clip shortens text quoted in notes and errors.
func clip(s string) string {
	const n = 40
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}
