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
#
# PART=ingest or PART=queries runs one part alone (default: both); the
# other part's figures are kept from the last results (bench/results/
# ledger.md, or else the document's block), marked with the run they came
# from, so no figure is ever presented as this run's that is not.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/benchlib.sh
results=$(bench_results)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-ledger.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
events=${LEDGER_BENCH_EVENTS:-1000000}
sessions=${LEDGER_BENCH_SESSIONS:-10000000}
part=${PART:-both}
case $part in
both | ingest | queries) ;;
*)
	echo "bench-ledger.sh: PART must be ingest, queries or both, not $part" >&2
	exit 2
	;;
esac
# kept SECTION prints the last results' section (Ingest or Queries): its
# paragraphs and table, preceded by the line naming the run they are from.
kept() {
	local prev=$tmp/prev.md
	if [ -f "$results/ledger.md" ]; then
		cp "$results/ledger.md" "$prev"
	else
		sed -n '/^<!-- BEGIN GENERATED ledger /,/^<!-- END GENERATED ledger/{//!p;}' docs/benchmarks-ledger.md >"$prev"
	fi
	awk -v want="$1" '
		NR == 1 && /^Run of / { run = $0 }
		/^_The .* figures below are from an earlier run/ { note = $0; next }
		/^\*\*(Ingest|Queries)\*\*/ { cur = ($0 ~ "^\\*\\*" want "\\*\\*") }
		cur {
			if (!printed) {
				if (note == "") { sub(/^Run of /, "", run); note = "_The " (want == "Queries" ? "query" : "ingest") " figures below are from an earlier run: the run of " run "_" }
				print note; print ""; printed = 1
			}
			print
		}
		/^\*\*(Ingest|Queries)\*\*/ { note = "" }
		END { if (!printed) exit 1 }
	' "$prev" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
}
{
	bench_run_line
	echo
	echo "PostgreSQL $(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}')."
	echo
} >"$tmp/ledger.md"
if [ "$part" = queries ]; then
	kept Ingest >>"$tmp/ledger.md" || { echo "bench-ledger.sh: no earlier ingest figures to keep; run PART=both" >&2; exit 1; }
else
	{
	echo "**Ingest**: a backlog of workload events (connects, accounting every 5 minutes, disconnects, lost and roaming sessions, audits; 20 servers) on the stream, drained by the real \`ledger serve\` with its defaults; *raw* writes the same final rows (every table, in arrival order) into a fresh database of the same engine, each table in chunks of as many rows as the ledger's batch, each chunk committed: batched inserts on SQLite, COPY on PostgreSQL (whose table also gives one COPY per table, committed once, with no commit per batch). Peak RSS is the service's own VmHWM."
	echo
	} >>"$tmp/ledger.md"
	LEDGER_BENCH=1 LEDGER_BENCH_EVENTS=$events LEDGER_BENCH_OUT="$tmp/ledger.md" \
		go test -count=1 -timeout 120m -run 'TestBenchIngest$' ./cmd/ledger
fi
echo >>"$tmp/ledger.md"
if [ "$part" = ingest ]; then
	kept Queries >>"$tmp/ledger.md" || { echo "bench-ledger.sh: no earlier query figures to keep; run PART=both" >&2; exit 1; }
else
	{
	echo "**Queries**, through the store as the service runs them (server-side time), on generated data: sessions over 400 days on 20 servers, 100,000 users, a pool of 5,000 VPN addresses per server, 10 samples per session. 1,000 questions each after a warm-up; usage is every user's total over one month. The size is the whole database divided by the millions of sessions (each with its 10 samples, counters and usage rows)."
	echo
	} >>"$tmp/ledger.md"
	LEDGER_BENCH_QUERIES=1 LEDGER_BENCH_SESSIONS=$sessions LEDGER_BENCH_OUT="$tmp/ledger.md" \
		go test -count=1 -timeout 240m -run 'TestBenchQueries$' ./cmd/ledger
fi
mv "$tmp/ledger.md" "$results/ledger.md"
# make bench rewrites every document's blocks at its end; run alone, this
# script puts its own block in place.
if [ -z "${OUT:-}" ]; then
	go run ./bench/gendocs -results "$results" docs/benchmarks-ledger.md
fi
cat "$results/ledger.md"
