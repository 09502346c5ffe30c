-- Fleet policy (docs/policy.md), SQLite. Aligned with
-- ledger/postgres/migrations/00004_policy.sql. Times are INTEGER Unix
-- microseconds (UTC); days TEXT YYYY-MM-DD; JSON as TEXT. None of these
-- tables is a projection of the events stream: replay does not rebuild
-- them and Reset does not empty them (policies are set by operators, the
-- rest is the engine's own state).

-- +goose Up
-- One row per policy; spec is package policy's Policy as JSON (validated
-- by Go on the way in and out), so a new kind needs no migration.
CREATE TABLE policies (
	scope      TEXT NOT NULL CHECK (scope IN ('user', 'group')),
	name       TEXT NOT NULL,
	spec       TEXT NOT NULL,
	updated_at INTEGER NOT NULL,
	updated_by TEXT NOT NULL,
	PRIMARY KEY (scope, name)
) WITHOUT ROWID;

-- A counter every policy change and reset moves, so the active engine
-- notices a change taken by another instance.
CREATE TABLE policy_state (
	id       INTEGER PRIMARY KEY CHECK (id = 1),
	revision INTEGER NOT NULL
);
INSERT INTO policy_state VALUES (1, 0);

-- Users the ledger has seen admitted: their latest group and first use.
CREATE TABLE policy_users (
	username     TEXT PRIMARY KEY,
	groupname    TEXT NOT NULL,
	first_use    INTEGER NOT NULL,
	last_connect INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX policy_users_group ON policy_users (groupname);

-- The latest reset of a user's quota or time usage: base is what had
-- been counted in the window at that moment.
CREATE TABLE policy_resets (
	username     TEXT NOT NULL,
	kind         TEXT NOT NULL CHECK (kind IN ('quota', 'time')),
	window_start INTEGER,
	at           INTEGER NOT NULL,
	reset_by     TEXT NOT NULL,
	base_in      INTEGER NOT NULL,
	base_out     INTEGER NOT NULL,
	base_seconds INTEGER NOT NULL,
	PRIMARY KEY (username, kind)
) WITHOUT ROWID;

-- The engine's latest verdict per user (absent: allowed, no limit).
CREATE TABLE policy_verdicts (
	username TEXT PRIMARY KEY,
	allowed  INTEGER NOT NULL,
	reason   TEXT NOT NULL,
	until    INTEGER,
	decided  INTEGER NOT NULL,
	body     TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX policy_verdicts_denied ON policy_verdicts (username) WHERE allowed = 0;

-- Notices sent, once each (notice_id is derived from what the notice is
-- about), and their webhook delivery.
CREATE TABLE policy_notices (
	notice_id    BLOB PRIMARY KEY,
	username     TEXT NOT NULL,
	kind         TEXT NOT NULL,
	time         INTEGER NOT NULL,
	body         TEXT NOT NULL,
	webhook      TEXT NOT NULL CHECK (webhook IN ('none', 'pending', 'delivered', 'failed')),
	attempts     INTEGER NOT NULL,
	last_error   TEXT NOT NULL,
	next_attempt INTEGER,
	delivered_at INTEGER
);
CREATE INDEX policy_notices_time ON policy_notices (time, notice_id);
CREATE INDEX policy_notices_pending ON policy_notices (next_attempt) WHERE webhook = 'pending';

-- Kicks the engine put on servers, lifted when the verdict allows again.
CREATE TABLE policy_kicks (
	username  TEXT NOT NULL,
	server_id TEXT NOT NULL,
	at        INTEGER NOT NULL,
	reason    TEXT NOT NULL,
	PRIMARY KEY (username, server_id)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE policy_kicks;
DROP TABLE policy_notices;
DROP TABLE policy_verdicts;
DROP TABLE policy_resets;
DROP TABLE policy_users;
DROP TABLE policy_state;
DROP TABLE policies;
