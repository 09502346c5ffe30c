#!/usr/bin/env bash
# Fleet ledger benchmarks (docs/design.md performance goals; docs/ledger.md):
# ingest by the real service from a backlog on the stream into SQLite and
# PostgreSQL against the same rows written raw (batched inserts, COPY) into
# the same database in the same run, with the service's own peak RSS at a
# tenth and all of the backlog; then queries on generated data (10 million
# sessions, 100 million samples by default), generated once with each
# database's bulk path and cached in LEDGER_BENCH_CACHE. Writes
# bench/results/ledger.md and the block of docs/benchmarks-ledger.md.
# Run it under the shared lock: flock /work/.heavy.lock scripts/bench-ledger.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/benchlib.sh
results=$(bench_results)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-ledger.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
events=${LEDGER_BENCH_EVENTS:-1000000}
sessions=${LEDGER_BENCH_SESSIONS:-10000000}
{
	bench_run_line
	echo
	echo "PostgreSQL $(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}')."
	echo
	echo "**Ingest**: a backlog of workload events (connects, accounting every 5 minutes, disconnects, lost and roaming sessions, audits; 20 servers) on the stream, drained by the real \`ledger serve\` with its defaults; *raw* writes the same final rows (every table, in arrival order) into a fresh database of the same engine, batched inserts with as many rows per transaction as the ledger's batch on SQLite and COPY on PostgreSQL. Peak RSS is the service's own VmHWM."
	echo
} >"$tmp/ledger.md"
LEDGER_BENCH=1 LEDGER_BENCH_EVENTS=$events LEDGER_BENCH_OUT="$tmp/ledger.md" \
	go test -count=1 -timeout 120m -run 'TestBenchIngest$' ./cmd/ledger
{
	echo
	echo "**Queries**, through the store as the service runs them (server-side time), on generated data: sessions over 400 days on 20 servers, 100,000 users, a pool of 5,000 VPN addresses per server, 10 samples per session. 1,000 questions each after a warm-up; usage is every user's total over one month. The size is the whole database divided by the millions of sessions (each with its 10 samples, counters and usage rows)."
	echo
} >>"$tmp/ledger.md"
LEDGER_BENCH_QUERIES=1 LEDGER_BENCH_SESSIONS=$sessions LEDGER_BENCH_OUT="$tmp/ledger.md" \
	go test -count=1 -timeout 240m -run 'TestBenchQueries$' ./cmd/ledger
mv "$tmp/ledger.md" "$results/ledger.md"
# make bench rewrites every document's blocks at its end; run alone, this
# script puts its own block in place.
if [ -z "${OUT:-}" ]; then
	go run ./bench/gendocs -results "$results" docs/benchmarks-ledger.md
fi
cat "$results/ledger.md"
