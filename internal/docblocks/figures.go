package docblocks

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode"
)

// Figure is a number in a document that reads like a measurement and is
// neither inside a generated block nor marked as something else.
type Figure struct {
	Line int
	Text string // the figure as matched
	Kind string // what made it look measured
}

func (f Figure) String() string { return fmt.Sprintf("line %d: %q (%s)", f.Line, f.Text, f.Kind) }

// OKMarker, at the end of a line, says why the figures on that line are
// not measurements (a test's parameter, a protocol constant, a quoted
// figure of someone else's), for a reviewer to judge:
//
//	... a 3 s outage against a 1 s window <!-- figures-ok: the test's parameters -->
const OKMarker = "<!-- figures-ok:"

// The shapes of a measured figure. Strong ones (a ratio, a decimal
// quantity, a range, an approximation, a percentile, a count out of a
// total, "a millisecond") are measurements unless a goal's comparator
// stands right before them. Weak ones (a whole quantity with a unit: 30s,
// 4 MiB; a rate) are usually settings or a goal's conditions, and pass in
// a sentence that reads like one.
var (
	unit   = `(?:ns|µs|us|ms|s|sec|seconds?|min|minutes?|h|hours?|B|KB|kB|KiB|MB|MiB|GB|GiB|%)`
	strong = []shape{
		{"range of quantities", regexp.MustCompile(`\b\d+(?:\.\d+)?\s?(?:–|-|to)\s?\d+(?:\.\d+)?\s?` + unit + `(?:[^\p{L}\p{N}_]|$)`)},
		{"decimal quantity", regexp.MustCompile(`\b\d+\.\d+\s?` + unit + `(?:[^\p{L}\p{N}_]|$)`)},
		{"ratio", regexp.MustCompile(`\b\d+(?:\.\d+)?[x×](?:[^\p{L}\p{N}_]|$)`)},
		{"ratio", regexp.MustCompile(`\b\d+(?:\.\d+)?(?:-fold| times (?:faster|slower|more|less|as))`)},
		{"count out of a total", regexp.MustCompile(`\b\d+ (?:to \d+ )?(?:out )?of (?:the )?\d+\b`)},
		{"percentile", regexp.MustCompile(`\bp\d\d\s+[-\d]`)},
		{"approximation", regexp.MustCompile(`(?:~|≈|\babout |\baround |\broughly |\bnearly |\balmost |\bsome )\d+(?:\.\d+)?`)},
		{"spelled-out time", regexp.MustCompile(`(?i)\b(?:a|one|two|three|four|five|ten|a few) (?:nanoseconds?|microseconds?|milliseconds?)\b`)},
	}
	weak = []shape{
		{"quantity", regexp.MustCompile(`\b\d+\s?` + unit + `(?:[^\p{L}\p{N}_]|$)`)},
		{"rate", regexp.MustCompile(`\b\d+(?:\.\d+)?\s?(?:events|msgs|messages|ops|requests)/s\b`)},
	}

	// A goal or a bound right before a figure: "goal ≥ 30x", "p99 ≤ 50 ms",
	// "at most 1.3x".
	comparator = regexp.MustCompile(`(?:≤|≥|<=|>=|<|>|\bat most|\bat least|\bno more than|\bunder|\bbelow|\bgoal)\s*(?:p\d\d\s*)?$`)
	// A line that states a setting, a limit or a schedule rather than a
	// result.
	settingLine = regexp.MustCompile("(?i)\\bdefault|`[A-Z][A-Z0-9_]{2,}`|\\b(?:every|after|within|up to|at most|at least|timeout|interval|budget|window|cap|limit|max|min|wait|waits|retried|retry|expires?|ttl|older than|valid|validity|tolerat\\w*|skew|grace|refresh\\w*|poll\\w*|doubling|capped|between|hostile)\\b|[≤≥<>±]")
	codeSpan    = regexp.MustCompile("`[^`]*`")
	linkTarget  = regexp.MustCompile(`\]\([^)]*\)`)
)

type shape struct {
	kind string
	re   *regexp.Regexp
}

// Figures lists the measured-looking figures of doc outside its generated
// blocks, fenced code, inline code and link targets. A figure is judged by
// its sentence: a weak one passes in a sentence that states a setting, a
// limit or a schedule. A paragraph, list item or table row with OKMarker
// is skipped. A document whose blocks do not parse is an error.
func Figures(doc []byte) ([]Figure, error) {
	blocks, err := Parse(doc)
	if err != nil {
		return nil, err
	}
	inBlock := func(line int) bool {
		for _, b := range blocks {
			if line >= b.FirstLine && line <= b.LastLine {
				return true
			}
		}
		return false
	}
	var out []Figure
	var c chunk
	flush := func() {
		out = append(out, c.figures()...)
		c = chunk{}
	}
	fenced := false
	for i, raw := range strings.Split(string(doc), "\n") {
		n := i + 1
		trimmed := strings.TrimSpace(raw)
		switch {
		case strings.HasPrefix(trimmed, "```"):
			flush()
			fenced = !fenced
			continue
		case fenced || inBlock(n):
			flush()
			continue
		case trimmed == "" || strings.HasPrefix(trimmed, "#") || strings.HasPrefix(trimmed, "|") || listItem.MatchString(raw):
			flush() // each of these starts a chunk of its own
		}
		c.add(n, raw)
		if strings.HasPrefix(trimmed, "|") {
			flush()
		}
	}
	flush()
	return out, nil
}

var listItem = regexp.MustCompile(`^\s*(?:[-*+]|\d+\.)\s`)

// chunk is a paragraph, list item or table row, joined into one text.
type chunk struct {
	text   strings.Builder // code spans and link targets blanked
	orig   strings.Builder // as written, same offsets
	starts []int           // offset in text where each line starts
	lines  []int
	ok     bool // OKMarker seen
}

func (c *chunk) add(n int, raw string) {
	if strings.Contains(raw, OKMarker) {
		c.ok = true
	}
	if c.text.Len() > 0 {
		c.text.WriteByte(' ')
		c.orig.WriteByte(' ')
	}
	c.orig.WriteString(raw)
	c.starts = append(c.starts, c.text.Len())
	c.lines = append(c.lines, n)
	// Code spans and link targets hold commands, flags and file names, not
	// figures; they are blanked, keeping their length.
	raw = codeSpan.ReplaceAllStringFunc(raw, blank)
	raw = linkTarget.ReplaceAllStringFunc(raw, blank)
	c.text.WriteString(raw)
}

func blank(s string) string { return s[:1] + strings.Repeat(" ", len(s)-2) + s[len(s)-1:] }

func (c *chunk) lineOf(off int) int {
	n := c.lines[0]
	for i, s := range c.starts {
		if s <= off {
			n = c.lines[i]
		}
	}
	return n
}

var sentenceEnd = regexp.MustCompile(`[.;:!?](?:\s|$)`)

// sentence is the sentence around offset off.
func sentence(text string, off int) string {
	from := 0
	for _, m := range sentenceEnd.FindAllStringIndex(text[:off], -1) {
		from = m[1]
	}
	to := len(text)
	if m := sentenceEnd.FindStringIndex(text[off:]); m != nil {
		to = off + m[0]
	}
	return text[from:to]
}

func (c *chunk) figures() []Figure {
	if c.ok || c.text.Len() == 0 {
		return nil
	}
	text, orig := c.text.String(), c.orig.String()
	var out []Figure
	var taken [][2]int // a figure is reported once, by its first shape
	report := func(m []int, kind string) {
		for _, t := range taken {
			if m[0] < t[1] && t[0] < m[1] {
				return
			}
		}
		taken = append(taken, [2]int{m[0], m[1]})
		out = append(out, Figure{Line: c.lineOf(m[0]), Text: strings.TrimRightFunc(text[m[0]:m[1]], notFigure), Kind: kind})
	}
	for _, s := range strong {
		for _, m := range s.re.FindAllStringIndex(text, -1) {
			if !comparator.MatchString(text[:m[0]]) {
				report(m, s.kind)
			}
		}
	}
	for _, w := range weak {
		for _, m := range w.re.FindAllStringIndex(text, -1) {
			if !comparator.MatchString(text[:m[0]]) && !settingLine.MatchString(sentence(orig, m[0])) {
				report(m, w.kind)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

// notFigure is what a match may carry past its figure (the character
// after a unit).
func notFigure(r rune) bool {
	return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '%' && r != '×'
}
