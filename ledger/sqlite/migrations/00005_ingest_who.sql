-- Ingest and who --ip --at at scale. Aligned with
-- ledger/postgres/migrations/00005_ingest_who.sql (which also leaves room
-- on the usage tables' pages for heap-only updates, a PostgreSQL matter).
--
-- The address indexes of who --ip --at carry ended_at, so the bounded
-- scan of an address's newest sessions reads the index alone (the rowid
-- is in every index) and fetches only the sessions that were still open
-- at the instant (an address reused a hundred times used to fetch a
-- hundred rows and their counters, from disk when cold).

-- +goose Up
DROP INDEX sessions_vpn4;
DROP INDEX sessions_vpn6;
DROP INDEX sessions_real;
CREATE INDEX sessions_vpn4 ON sessions (vpn_ipv4, connected_at, ended_at) WHERE vpn_ipv4 IS NOT NULL;
CREATE INDEX sessions_vpn6 ON sessions (vpn_ipv6, connected_at, ended_at) WHERE vpn_ipv6 IS NOT NULL;
CREATE INDEX sessions_real ON sessions (ip_real, connected_at, ended_at) WHERE ip_real IS NOT NULL;

-- +goose Down
DROP INDEX sessions_vpn4;
DROP INDEX sessions_vpn6;
DROP INDEX sessions_real;
CREATE INDEX sessions_vpn4 ON sessions (vpn_ipv4, connected_at) WHERE vpn_ipv4 IS NOT NULL;
CREATE INDEX sessions_vpn6 ON sessions (vpn_ipv6, connected_at) WHERE vpn_ipv6 IS NOT NULL;
CREATE INDEX sessions_real ON sessions (ip_real, connected_at) WHERE ip_real IS NOT NULL;
