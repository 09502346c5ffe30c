package spool

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

// Record is what the shipper needs from a line to publish it: the rest of
// the line is passed on as written.
type Record struct {
	V        int    `json:"v"`
	EventID  string `json:"event_id"`
	ServerID string `json:"server_id"`
	SpoolID  string `json:"spool_id"`
	Seq      uint64 `json:"seq"`
	Type     string `json:"type"`
}

// ParseRecord checks that line is one whole JSON object with the fields
// every spooled event has, and returns them. The error says what is wrong.
func ParseRecord(line []byte) (Record, error) {
	var r Record
	if len(line) == 0 || line[0] != '{' {
		return r, errors.New("not a JSON object")
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return r, fmt.Errorf("bad JSON: %v", err)
	}
	switch {
	case r.V < 1:
		return r, errors.New(`missing "v"`)
	case !validToken(r.EventID, 64):
		return r, errors.New(`missing or bad "event_id"`)
	case !validToken(r.Type, 32):
		return r, errors.New(`missing or bad "type"`)
	case !validToken(r.ServerID, 128):
		return r, errors.New(`missing or bad "server_id"`)
	case r.Seq == 0:
		return r, errors.New(`missing "seq"`)
	}
	return r, nil
}

// validToken is events.IsToken: the schema owns what a token is.
var validToken = events.IsToken

// Line is one line of a spool file.
type Line struct {
	Off  int64  // offset of the line's first byte
	Next int64  // offset just past its '\n' (or past the torn tail)
	Data []byte // the line without '\n'; valid until the next Scan
	Rec  Record // set when Err is nil
	Err  error  // why the line is malformed; the shipper quarantines it
}

// Scanner reads lines from a spool file without re-encoding them.
//
// For the active file (final false) a last line without '\n' is a write in
// progress: Scan stops before it, and a later scan from Line.Next picks it
// up. For an immutable chunk (final true) such a tail is torn and is
// returned as a malformed line.
type Scanner struct {
	r     *bufio.Reader
	off   int64
	final bool
	line  Line
	err   error
	big   []byte
	parse func([]byte) (Record, error)
}

// NewScanner reads r, whose first byte is at offset off in the file.
func NewScanner(r io.Reader, off int64, final bool) *Scanner {
	return &Scanner{r: bufio.NewReaderSize(r, 256<<10), off: off, final: final}
}

// Scan advances to the next line; false at the end or on a read error.
func (s *Scanner) Scan() bool {
	if s.err != nil {
		return false
	}
	data, n, complete, err := s.readLine()
	if n == 0 {
		if err != nil && err != io.EOF {
			s.err = err
		}
		return false
	}
	if !complete && !s.final {
		// A write in progress; leave it for the next scan.
		return false
	}
	s.line = Line{Off: s.off, Next: s.off + int64(n), Data: data}
	s.off += int64(n)
	switch {
	case !complete:
		s.line.Err = errors.New("torn line: no newline at the end of a closed chunk")
	case n-1 > MaxLine:
		s.line.Err = fmt.Errorf("line longer than %d bytes", MaxLine)
		s.line.Data = nil
	default:
		parse := ParseRecord
		if s.parse != nil {
			parse = s.parse
		}
		s.line.Rec, s.line.Err = parse(data)
	}
	return true
}

// readLine returns the next line without its '\n', the number of bytes
// consumed, and whether a '\n' ended it. Lines over MaxLine are consumed
// but not kept.
func (s *Scanner) readLine() (data []byte, n int, complete bool, err error) {
	s.big = s.big[:0]
	for {
		chunk, err := s.r.ReadSlice('\n')
		n += len(chunk)
		if err == nil {
			if len(s.big) == 0 {
				return chunk[:len(chunk)-1], n, true, nil
			}
			s.big = appendCapped(s.big, chunk)
			return trimNL(s.big), n, true, nil
		}
		if err == bufio.ErrBufferFull {
			s.big = appendCapped(s.big, chunk)
			continue
		}
		// EOF or a read error: what we have is an unterminated tail.
		s.big = appendCapped(s.big, chunk)
		return s.big, n, false, err
	}
}

func appendCapped(dst, b []byte) []byte {
	if len(dst)+len(b) > MaxLine+1 {
		return dst[:0:0] // too long: keep nothing, the length says enough
	}
	return append(dst, b...)
}

func trimNL(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\n' {
		return b[:len(b)-1]
	}
	return b
}

// SetParse replaces ParseRecord for this scanner with a function that
// gives the same result for every line, only faster (the shipper's, which
// checks that against ParseRecord in a fuzz test).
func (s *Scanner) SetParse(parse func([]byte) (Record, error)) { s.parse = parse }

// Line returns the current line.
func (s *Scanner) Line() *Line { return &s.line }

// Offset is where the next Scan starts.
func (s *Scanner) Offset() int64 { return s.off }

// Err is the read error that stopped Scan, if any.
func (s *Scanner) Err() error { return s.err }
