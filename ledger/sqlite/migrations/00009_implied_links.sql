-- A session is its own logical session unless session_links says
-- otherwise. Aligned with ledger/postgres/migrations/00009_implied_links.sql.
--
-- Earlier versions stored that default too, a row per session (written by
-- its first accounting event, which names the session's logical uid):
-- an upsert per session on ingest for a row that says nothing. The
-- ledger now stores the links of roamed workers alone; the rows that
-- only repeat the default are removed, so a database rebuilt by a replay
-- equals one migrated.

-- +goose Up
DELETE FROM session_links WHERE session_uid = logical_uid;

-- +goose Down
INSERT OR IGNORE INTO session_links (session_uid, logical_uid)
	SELECT session_uid, session_uid FROM sessions WHERE logical_uid = session_uid;
