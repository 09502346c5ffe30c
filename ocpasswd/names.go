package ocpasswd

import (
	"errors"
	"fmt"
	"strings"
)

// Bounds of names and passwords.
const (
	// MaxNameLen: ocserv keeps user and group names in 64-byte buffers
	// (MAX_USERNAME_SIZE, NUL included); a longer name is cut short there
	// and would no longer match its per-user file or its kick entry.
	MaxNameLen = 63
	// MaxPasswordLen bounds a password (crypt(3) itself has no limit;
	// this keeps arguments of a remote command small).
	MaxPasswordLen = 512
)

// ErrInvalidArgument wraps every refusal of a user name, group or
// password.
var ErrInvalidArgument = errors.New("invalid argument")

// ValidUser accepts the user names this package passes to ocpasswd and
// that userconf uses as per-user file names: 1 to 63 bytes of ASCII
// letters, digits and . _ - @ +, not starting with '-' (ocpasswd would read
// an option) or '.' (".", ".." and hidden files in the per-user
// directory). Everything else is refused: ':' and newlines would corrupt
// the user:group:hash file, '/' and "../" would leave the config directory,
// whitespace and shell characters have no business in a name that reaches
// scripts through USERNAME.
func ValidUser(name string) error { return validName("user name", name) }

// ValidGroup accepts one group name under the rules of ValidUser, and
// additionally refuses one-character names: ocserv ignores groups of one
// character ("*" means no group in the password file).
func ValidGroup(name string) error {
	if err := validName("group name", name); err != nil {
		return err
	}
	if len(name) == 1 {
		return fmt.Errorf("%w: group name %q has one character; ocserv ignores such groups", ErrInvalidArgument, name)
	}
	return nil
}

// ValidGroups accepts the group field of an entry as ocpasswd's -g takes
// it: "" (no group) or one or more group names separated by commas
// ("staff" or "staff,admins"; ocserv's plain auth splits on commas).
func ValidGroups(groups string) error {
	if groups == "" {
		return nil
	}
	if len(groups) > 1024 {
		return fmt.Errorf("%w: group list longer than 1024 bytes", ErrInvalidArgument)
	}
	for _, g := range strings.Split(groups, ",") {
		if err := ValidGroup(g); err != nil {
			return err
		}
	}
	return nil
}

// ValidPassword accepts 1 to MaxPasswordLen bytes without a newline, a
// carriage return or a NUL: ocpasswd reads one line from a non-terminal
// stdin (a newline would end the password early) and crypt(3) stops at a
// NUL. The password itself never appears in the error.
func ValidPassword(pw string) error {
	switch {
	case pw == "":
		return fmt.Errorf("%w: empty password", ErrInvalidArgument)
	case len(pw) > MaxPasswordLen:
		return fmt.Errorf("%w: password longer than %d bytes", ErrInvalidArgument, MaxPasswordLen)
	case strings.ContainsAny(pw, "\n\r\x00"):
		return fmt.Errorf("%w: password contains a newline, carriage return or NUL", ErrInvalidArgument)
	}
	return nil
}

func validName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty %s", ErrInvalidArgument, what)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalidArgument, what, MaxNameLen)
	case name[0] == '-':
		return fmt.Errorf("%w: %s %q starts with '-'", ErrInvalidArgument, what, name)
	case name[0] == '.':
		return fmt.Errorf("%w: %s %q starts with '.'", ErrInvalidArgument, what, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '-' || c == '@' || c == '+'
		if !ok {
			return fmt.Errorf("%w: %s %q contains %q (allowed: letters, digits, . _ - @ +)", ErrInvalidArgument, what, clip(name), rune(c))
		}
	}
	return nil
}

// clip shortens hostile input for messages.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
