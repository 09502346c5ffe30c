package userconf

import (
	"fmt"
	"strings"
)

// Entry is one value line of a config file as ocserv reads it.
type Entry struct {
	Key   string
	Value string // as ocserv sees it: spaces and double quotes stripped
	Line  int    // 1-based
	// Known: Key is whitelisted. Problem is set when a whitelisted key's
	// value does not validate (ocserv may refuse the user's login over
	// it), or when a single-valued key appears more than once.
	Known   bool
	Problem string
}

// line is one physical line and what ocserv makes of it.
type line struct {
	text string // without the newline
	key  string // "" unless it gives a value at top level
	val  string
}

// parse splits content into lines the way ocserv 1.1.6's inih reads a
// per-user file: ';' or '#' first on a line is a comment; "[section]"
// starts a section whose keys ocserv skips; "name = value" or "name:
// value" (split at the first '=' or ':') is a value; an indented line
// after a value continues that key with one more value (inih's multi-line
// values); ocserv strips spaces and double quotes around values. A value
// is cut at " ;" (inih's inline comment).
func parse(content string) []line {
	raw := strings.Split(content, "\n")
	if len(raw) > 0 && raw[len(raw)-1] == "" {
		raw = raw[:len(raw)-1]
	}
	lines := make([]line, len(raw))
	section := false
	prev := ""
	for i, t := range raw {
		lines[i].text = t
		s := strings.TrimRight(t, " \t\r\v\f")
		start := strings.TrimLeft(s, " \t\r\v\f")
		indented := len(start) < len(s)
		switch {
		case start == "" || start[0] == ';' || start[0] == '#':
		case indented && prev != "" && !section:
			lines[i].key, lines[i].val = prev, sanitize(cutComment(start))
		case indented && prev != "":
			// a continuation inside a section: skipped like the section
		case start[0] == '[':
			section = true
			prev = ""
		default:
			j := strings.IndexAny(cutComment(start), "=:")
			if j < 0 {
				continue // a line ocserv reports as an error; kept as it is
			}
			name := strings.TrimRight(start[:j], " \t")
			prev = name
			if !section {
				lines[i].key, lines[i].val = name, sanitize(cutComment(start[j+1:]))
			}
		}
	}
	return lines
}

// cutComment cuts s at a ';' preceded by whitespace.
func cutComment(s string) string {
	for i := 1; i < len(s); i++ {
		if s[i] == ';' && (s[i-1] == ' ' || s[i-1] == '\t') {
			return s[:i]
		}
	}
	return s
}

// sanitize is ocserv's sanitize_config_value: strip whitespace and '"'
// at both ends.
func sanitize(v string) string {
	return strings.Trim(v, " \t\r\n\v\f\"")
}

// entries lists the top-level values, with problems noted.
func entries(lines []line) []Entry {
	var es []Entry
	count := map[string]int{}
	for _, l := range lines {
		if l.key != "" {
			count[l.key]++
		}
	}
	for i, l := range lines {
		if l.key == "" {
			continue
		}
		e := Entry{Key: l.key, Value: l.val, Line: i + 1}
		if k, ok := LookupKey(l.key); ok {
			e.Known = true
			if err := k.Validate(l.val); err != nil {
				e.Problem = err.Error()
			} else if !k.Multi && count[l.key] > 1 {
				e.Problem = fmt.Sprintf("%s is set %d times; ocserv uses the last one", l.key, count[l.key])
			}
		}
		es = append(es, e)
	}
	return es
}

// values returns key's top-level values in order.
func values(lines []line, key string) []string {
	var vs []string
	for _, l := range lines {
		if l.key == key {
			vs = append(vs, l.val)
		}
	}
	return vs
}

// render writes one value line.
func render(k Key, v string) string {
	if k.quote {
		return k.Name + ` = "` + v + `"`
	}
	return k.Name + " = " + v
}

// edit returns content with every top-level line of key replaced by one
// line per value (none: the key is removed). The new lines take the place
// of the first old one; a key not yet there goes after the last top-level
// line, before any section. Every other line is kept byte for byte.
func edit(content string, k Key, vals []string) string {
	lines := parse(content)
	var out []string
	var add []string
	for _, v := range vals {
		add = append(add, render(k, v))
	}
	placed := false
	firstSection := -1
	for i, l := range lines {
		if firstSection < 0 && strings.HasPrefix(strings.TrimSpace(l.text), "[") && l.key == "" {
			firstSection = i
		}
	}
	for i, l := range lines {
		if i == firstSection && !placed {
			out = append(out, add...)
			placed = true
		}
		if l.key == k.Name {
			if !placed {
				out = append(out, add...)
				placed = true
			}
			continue
		}
		out = append(out, l.text)
	}
	if !placed {
		out = append(out, add...)
	}
	if len(out) == 0 {
		return ""
	}
	return strings.Join(out, "\n") + "\n"
}
