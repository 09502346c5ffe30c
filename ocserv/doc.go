// Package ocserv runs ocserv's control tool, occtl, and turns its `-j`
// output into typed Go values.
//
// occtl builds its JSON by hand with printf, and several released
// versions print invalid JSON (see docs and reference/ocserv-facts.md):
// trailing commas (show session(s), 1.1.6 and 1.3.x), missing commas and
// brackets (show iroutes until 1.4.0, which prints every user's fields into
// one object), duplicate keys (the "TX" of a rate limit next to the "TX"
// byte counter in show users until 1.2.1, the doubled "IP" of show
// iroutes), numbers printed as strings ("RX": "0"), booleans as "True" /
// "False" strings, and any value longer than 512 bytes replaced by
// "(invalid)". A strict decoder fails on all of these, and the exporters
// that used one broke on real servers.
//
// So the package reads occtl output in two steps:
//
//  1. Parse, a small lenient tokenizer and recursive-descent parser, repairs
//     what occtl gets wrong and builds a generic tree (*Value) that keeps
//     every object member in order, duplicates included. Each repair is
//     reported as a Note with its byte offset. What cannot be understood is
//     a *SyntaxError with the byte offset; the parser never panics (it is
//     fuzzed) and bounds its nesting depth.
//  2. Typed extraction (ParseUsers, ParseStatus, ParseSessions, …) converts
//     each known field with the conversion it needs (numbers from numbers
//     or strings, booleans from true/"True"/1, addresses, times), and keeps
//     every member in Raw so fields a newer ocserv adds are not lost.
//
// Duplicate keys: the LAST value wins, everywhere (Value.Get, Raw, typed
// fields). That is what fixes the real bug: with a rate limit, occtl ≤ 1.2.0
// prints "Limit RX", then the TX limit under the key "TX", and only later
// the real "TX" byte counter; the last "TX" is the counter. The first one
// is kept as User.LimitTX.
//
// Occtl runs the binary (argv only, never a shell) with a timeout and an
// output cap, and folds exit status and stderr into errors that name the
// command.
package ocserv
