package ledger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/valyala/fastjson"
)

// parseWire fills w from data as jsonv2.Unmarshal(data, w) does (the
// reference FuzzWireMatchesJSONv2 compares it with), without reflection:
// fastjson parses the document into a tree and the wire types are filled
// from it member by member. jsonv2's rules, kept here: names match
// exactly; a name twice in any object of the document is an error;
// unknown members are ignored; a member of another JSON type than its
// field's is an error; null gives the zero value (a nil pointer, slice or
// map; jsontext.Value keeps the text "null"); numbers must fit their
// field exactly (no sign for unsigned ones, no fraction, no exponent);
// strings hold no invalid surrogate escapes; nothing may follow the
// top-level value, which must be an object or null.
//
// One difference, on the side of refusing: fastjson refuses values nested
// more than 300 deep (fastjson.MaxDepth), jsonv2 only past 10000. No event
// nests beyond four.
//
// data must be valid UTF-8 (Decode checks it first; jsonv2 refuses
// anything else). The strings w gets are copies, all in one new
// allocation: nothing refers to the parser's memory, which the next parse
// reuses.
func parseWire(data []byte, w *wire) error {
	st := wireStates.Get().(*wireState)
	defer st.put()
	d := &st.d
	*d = walker{data: data, st: st}
	// fastjson's Parse is lenient: it takes control characters in
	// strings, unknown escapes, lone surrogate escapes (unescaped as it
	// can), and numbers such as NaN, 1-2 or 01. A document with no
	// backslash and no control character before its trailing spaces has
	// no string Parse gets wrong, and the walk holds each number to
	// JSON's grammar. Any other document goes through jsontext's decoder
	// first, which refuses what jsonv2's tokenizer does. (Not fastjson's
	// Validate: it misses a control character before an escape in the
	// same string, as FuzzWireMatchesJSONv2 found.)
	//
	// So does a long document with many brackets: Parse, where it fails,
	// quotes the rest of the document and wraps that in one more message
	// for each level the fault is nested in, a cost of the depth times
	// the length (a megabyte nested 300 deep took most of a second).
	// jsontext's decoder is linear, and after it Parse meets only valid
	// JSON.
	brackets := bytes.Count(data, []byte{'{'}) + bytes.Count(data, []byte{'['})
	if !plainStrings(data) || min(brackets, fastjson.MaxDepth)*len(data) > maxErrorCost {
		if err := jsontextCheck(data); err != nil {
			return err
		}
		d.validated = true
	}
	v, err := st.p.ParseBytes(data)
	if err != nil {
		return syntaxError(err)
	}
	switch v.Type() {
	case fastjson.TypeNull:
		*w = wire{}
		return nil
	case fastjson.TypeObject:
	default:
		return typeError(v, "an object", "")
	}
	// The strings' bytes go into one buffer, and each field gets its
	// part. Half the document's length holds an event's strings (its
	// names, spaces and numbers are the rest); a document with more
	// grows it.
	d.strs.Grow(len(data) / 2)
	o, _ := v.Object()
	walk(d, o, &st.w, "", eventMembers)
	*w = st.w
	return d.err
}

// maxErrorCost bounds brackets × length for a document that goes to
// Parse unchecked: 2 KiB with 16 brackets, 32 KiB with one, about three
// times the most the producers' events have (a connect with its policy).
// At the bound, a failing Parse costs a fraction of a millisecond.
const maxErrorCost = 1 << 15

// jsontextCheck goes over data with jsontext's decoder, which refuses
// what jsonv2's tokenizer does: bad syntax or escapes, a name twice,
// anything after the value.
func jsontextCheck(data []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(data))
	if _, err := dec.ReadValue(); err != nil {
		return err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		if err == nil {
			err = errors.New("data after the top-level value")
		}
		return err
	}
	return nil
}

// wireState is what a parse reuses, pooled: Decode runs on several
// goroutines, a fastjson.Parser serves one at a time, and a pooled one
// keeps the memory it grew.
type wireState struct {
	p   fastjson.Parser
	num []byte // a number's text
	// The walk and the wire it fills: here, not on parseWire's stack,
	// since the member tables' fillers, called through func values, make
	// escape analysis move both to the heap on every parse.
	d walker
	w wire
}

var wireStates = sync.Pool{New: func() any { return new(wireState) }}

// put lets go of what the parse read and gave out, and returns st.
func (st *wireState) put() {
	st.d, st.w = walker{}, wire{}
	wireStates.Put(st)
}

// plainStrings: data has no backslash, and no byte below 0x20 but in the
// spaces after its last value. In such a document every string is its
// raw bytes (no escape, no control character): the strings Parse reads
// as jsonv2 does. Control characters eight bytes at a time (a loop byte
// by byte was a sixth of parseWire's time): the test is exact for
// whether any byte of the word is below 0x20.
func plainStrings(data []byte) bool {
	end := len(data)
	for end > 0 && (data[end-1] == ' ' || data[end-1] == '\n' || data[end-1] == '\t' || data[end-1] == '\r') {
		end--
	}
	b := data[:end]
	if bytes.IndexByte(b, '\\') >= 0 {
		return false
	}
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; len(b) >= 8; b = b[8:] {
		x := binary.LittleEndian.Uint64(b)
		if (x-0x20*ones)&^x&highs != 0 { // a byte below 0x20
			return false
		}
	}
	for _, c := range b {
		if c < 0x20 {
			return false
		}
	}
	return true
}

// syntaxError caps fastjson's message, which quotes the rest of the
// document after the fault, and Decode's reason is stored.
func syntaxError(err error) error {
	s := err.Error()
	if len(s) > 160 {
		cut := 160
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return errors.New(s)
}

func typeError(v *fastjson.Value, want, path string) error {
	return fmt.Errorf("cannot take a JSON %s for %s %q", v.Type(), want, path)
}

// walker fills the wire types from fastjson's tree; the first error
// stops it.
type walker struct {
	data      []byte
	st        *wireState
	validated bool // by jsontext's decoder: every number is JSON's
	err       error
	// strs holds the strings' bytes, copied from the parser's memory.
	// A strings.Builder never writes again what it has given out, so
	// each string taken from it stays as it was.
	strs strings.Builder
}

// keep copies b out of the parser's memory into *dst.
func (d *walker) keep(dst *string, b []byte) {
	if len(b) == 0 {
		*dst = ""
		return
	}
	n := d.strs.Len()
	d.strs.Write(b)
	*dst = d.strs.String()[n:]
}

func (d *walker) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// names tells whether a member's name came before in its object. Known
// members have a bit each; other names are compared with the others.
type names struct {
	known uint32
	few   [8][]byte // they point into the parser's memory: only during the walk
	n     int
	many  map[string]struct{}
}

func (s *names) knownOnce(bit uint) bool {
	if s.known&(1<<bit) != 0 {
		return false
	}
	s.known |= 1 << bit
	return true
}

func (s *names) otherOnce(k []byte) bool {
	if s.many != nil {
		if _, ok := s.many[string(k)]; ok {
			return false
		}
		s.many[string(k)] = struct{}{}
		return true
	}
	for _, p := range s.few[:s.n] {
		if bytes.Equal(p, k) {
			return false
		}
	}
	if s.n < len(s.few) {
		s.few[s.n] = k
		s.n++
		return true
	}
	s.many = make(map[string]struct{}, 2*len(s.few))
	for _, p := range s.few {
		s.many[string(p)] = struct{}{}
	}
	s.many[string(k)] = struct{}{}
	return true
}

func (d *walker) duplicate(k []byte, path string) {
	d.fail(fmt.Errorf("duplicate object member name %q within %q", k, path))
}

// known: the member's bit, once; false (and an error) on its second time.
func (d *walker) known(s *names, bit uint, k []byte, path string) bool {
	if !s.knownOnce(bit) {
		d.duplicate(k, path)
		return false
	}
	return true
}

// other: a member the wire types do not have. Its value is not taken, but
// jsonv2 still refuses a name twice anywhere in it.
func (d *walker) other(s *names, k []byte, v *fastjson.Value, path string) {
	if !s.otherOnce(k) {
		d.duplicate(k, path)
		return
	}
	d.unique(v, path)
}

// unique checks that no object in v names a member twice.
func (d *walker) unique(v *fastjson.Value, path string) {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		var s names
		o.Visit(func(k []byte, v *fastjson.Value) {
			if d.err == nil {
				d.other(&s, k, v, path)
			}
		})
	case fastjson.TypeArray:
		a, _ := v.Array()
		for _, e := range a {
			d.unique(e, path)
		}
	case fastjson.TypeNumber:
		d.number(v)
	}
}

// number: whether v's text is a JSON number (and an error if not). Parse
// takes any run of digits, signs, dots and e's, and NaN or Inf; unless
// jsontext went over the whole document, each number is checked here:
// the plain integers events carry at a glance, any other by fastjson's
// Validate (of numbers it is exact).
func (d *walker) number(v *fastjson.Value) bool {
	if d.validated {
		return true
	}
	d.st.num = v.MarshalTo(d.st.num[:0]) // its text, raw
	t := d.st.num
	if plainInteger(t) || fastjson.ValidateBytes(t) == nil {
		return true
	}
	d.fail(fmt.Errorf("%s is not a JSON number", short(string(t))))
	return false
}

// plainInteger: t is -?(0|[1-9][0-9]*).
func plainInteger(t []byte) bool {
	if len(t) > 0 && t[0] == '-' {
		t = t[1:]
	}
	if len(t) == 0 || t[0] == '0' && len(t) > 1 {
		return false
	}
	for _, c := range t {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// object is v's object, nil for null (and for an error: another type).
func (d *walker) object(v *fastjson.Value, path string) *fastjson.Object {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		return o
	case fastjson.TypeNull:
	default:
		d.fail(typeError(v, "an object", path))
	}
	return nil
}

// The members' fillers take where the member is, its object's path and
// its name, and join them only for an error.

func pointer(at string, k []byte) string { return at + "/" + string(k) }

func (d *walker) str(v *fastjson.Value, dst *string, at string, k []byte) {
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		d.keep(dst, b) // b is the parser's
	case fastjson.TypeNull:
		*dst = ""
	default:
		d.fail(typeError(v, "a string", pointer(at, k)))
	}
}

func (d *walker) boolean(v *fastjson.Value, dst *bool, at string, k []byte) {
	switch v.Type() {
	case fastjson.TypeTrue:
		*dst = true
	case fastjson.TypeFalse, fastjson.TypeNull:
		*dst = false
	default:
		d.fail(typeError(v, "a boolean", pointer(at, k)))
	}
}

func (d *walker) boolPtr(v *fastjson.Value, dst **bool, at string, k []byte) {
	nullable(v, dst, func(b *bool) { d.boolean(v, b, at, k) })
}

// nullable: null is a nil *dst, any other value a new T filled by fill
// (which reports a wrong type).
func nullable[T any](v *fastjson.Value, dst **T, fill func(*T)) {
	if v.Type() == fastjson.TypeNull {
		*dst = nil
		return
	}
	x := new(T)
	fill(x)
	*dst = x
}

// The numbers: each is held to JSON's grammar (number), so fastjson's
// integer parsers, which take digits after an optional minus and nothing
// else and refuse what overflows, refuse what jsonv2 does: a fraction or
// an exponent (1.0, 1e3), a minus for an unsigned field (-0 too), a value
// beyond the field's range.

// integer fills *dst with v's value by parse (null: zero); want names
// the kind for errors.
func integer[N any](d *walker, v *fastjson.Value, dst *N, want string, parse func(*fastjson.Value) (N, error), at string, k []byte) {
	switch v.Type() {
	case fastjson.TypeNumber:
		if !d.number(v) {
			return
		}
		n, err := parse(v)
		if err != nil {
			d.fail(numberError(v, want, pointer(at, k)))
		}
		*dst = n
	case fastjson.TypeNull:
		var zero N
		*dst = zero
	default:
		d.fail(typeError(v, want, pointer(at, k)))
	}
}

func (d *walker) u64(v *fastjson.Value, dst *uint64, at string, k []byte) {
	integer(d, v, dst, "an unsigned integer", (*fastjson.Value).Uint64, at, k)
}

func (d *walker) u64Ptr(v *fastjson.Value, dst **uint64, at string, k []byte) {
	nullable(v, dst, func(n *uint64) { d.u64(v, n, at, k) })
}

func (d *walker) i64(v *fastjson.Value, dst *int64, at string, k []byte) {
	integer(d, v, dst, "an integer", (*fastjson.Value).Int64, at, k)
}

func (d *walker) i64Ptr(v *fastjson.Value, dst **int64, at string, k []byte) {
	nullable(v, dst, func(n *int64) { d.i64(v, n, at, k) })
}

func (d *walker) intPtr(v *fastjson.Value, dst **int, at string, k []byte) {
	nullable(v, dst, func(n *int) { integer(d, v, n, "an integer", (*fastjson.Value).Int, at, k) })
}

func numberError(v *fastjson.Value, want, path string) error {
	s := v.String()
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return fmt.Errorf("cannot take the JSON number %s for %s %q: not one, or out of range", s, want, path)
}

func (d *walker) stringList(v *fastjson.Value, dst *[]string, at string, k []byte) {
	switch v.Type() {
	case fastjson.TypeNull:
		*dst = nil
	case fastjson.TypeArray:
		a, _ := v.Array()
		out := make([]string, len(a))
		for i, e := range a {
			switch e.Type() {
			case fastjson.TypeString:
				b, _ := e.StringBytes()
				d.keep(&out[i], b)
			case fastjson.TypeNull:
			default:
				d.fail(typeError(e, "a string", pointer(at, k)+"/"+strconv.Itoa(i)))
			}
		}
		*dst = out
	default:
		d.fail(typeError(v, "an array of strings", pointer(at, k)))
	}
}

func (d *walker) stringMap(v *fastjson.Value, dst *map[string]string, at string, k []byte) {
	path := pointer(at, k)
	o := d.object(v, path)
	if o == nil {
		*dst = nil
		return
	}
	m := make(map[string]string, o.Len())
	o.Visit(func(k []byte, v *fastjson.Value) {
		if d.err != nil {
			return
		}
		if _, ok := m[string(k)]; ok {
			d.duplicate(k, path)
			return
		}
		switch v.Type() {
		case fastjson.TypeString:
			b, _ := v.StringBytes()
			m[string(k)] = string(b) // copies (audit events are few)
		case fastjson.TypeNull:
			m[string(k)] = ""
		default:
			d.fail(typeError(v, "a string", pointer(path, k)))
		}
	})
	*dst = m
}

// raw: a jsontext.Value is the member's text as data spells it, spaces
// and escapes kept (null too: the text "null"). fastjson's tree keeps no
// offsets into data, so jsontext's decoder finds it at the names from the
// top; only overflow and quarantine events have such a member.
func (d *walker) raw(v *fastjson.Value, dst *jsontext.Value, at string, k []byte, names ...string) {
	path := pointer(at, k)
	d.unique(v, path)
	if d.err != nil {
		return
	}
	changed := func(err error) {
		d.fail(fmt.Errorf("%s: jsontext's decoder does not find what fastjson did (%v)", path, err))
	}
	dec := jsontext.NewDecoder(bytes.NewReader(d.data))
	for _, name := range names {
		if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
			changed(err)
			return
		}
		for {
			tok, err := dec.ReadToken()
			if err != nil || tok.Kind() == '}' {
				changed(err)
				return
			}
			if tok.String() == name {
				break
			}
			if err := dec.SkipValue(); err != nil {
				changed(err)
				return
			}
		}
	}
	val, err := dec.ReadValue()
	if err != nil {
		changed(err)
		return
	}
	*dst = val.Clone()
}
