package cmdsvc

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
)

// MaxArg bounds every argument's value; nothing an action takes is longer.
const MaxArg = 1024

// validator checks one argument and returns it normalised.
type validator func(string) (string, error)

// ValidName accepts user and group names: 1 to 64 bytes (ocserv's limit)
// of letters, digits and . _ @ + -, not starting with '-' or '.', and
// never ".." — so a name is one argv element for occtl and ocpasswd, a
// safe file name for per-user config, and nothing a shell or a path could
// read differently. Names outside this set cannot be managed remotely.
func ValidName(s string) (string, error) {
	if s == "" || len(s) > 64 {
		return "", fmt.Errorf("must be 1 to 64 characters")
	}
	if s[0] == '-' || s[0] == '.' || strings.Contains(s, "..") {
		return "", fmt.Errorf("must not start with '-' or '.' or contain \"..\"")
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._@+-", r)) {
			return "", fmt.Errorf("%s is not allowed (letters, digits and . _ @ + - only)", describeRune(r))
		}
	}
	if err := ocserv.ValidUsername(s); err != nil {
		return "", err
	}
	return s, nil
}

func validID(s string) (string, error) {
	n, err := strconv.Atoi(s)
	if err != nil || strconv.Itoa(n) != s {
		return "", fmt.Errorf("must be a decimal worker ID (occtl show users)")
	}
	if err := ocserv.ValidID(n); err != nil {
		return "", err
	}
	return s, nil
}

func validSID(s string) (string, error) {
	if err := ocserv.ValidSessionID(s); err != nil {
		return "", err
	}
	return s, nil
}

func validIP(s string) (string, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return "", fmt.Errorf("must be an IPv4 or IPv6 address without zone")
	}
	return a.Unmap().String(), nil
}

func validBool(s string) (string, error) {
	switch s {
	case "true", "false":
		return s, nil
	}
	return "", fmt.Errorf("must be true or false")
}

func validDuration(s string) (string, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > 366*24*time.Hour {
		return "", fmt.Errorf("must be a positive duration up to a year, like 30m or 24h")
	}
	return s, nil
}

// validText accepts a free-text note (a kick's reason): printable, one
// line, at most 200 characters.
func validText(s string) (string, error) {
	if len(s) > 200 {
		return "", fmt.Errorf("longer than 200 bytes")
	}
	for _, r := range s {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) {
			return "", fmt.Errorf("%s is not allowed (one line of printable text)", describeRune(r))
		}
	}
	return s, nil
}

// sealedValue accepts a sealed secret or the curve key it was sealed with;
// opauth.Open checks the content.
func sealedValue(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("empty")
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return "", fmt.Errorf("not base64url")
		}
	}
	return s, nil
}

func describeRune(r rune) string {
	switch {
	case r == '\n':
		return "a newline"
	case r == unicode.ReplacementChar:
		return "invalid UTF-8"
	case r < 0x20 || r == 0x7f:
		return fmt.Sprintf("control character %U", r)
	case r == ' ':
		return "a space"
	}
	return fmt.Sprintf("%q", r)
}

// param is one argument an action takes.
type param struct {
	name     string
	required bool
	check    validator
}

// checkArgs validates args against the action's parameters: unknown
// names, missing required ones, oversized or invalid values are refused,
// each naming the argument.
func checkArgs(params []param, args map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(args))
	known := map[string]param{}
	for _, p := range params {
		known[p.name] = p
	}
	for k, v := range args {
		p, ok := known[k]
		if !ok {
			return nil, fmt.Errorf("unknown argument %q (this action takes: %s)", truncate(k, 40), paramNames(params))
		}
		if len(v) > MaxArg {
			return nil, fmt.Errorf("argument %s: %d bytes, more than %d", k, len(v), MaxArg)
		}
		nv, err := p.check(v)
		if err != nil {
			return nil, fmt.Errorf("argument %s: %v", k, err)
		}
		out[k] = nv
	}
	for _, p := range params {
		if _, ok := out[p.name]; p.required && !ok {
			return nil, fmt.Errorf("argument %s is required", p.name)
		}
	}
	return out, nil
}

func paramNames(ps []param) string {
	if len(ps) == 0 {
		return "no arguments"
	}
	var s []string
	for _, p := range ps {
		s = append(s, p.name)
	}
	return strings.Join(s, ", ")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
