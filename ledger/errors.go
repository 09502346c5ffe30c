package ledger

import (
	"errors"
	"fmt"
)

// Error codes. They are stable: the query API returns them and ctl maps
// them to messages and exit codes.
const (
	ECodeInvalid     = "invalid_argument" // a query argument is wrong (the message names it)
	ECodeNotFound    = "not_found"
	ECodeUnavailable = "unavailable"  // the database does not answer
	ECodeSchema      = "schema_stale" // the database's schema is not the one this build needs
	ECodeInternal    = "internal"
	// ECodeTooLarge: the answer does not fit in one NATS message; a
	// narrower question does.
	ECodeTooLarge = "too_large"
)

// Error is a coded error.
type Error struct {
	Code    string
	Message string
	Err     error // the cause, if any
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf makes a coded error.
func Errorf(code, format string, a ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, a...)}
}

// Unavailable wraps a database error that means the database cannot be
// used right now (connection refused, closed, busy past the timeout).
func Unavailable(op string, err error) *Error {
	return &Error{Code: ECodeUnavailable, Message: op, Err: err}
}

// ErrorCode is err's code: its own when it is an *Error, else internal.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ECodeInternal
}

// ErrorMessage is err's message without the code.
func ErrorMessage(err error) string { return err.Error() }
