-- A user's open sessions, by user. Aligned with
-- ledger/sqlite/migrations/00008_open_by_user.sql.
--
-- Policy checks and the console's user page ask for one user's open
-- sessions (OpenSessions with a user list). The only index by user,
-- sessions_user, holds every session the user ever had: the query read
-- each of them from the table to test state = 'open', a cost that grew
-- with the user's history (on SQLite, for a user with 500 sessions in
-- the console benchmark's database: about 1000 pages, seconds from a cold
-- disk; PostgreSQL instead filtered every open session of the fleet
-- through sessions_open). This partial index holds open
-- sessions only, in the query's order, so the read is bounded by the
-- sessions open now. Like sessions_open it changes only when a session
-- opens or ends, never on a counter update.

-- +goose Up
CREATE INDEX sessions_open_user ON sessions (username, connected_at, session_uid) WHERE state = 'open';

-- +goose Down
DROP INDEX sessions_open_user;
