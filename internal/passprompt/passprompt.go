// Package passprompt reads a new password for the account files ctl and
// the ledger write (ocpasswd's and the console's): one line of stdin for
// scripts, or typed twice on the terminal with echo off for people.
//
// What a caller requires around it (ctl's --force with --password-stdin,
// a non-empty password) stays with the caller; this package only reads.
package passprompt

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// maxLine bounds what is read from stdin: a password is short, and a
// stream that never ends a line must not grow memory.
const maxLine = 4096

// ErrNoTerminal is returned by Twice when stdin is not a terminal: asking
// would wait for nobody, so the caller names its stdin option instead.
var ErrNoTerminal = errors.New("no terminal to ask for the password")

// ErrMismatch is returned by Twice when the two entries differ.
var ErrMismatch = errors.New("the two passwords differ")

// Line reads one line from r (at most 4 KiB) without its line ending.
// An empty stream is an error; an empty line is returned as "".
func Line(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, maxLine)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the password from stdin: %w", err)
	}
	if err != nil && line == "" {
		return "", errors.New("read the password from stdin: nothing on stdin")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// IsTerminal reports whether the process's stdin is a terminal.
func IsTerminal() bool { return term.IsTerminal(int(os.Stdin.Fd())) }

// Twice asks for the password on the process's terminal twice, with echo
// off, prompting on w, and returns it when both entries match.
func Twice(w io.Writer, prompt, again string) (string, error) {
	if !IsTerminal() {
		return "", ErrNoTerminal
	}
	a, err := ask(w, prompt)
	if err != nil {
		return "", err
	}
	b, err := ask(w, again)
	if err != nil {
		return "", err
	}
	if a != b {
		return "", ErrMismatch
	}
	return a, nil
}

func ask(w io.Writer, prompt string) (string, error) {
	fmt.Fprint(w, prompt)
	b, err := term.ReadPassword(int(os.Stdin.Fd()))
	fmt.Fprintln(w) // the newline the terminal did not echo
	if err != nil {
		return "", fmt.Errorf("read the password from the terminal: %w", err)
	}
	return string(b), nil
}
