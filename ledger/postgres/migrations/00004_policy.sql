-- Fleet policy (docs/policy.md), PostgreSQL. Aligned with
-- ledger/sqlite/migrations/00004_policy.sql. None of these tables is a
-- projection of the events stream: replay does not rebuild them and
-- Reset does not empty them (policies are set by operators, the rest is
-- the engine's own state).

-- +goose Up
-- One row per policy; spec is package policy's Policy as JSON (validated
-- by Go on the way in and out), so a new kind needs no migration.
CREATE TABLE policies (
	scope      text NOT NULL CHECK (scope IN ('user', 'group')),
	name       text NOT NULL,
	spec       jsonb NOT NULL,
	updated_at timestamptz NOT NULL,
	updated_by text NOT NULL,
	PRIMARY KEY (scope, name)
);

-- A counter every policy change and reset moves, so the active engine
-- notices a change taken by another instance.
CREATE TABLE policy_state (
	id       int PRIMARY KEY CHECK (id = 1),
	revision bigint NOT NULL
);
INSERT INTO policy_state VALUES (1, 0);

-- Users the ledger has seen admitted: their latest group and first use.
CREATE TABLE policy_users (
	username     text PRIMARY KEY,
	groupname    text NOT NULL,
	first_use    timestamptz NOT NULL,
	last_connect timestamptz NOT NULL
);
CREATE INDEX policy_users_group ON policy_users (groupname);

-- The latest reset of a user's quota or time usage: base is what had
-- been counted in the window at that moment.
CREATE TABLE policy_resets (
	username     text NOT NULL,
	kind         text NOT NULL CHECK (kind IN ('quota', 'time')),
	window_start timestamptz,
	at           timestamptz NOT NULL,
	reset_by     text NOT NULL,
	base_in      bigint NOT NULL,
	base_out     bigint NOT NULL,
	base_seconds bigint NOT NULL,
	PRIMARY KEY (username, kind)
);

-- The engine's latest verdict per user (absent: allowed, no limit).
CREATE TABLE policy_verdicts (
	username text PRIMARY KEY,
	allowed  boolean NOT NULL,
	reason   text NOT NULL,
	until    timestamptz,
	decided  timestamptz NOT NULL,
	body     jsonb NOT NULL
);
CREATE INDEX policy_verdicts_denied ON policy_verdicts (username) WHERE NOT allowed;

-- Notices sent, once each (notice_id is derived from what the notice is
-- about), and their webhook delivery.
CREATE TABLE policy_notices (
	notice_id    uuid PRIMARY KEY,
	username     text NOT NULL,
	kind         text NOT NULL,
	time         timestamptz NOT NULL,
	body         jsonb NOT NULL,
	webhook      text NOT NULL CHECK (webhook IN ('none', 'pending', 'delivered', 'failed')),
	attempts     int NOT NULL,
	last_error   text NOT NULL,
	next_attempt timestamptz,
	delivered_at timestamptz
);
CREATE INDEX policy_notices_time ON policy_notices (time, notice_id);
CREATE INDEX policy_notices_pending ON policy_notices (next_attempt) WHERE webhook = 'pending';

-- Kicks the engine put on servers, lifted when the verdict allows again.
CREATE TABLE policy_kicks (
	username  text NOT NULL,
	server_id text NOT NULL,
	at        timestamptz NOT NULL,
	reason    text NOT NULL,
	PRIMARY KEY (username, server_id)
);

-- +goose Down
DROP TABLE policy_kicks;
DROP TABLE policy_notices;
DROP TABLE policy_verdicts;
DROP TABLE policy_resets;
DROP TABLE policy_users;
DROP TABLE policy_state;
DROP TABLE policies;
