-- The ledger's first schema (PostgreSQL). Versions are aligned with
-- ledger/sqlite/migrations: the same number is the same schema. Times are
-- timestamptz (UTC), NULL when unknown; days are date; UUIDs are uuid;
-- optional addresses are NULL when absent so their partial indexes stay
-- small.

-- +goose Up
CREATE TABLE applied_events (
	event_id   uuid PRIMARY KEY,
	stream_seq bigint NOT NULL,
	event_time timestamptz NOT NULL
);
CREATE INDEX applied_events_time ON applied_events (event_time);

CREATE TABLE ingest_state (
	id              int PRIMARY KEY CHECK (id = 1),
	stream_seq      bigint NOT NULL,
	stream_time     timestamptz,
	last_event_time timestamptz,
	applied         bigint NOT NULL,
	duplicates      bigint NOT NULL,
	rejected        bigint NOT NULL,
	expired         bigint NOT NULL
);
INSERT INTO ingest_state VALUES (1, 0, NULL, NULL, 0, 0, 0, 0);

CREATE TABLE rejected_events (
	stream_seq bigint PRIMARY KEY,
	subject    text NOT NULL,
	event_id   text NOT NULL,
	reason     text NOT NULL,
	payload    bytea NOT NULL,
	received   timestamptz NOT NULL
);

CREATE TABLE sessions (
	session_uid      uuid PRIMARY KEY,
	logical_uid      uuid NOT NULL,
	server_id        text NOT NULL,
	spool_id         text NOT NULL,
	username         text NOT NULL,
	groupname        text NOT NULL,
	vhost            text NOT NULL,
	worker_id        bigint NOT NULL,
	device           text NOT NULL,
	ip_real          text,
	ip_real_local    text,
	vpn_ipv4         text,
	vpn_ipv4_local   text,
	vpn_ipv6         text,
	vpn_ipv6_local   text,
	hostname         text NOT NULL,
	user_agent       text NOT NULL,
	device_type      text NOT NULL,
	device_platform  text NOT NULL,
	cookie_id        text NOT NULL,
	connected_at     timestamptz NOT NULL,
	connected_coarse boolean NOT NULL,
	ended_at         timestamptz,
	ended_coarse     boolean NOT NULL,
	state            text NOT NULL,
	end_reason       text NOT NULL,
	origin           text NOT NULL
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
	session_uid    uuid PRIMARY KEY,
	bytes_in       bigint NOT NULL,
	bytes_out      bigint NOT NULL,
	seconds        bigint NOT NULL,
	samples        bigint NOT NULL,
	last_sample_at timestamptz,
	settled        boolean NOT NULL,
	acct_in        bigint NOT NULL,
	acct_out       bigint NOT NULL
) WITH (fillfactor = 70);

CREATE TABLE session_links (
	session_uid uuid PRIMARY KEY,
	logical_uid uuid NOT NULL
);

CREATE TABLE samples (
	session_uid uuid NOT NULL,
	slot        bigint NOT NULL,
	server_id   text NOT NULL,
	observed_at timestamptz NOT NULL,
	bytes_in    bigint NOT NULL,
	bytes_out   bigint NOT NULL,
	delta_in    bigint NOT NULL,
	delta_out   bigint NOT NULL,
	duration_s  bigint NOT NULL,
	PRIMARY KEY (session_uid, slot)
);
CREATE INDEX samples_observed ON samples (observed_at);

CREATE TABLE usage_daily (
	day       date NOT NULL,
	username  text NOT NULL,
	server_id text NOT NULL,
	bytes_in  bigint NOT NULL,
	bytes_out bigint NOT NULL,
	seconds   bigint NOT NULL,
	sessions  bigint NOT NULL,
	PRIMARY KEY (day, username, server_id)
);
CREATE INDEX usage_daily_user ON usage_daily (username, day);

CREATE TABLE audit (
	event_id   uuid PRIMARY KEY,
	server_id  text NOT NULL,
	time       timestamptz NOT NULL,
	phase      text NOT NULL,
	action     text NOT NULL,
	subject    text NOT NULL,
	key        text NOT NULL,
	key_name   text NOT NULL,
	role       text NOT NULL,
	ok         boolean NOT NULL,
	code       text NOT NULL,
	message    text NOT NULL,
	args       jsonb NOT NULL,
	elapsed_ms bigint NOT NULL,
	suppressed bigint NOT NULL
);
CREATE INDEX audit_time ON audit (time, event_id);
CREATE INDEX audit_server ON audit (server_id, time);

CREATE TABLE spool_notices (
	event_id   uuid PRIMARY KEY,
	server_id  text NOT NULL,
	type       text NOT NULL,
	time       timestamptz NOT NULL,
	reason     text NOT NULL,
	events     bigint NOT NULL,
	bytes      bigint NOT NULL,
	seq_ranges text NOT NULL
);
CREATE INDEX spool_notices_time ON spool_notices (time);

CREATE TABLE servers (
	server_id      text PRIMARY KEY,
	spool_id       text NOT NULL,
	first_seen     timestamptz NOT NULL,
	last_seen      timestamptz NOT NULL,
	last_type      text NOT NULL,
	events         bigint NOT NULL,
	dropped_events bigint NOT NULL
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
