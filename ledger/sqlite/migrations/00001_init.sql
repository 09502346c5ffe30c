-- The ledger's first schema (SQLite). Versions are aligned with
-- ledger/postgres/migrations: the same number is the same schema.
-- Times are INTEGER Unix microseconds (UTC), NULL when unknown; days are
-- TEXT YYYY-MM-DD; UUIDs are 16-byte BLOBs; optional addresses are NULL
-- when absent so their partial indexes stay small.

-- +goose Up
CREATE TABLE applied_events (
	event_id   BLOB PRIMARY KEY,
	stream_seq INTEGER NOT NULL,
	event_time INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX applied_events_time ON applied_events (event_time);

CREATE TABLE ingest_state (
	id              INTEGER PRIMARY KEY CHECK (id = 1),
	stream_seq      INTEGER NOT NULL,
	stream_time     INTEGER,
	last_event_time INTEGER,
	applied         INTEGER NOT NULL,
	duplicates      INTEGER NOT NULL,
	rejected        INTEGER NOT NULL,
	expired         INTEGER NOT NULL
);
INSERT INTO ingest_state VALUES (1, 0, NULL, NULL, 0, 0, 0, 0);

CREATE TABLE rejected_events (
	stream_seq INTEGER PRIMARY KEY,
	subject    TEXT NOT NULL,
	event_id   TEXT NOT NULL,
	reason     TEXT NOT NULL,
	payload    BLOB NOT NULL,
	received   INTEGER NOT NULL
);

CREATE TABLE sessions (
	session_uid      BLOB PRIMARY KEY,
	logical_uid      BLOB NOT NULL,
	server_id        TEXT NOT NULL,
	spool_id         TEXT NOT NULL,
	username         TEXT NOT NULL,
	groupname        TEXT NOT NULL,
	vhost            TEXT NOT NULL,
	worker_id        INTEGER NOT NULL,
	device           TEXT NOT NULL,
	ip_real          TEXT,
	ip_real_local    TEXT,
	vpn_ipv4         TEXT,
	vpn_ipv4_local   TEXT,
	vpn_ipv6         TEXT,
	vpn_ipv6_local   TEXT,
	hostname         TEXT NOT NULL,
	user_agent       TEXT NOT NULL,
	device_type      TEXT NOT NULL,
	device_platform  TEXT NOT NULL,
	cookie_id        TEXT NOT NULL,
	connected_at     INTEGER NOT NULL,
	connected_coarse INTEGER NOT NULL,
	ended_at         INTEGER,
	ended_coarse     INTEGER NOT NULL,
	state            TEXT NOT NULL,
	end_reason       TEXT NOT NULL,
	origin           TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions (username, connected_at, session_uid);
CREATE INDEX sessions_server ON sessions (server_id, connected_at, session_uid);
CREATE INDEX sessions_connected ON sessions (connected_at, session_uid);
CREATE INDEX sessions_logical ON sessions (logical_uid);
CREATE INDEX sessions_ended ON sessions (ended_at);
CREATE INDEX sessions_vpn4 ON sessions (vpn_ipv4, connected_at) WHERE vpn_ipv4 IS NOT NULL;
CREATE INDEX sessions_vpn6 ON sessions (vpn_ipv6, connected_at) WHERE vpn_ipv6 IS NOT NULL;
CREATE INDEX sessions_real ON sessions (ip_real, connected_at) WHERE ip_real IS NOT NULL;
CREATE INDEX sessions_open ON sessions (server_id) WHERE state = 'open';

-- The counters every accounting sample moves, apart from the wide row and
-- its indexes, so the frequent update touches a narrow row and one index
-- (on PostgreSQL, with room on the page for heap-only updates).
CREATE TABLE session_counters (
	session_uid    BLOB PRIMARY KEY,
	bytes_in       INTEGER NOT NULL,
	bytes_out      INTEGER NOT NULL,
	seconds        INTEGER NOT NULL,
	samples        INTEGER NOT NULL,
	last_sample_at INTEGER,
	settled        INTEGER NOT NULL,
	acct_in        INTEGER NOT NULL,
	acct_out       INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE session_links (
	session_uid BLOB PRIMARY KEY,
	logical_uid BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE samples (
	session_uid BLOB NOT NULL,
	slot        INTEGER NOT NULL,
	server_id   TEXT NOT NULL,
	observed_at INTEGER NOT NULL,
	bytes_in    INTEGER NOT NULL,
	bytes_out   INTEGER NOT NULL,
	delta_in    INTEGER NOT NULL,
	delta_out   INTEGER NOT NULL,
	duration_s  INTEGER NOT NULL,
	PRIMARY KEY (session_uid, slot)
) WITHOUT ROWID;
CREATE INDEX samples_observed ON samples (observed_at);

CREATE TABLE usage_daily (
	day       TEXT NOT NULL,
	username  TEXT NOT NULL,
	server_id TEXT NOT NULL,
	bytes_in  INTEGER NOT NULL,
	bytes_out INTEGER NOT NULL,
	seconds   INTEGER NOT NULL,
	sessions  INTEGER NOT NULL,
	PRIMARY KEY (day, username, server_id)
) WITHOUT ROWID;
CREATE INDEX usage_daily_user ON usage_daily (username, day);

CREATE TABLE audit (
	event_id   BLOB PRIMARY KEY,
	server_id  TEXT NOT NULL,
	time       INTEGER NOT NULL,
	phase      TEXT NOT NULL,
	action     TEXT NOT NULL,
	subject    TEXT NOT NULL,
	key        TEXT NOT NULL,
	key_name   TEXT NOT NULL,
	role       TEXT NOT NULL,
	ok         INTEGER NOT NULL,
	code       TEXT NOT NULL,
	message    TEXT NOT NULL,
	args       TEXT NOT NULL,
	elapsed_ms INTEGER NOT NULL,
	suppressed INTEGER NOT NULL
);
CREATE INDEX audit_time ON audit (time, event_id);
CREATE INDEX audit_server ON audit (server_id, time);

CREATE TABLE spool_notices (
	event_id   BLOB PRIMARY KEY,
	server_id  TEXT NOT NULL,
	type       TEXT NOT NULL,
	time       INTEGER NOT NULL,
	reason     TEXT NOT NULL,
	events     INTEGER NOT NULL,
	bytes      INTEGER NOT NULL,
	seq_ranges TEXT NOT NULL
);
CREATE INDEX spool_notices_time ON spool_notices (time);

CREATE TABLE servers (
	server_id      TEXT PRIMARY KEY,
	spool_id       TEXT NOT NULL,
	first_seen     INTEGER NOT NULL,
	last_seen      INTEGER NOT NULL,
	last_type      TEXT NOT NULL,
	events         INTEGER NOT NULL,
	dropped_events INTEGER NOT NULL
);

-- +goose Down
DROP TABLE servers;
DROP TABLE spool_notices;
DROP TABLE audit;
DROP TABLE usage_daily;
DROP TABLE samples;
DROP TABLE session_links;
DROP TABLE session_counters;
DROP TABLE sessions;
DROP TABLE rejected_events;
DROP TABLE ingest_state;
DROP TABLE applied_events;
