// Package ledger owns the fleet ledger's domain: the rows the events stream
// is projected into (sessions, samples, usage per user per day, audit,
// servers), the coded errors, the store interface every database engine
// implements (composed per concern, so a consumer depends on what it uses),
// and the database-neutral logic that turns a batch of events into row
// changes exactly once (Apply, Project).
//
// Engines live in their own packages with their own SQL and migrations
// (ledger/sqlite, ledger/postgres); ledger/ledgertest is the conformance
// suite both pass. docs/ledger.md is the reference.
package ledger
