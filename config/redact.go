package config

import (
	"net/url"
	"sort"
	"strings"
)

// Credentials can sit in NATS_URL itself (nats://user:password@host,
// nats://token@host), and NATS_PASSWORD and NATS_TOKEN hold secrets too.
// None may reach an error message, a log line, an event, the status file
// or a metric: every place that prints a URL prints RedactURL of it, and
// text from elsewhere that might quote one (the NATS client's errors)
// goes through NATS.Scrub.

// Redacted replaces secrets in what is printed.
const Redacted = "REDACTED"

// RedactURL returns s with everything between "://" and the last '@'
// (the user information: user and password, or a token) replaced by
// REDACTED. It does not parse s, so it also works on a malformed URL, and
// a password holding '/' or '@' is still cut whole.
func RedactURL(s string) string {
	start := 0
	if i := strings.Index(s, "://"); i >= 0 {
		start = i + 3
	}
	at := strings.LastIndex(s[start:], "@")
	if at < 0 {
		return s
	}
	return s[:start] + Redacted + s[start+at:]
}

// RedactedURLs is the servers for printing: comma-separated, redacted.
func (n NATS) RedactedURLs() string {
	out := make([]string, len(n.URLs))
	for i, u := range n.URLs {
		out[i] = RedactURL(u)
	}
	return strings.Join(out, ",")
}

// minSecret is the shortest secret Scrub replaces: a shorter one would
// turn ordinary words of a message into REDACTED (and is no secret).
const minSecret = 3

// Scrub replaces every secret of n found in s: each URL's user
// information, NATS_PASSWORD and NATS_TOKEN, each also as URL-escaped and
// unescaped (a client may print either form).
func (n NATS) Scrub(s string) string {
	var base []string
	for _, u := range n.URLs {
		start := 0
		if i := strings.Index(u, "://"); i >= 0 {
			start = i + 3
		}
		at := strings.LastIndex(u[start:], "@")
		if at < 0 {
			continue
		}
		info := u[start : start+at]
		base = append(base, u, info)
		if user, pass, hasPass := strings.Cut(info, ":"); hasPass {
			base = append(base, pass)
		} else {
			base = append(base, user) // a token
		}
	}
	base = append(base, n.Password, n.Token)
	var secrets []string
	for _, b := range base {
		secrets = append(secrets, b, url.PathEscape(b), url.QueryEscape(b))
		if d, err := url.PathUnescape(b); err == nil {
			secrets = append(secrets, d)
		}
	}
	// Longest first, so a secret inside a longer one is not cut apart.
	sort.Slice(secrets, func(i, j int) bool { return len(secrets[i]) > len(secrets[j]) })
	for _, sec := range secrets {
		if len(sec) >= minSecret {
			s = strings.ReplaceAll(s, sec, Redacted)
		}
	}
	return s
}

// ScrubError is err with its text scrubbed (Scrub) and the original kept
// for errors.Is and errors.As.
func (n NATS) ScrubError(err error) error {
	if err == nil {
		return nil
	}
	return &scrubbed{msg: n.Scrub(err.Error()), err: err}
}

type scrubbed struct {
	msg string
	err error
}

func (s *scrubbed) Error() string { return s.msg }
func (s *scrubbed) Unwrap() error { return s.err }
