-- Ingest and who --ip --at at scale. Aligned with
-- ledger/sqlite/migrations/00005_ingest_who.sql.
--
-- usage_daily and usage_monthly: every accounting sample adds to its
-- user's day and month rows; with room left on each page the update is
-- heap-only (no new index entries), as session_counters' already is.
-- Only pages filled from now on keep the room.
--
-- The address indexes of who --ip --at carry ended_at and session_uid, so
-- the bounded scan of an address's newest sessions reads the index alone
-- and fetches only the sessions that were still open at the instant (an
-- address reused a hundred times used to fetch a hundred rows and their
-- counters, from disk when cold).

-- +goose Up
ALTER TABLE usage_daily SET (fillfactor = 50);
ALTER TABLE usage_monthly SET (fillfactor = 50);
DROP INDEX sessions_vpn4;
DROP INDEX sessions_vpn6;
DROP INDEX sessions_real;
CREATE INDEX sessions_vpn4 ON sessions (vpn_ipv4, connected_at) INCLUDE (ended_at, session_uid) WHERE vpn_ipv4 IS NOT NULL;
CREATE INDEX sessions_vpn6 ON sessions (vpn_ipv6, connected_at) INCLUDE (ended_at, session_uid) WHERE vpn_ipv6 IS NOT NULL;
CREATE INDEX sessions_real ON sessions (ip_real, connected_at) INCLUDE (ended_at, session_uid) WHERE ip_real IS NOT NULL;

-- +goose Down
DROP INDEX sessions_vpn4;
DROP INDEX sessions_vpn6;
DROP INDEX sessions_real;
CREATE INDEX sessions_vpn4 ON sessions (vpn_ipv4, connected_at) WHERE vpn_ipv4 IS NOT NULL;
CREATE INDEX sessions_vpn6 ON sessions (vpn_ipv6, connected_at) WHERE vpn_ipv6 IS NOT NULL;
CREATE INDEX sessions_real ON sessions (ip_real, connected_at) WHERE ip_real IS NOT NULL;
ALTER TABLE usage_monthly RESET (fillfactor);
ALTER TABLE usage_daily RESET (fillfactor);
