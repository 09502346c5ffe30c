-- A session is its own logical session unless session_links says
-- otherwise. Aligned with ledger/sqlite/migrations/00009_implied_links.sql.
--
-- Earlier versions stored that default too, a row per session (written by
-- its first accounting event, which names the session's logical uid):
-- an upsert per session on ingest for a row that says nothing. The
-- ledger now stores the links of roamed workers alone; the rows that
-- only repeat the default are removed, so a database rebuilt by a replay
-- equals one migrated.
--
-- The usage tables take an update on every transaction that adds to a
-- user's day or month. None of the columns an update changes is indexed,
-- so with room left on the row's page PostgreSQL keeps the new version
-- there and leaves the indexes alone (a heap-only update); at the default
-- fillfactor pages are full and each update writes every index again.
-- session_counters has had this room from the start. It applies to the
-- pages written from now on.

-- +goose Up
DELETE FROM session_links WHERE session_uid = logical_uid;
ALTER TABLE usage_daily SET (fillfactor = 70);
ALTER TABLE usage_monthly SET (fillfactor = 70);

-- +goose Down
ALTER TABLE usage_daily RESET (fillfactor);
ALTER TABLE usage_monthly RESET (fillfactor);
INSERT INTO session_links (session_uid, logical_uid)
	SELECT session_uid, session_uid FROM sessions WHERE logical_uid = session_uid
	ON CONFLICT DO NOTHING;
