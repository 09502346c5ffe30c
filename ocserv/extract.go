package ocserv

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// invalidValue is what occtl prints instead of any value whose escaped
// form does not fit its 512-byte buffer.
const invalidValue = "(invalid)"

// noneValue is occtl's placeholder for an empty user or group name.
const noneValue = "(none)"

// localMinuteLayouts are occtl's DATE_TIME_FMT ("%Y-%m-%d %H:%M", local
// time) and a seconds variant in case a build prints one.
var localMinuteLayouts = []string{"2006-01-02 15:04", "2006-01-02 15:04:05"}

// record reads typed fields out of one object of occtl output, turning
// every conversion it has to make or give up on into a note.
type record struct {
	obj   *Value
	what  string // "entry 2" in notes
	notes *[]Note
}

func (r record) note(v *Value, format string, args ...any) {
	off := 0
	if v != nil {
		off = v.Offset
	} else if r.obj != nil {
		off = r.obj.Offset
	}
	*r.notes = append(*r.notes, Note{off, r.what + ": " + fmt.Sprintf(format, args...)})
}

// get returns the member, or nil when it is absent, null or "(invalid)"
// (the latter noted: the value existed but occtl could not print it).
func (r record) get(key string) *Value {
	v, ok := r.obj.Get(key)
	if !ok || v.Kind == Null {
		return nil
	}
	if v.Kind == String && v.Text == invalidValue {
		r.note(v, "%q was printed as (invalid) (longer than occtl's 512-byte buffer); left out", key)
		return nil
	}
	return v
}

// scalarText is the text of a string, number or boolean.
func scalarText(v *Value) (string, bool) {
	switch v.Kind {
	case String, Number:
		return v.Text, true
	case Bool:
		return strconv.FormatBool(v.Bool), true
	}
	return "", false
}

func (r record) str(key string) string {
	v := r.get(key)
	if v == nil {
		return ""
	}
	s, ok := scalarText(v)
	if !ok {
		r.note(v, "%q is a %s, not text; left out", key, v.Kind)
	}
	return s
}

// name is a user or group name: occtl prints "(none)" for an empty one.
func (r record) name(key string) string {
	s := r.str(key)
	if s == noneValue {
		return ""
	}
	return s
}

// uintText parses a non-negative integer printed as a number or a string,
// possibly with a fraction of zero ("5.0") or an exponent ("1e3").
func uintText(s string) (uint64, bool) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return n, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f != math.Trunc(f) || f >= 1<<64 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return uint64(f), true
}

func intText(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || f >= 1<<63 || f < -(1<<63) || math.IsNaN(f) {
		return 0, false
	}
	return int64(f), true
}

// uint reads a count. Strings are accepted ("RX": "0" in 1.1.6) and noted
// only when they do not convert.
func (r record) uint(key string) (uint64, bool) {
	v := r.get(key)
	if v == nil {
		return 0, false
	}
	if v.Kind == Number || v.Kind == String {
		if n, ok := uintText(v.Text); ok {
			return n, true
		}
	}
	r.note(v, "%q is not a non-negative integer (%s %q); left out", key, v.Kind, clip(v.Text))
	return 0, false
}

func (r record) int(key string) (int64, bool) {
	v := r.get(key)
	if v == nil {
		return 0, false
	}
	if v.Kind == Number || v.Kind == String {
		if n, ok := intText(v.Text); ok {
			return n, true
		}
	}
	r.note(v, "%q is not an integer (%s %q); left out", key, v.Kind, clip(v.Text))
	return 0, false
}

// small reads an int that fits an int (ports, MTUs, PIDs, seconds).
func (r record) small(key string) int {
	n, ok := r.int(key)
	if !ok {
		return 0
	}
	if n > math.MaxInt32 || n < math.MinInt32 {
		r.note(r.get(key), "%q = %d is out of range; left out", key, n)
		return 0
	}
	return int(n)
}

// boolean reads true/false, "True"/"False" (how occtl prints "Restricted
// to routes"), "yes"/"no" and 1/0.
func (r record) boolean(key string) (val, ok bool) {
	v := r.get(key)
	if v == nil {
		return false, false
	}
	switch v.Kind {
	case Bool:
		return v.Bool, true
	case Number, String:
		switch strings.ToLower(strings.TrimSpace(v.Text)) {
		case "true", "yes", "1":
			return true, true
		case "false", "no", "0":
			return false, true
		}
	}
	r.note(v, "%q is not a boolean (%s %q); left out", key, v.Kind, clip(v.Text))
	return false, false
}

// strs reads a list. A single string is a one-element list: newer
// versions print "Routes": "defaultroute" instead of an array.
func (r record) strs(key string) []string {
	v := r.get(key)
	if v == nil {
		return nil
	}
	switch v.Kind {
	case String, Number:
		return []string{v.Text}
	case Array:
		out := make([]string, 0, len(v.Elems))
		for _, e := range v.Elems {
			if e.Kind == String && e.Text == invalidValue {
				r.note(e, "an element of %q was printed as (invalid); left out", key)
				continue
			}
			s, ok := scalarText(e)
			if !ok {
				r.note(e, "an element of %q is a %s, not text; left out", key, e.Kind)
				continue
			}
			out = append(out, s)
		}
		return out
	}
	r.note(v, "%q is a %s, not a list; left out", key, v.Kind)
	return nil
}

// addr reads an IP address; "addr/prefix" gives its address. An empty
// value or "(none)" is absent without a note.
func (r record) addr(key string) netip.Addr {
	v := r.get(key)
	if v == nil {
		return netip.Addr{}
	}
	s, _ := scalarText(v)
	s = strings.TrimSpace(s)
	if s == "" || s == noneValue {
		return netip.Addr{}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr()
	}
	r.note(v, "%q = %q is not an IP address; left out", key, clip(s))
	return netip.Addr{}
}

// unixTime reads seconds since the epoch (the raw_* fields).
func (r record) unixTime(key string) (time.Time, bool) {
	n, ok := r.int(key)
	if !ok {
		return time.Time{}, false
	}
	if n <= 0 {
		return time.Time{}, false
	}
	t := time.Unix(n, 0)
	if !saneTime(t) {
		r.note(r.get(key), "%q = %d is outside years 1970-9999; left out", key, n)
		return time.Time{}, false
	}
	return t, true
}

// saneTime bounds times to what occtl can mean and what RFC 3339 (and so
// encoding/json, which the snapshots use) can represent.
func saneTime(t time.Time) bool {
	for _, y := range []int{t.Year(), t.UTC().Year()} {
		if y < 1970 || y > 9999 {
			return false
		}
	}
	return true
}

// localTime reads occtl's "2006-01-02 15:04" local-time text in loc.
// Minute resolution, and ambiguous for an hour at the end of daylight
// saving time, hence callers mark such times as coarse.
func (r record) localTime(key string, loc *time.Location) (time.Time, bool) {
	v := r.get(key)
	if v == nil {
		return time.Time{}, false
	}
	s, _ := scalarText(v)
	s = strings.TrimSpace(s)
	for _, layout := range localMinuteLayouts {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			if !saneTime(t) {
				break
			}
			return t, true
		}
	}
	r.note(v, "%q = %q is not a date (YYYY-MM-DD HH:MM); left out", key, clip(s))
	return time.Time{}, false
}

// seconds reads a duration printed as whole seconds.
func (r record) seconds(key string) time.Duration {
	n, ok := r.int(key)
	if !ok {
		return 0
	}
	if n < 0 || n > math.MaxInt64/int64(time.Second) {
		r.note(r.get(key), "%q = %d seconds is out of range; left out", key, n)
		return 0
	}
	return time.Duration(n) * time.Second
}

// raw is every member as plain Go values (last duplicate wins).
func (r record) raw() map[string]any {
	m, _ := r.obj.Interface().(map[string]any)
	return m
}

// entries turns a parsed root into the list of objects occtl meant: an
// array of objects, or a single object (show status, show iroutes ≤ 1.3,
// or a version that forgets the brackets).
func entries(root *Value, notes *[]Note) ([]*Value, error) {
	switch root.Kind {
	case Object:
		return []*Value{root}, nil
	case Array:
		out := make([]*Value, 0, len(root.Elems))
		for i, e := range root.Elems {
			switch e.Kind {
			case Object:
				out = append(out, e)
			case Array:
				// [[...]]: flatten one level rather than lose entries.
				for _, ee := range e.Elems {
					if ee.Kind != Object {
						return nil, &ParseError{Offset: ee.Offset, Msg: fmt.Sprintf("entry %d: expected an object, found a %s", i, ee.Kind)}
					}
					out = append(out, ee)
				}
				*notes = append(*notes, Note{e.Offset, "nested array flattened"})
			default:
				return nil, &ParseError{Offset: e.Offset, Msg: fmt.Sprintf("entry %d: expected an object, found a %s", i, e.Kind)}
			}
		}
		return out, nil
	}
	return nil, &ParseError{Offset: root.Offset, Msg: fmt.Sprintf("expected an array of objects or an object, found a %s", root.Kind)}
}

// splitAt splits an object's members into several objects, starting a new
// one whenever a member named key appears again. show iroutes before
// 1.4.0 prints all users into one object with no separator but the next
// "ID"; a well-formed object with one key comes back unchanged.
func splitAt(obj *Value, key string) []*Value {
	var out []*Value
	cur := &Value{Kind: Object, Offset: obj.Offset}
	has := false
	for _, m := range obj.Members {
		if m.Key == key {
			if has {
				out = append(out, cur)
				cur = &Value{Kind: Object, Offset: m.Offset}
			}
			has = true
		}
		cur.Members = append(cur.Members, m)
	}
	if len(cur.Members) > 0 {
		out = append(out, cur)
	}
	return out
}

// parseRoot runs Parse and returns its notes through notes.
func parseRoot(data []byte, notes *[]Note) (*Value, error) {
	root, n, err := Parse(data)
	if err != nil {
		return nil, err
	}
	*notes = append(*notes, n...)
	return root, nil
}

// when reads a time occtl may print two ways: exactly as unix seconds under
// rawKey (1.2.3 and later), or as local time to the minute under localKey
// (1.1.6), in which case coarse is true. Neither readable: the zero time.
func (r record) when(rawKey, localKey string, loc *time.Location) (t time.Time, coarse bool) {
	if t, ok := r.unixTime(rawKey); ok {
		return t, false
	}
	if t, ok := r.localTime(localKey, loc); ok {
		return t, true
	}
	return time.Time{}, false
}
