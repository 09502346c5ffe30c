#!/usr/bin/env bash
# Fleet ledger benchmarks (docs/design.md performance goals; docs/ledger.md):
# ingest by the real service from a backlog on the stream into SQLite and
# PostgreSQL against the same rows written raw (batched inserts, COPY) into
# the same database in the same run, with the service's own peak RSS at a
# tenth and all of the backlog; then queries on generated data (10 million
# sessions, 100 million samples by default), generated once with each
# database's bulk path and cached in LEDGER_BENCH_CACHE. Writes
# bench/results/ledger.md and the block of docs/benchmarks-ledger.md.
#
# PART=ingest or PART=queries runs one part (default all): the other
# part's section is kept as it was (from bench/results/ledger.md, or the
# document's block when there is none) under a line naming the run it
# comes from.
# Run it under the shared lock: flock /work/.heavy.lock scripts/bench-ledger.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/benchlib.sh
part=${PART:-all}
case $part in
ingest | queries | all) ;;
*)
	echo "bench-ledger.sh: PART is ingest, queries or all, not \"$part\"" >&2
	exit 2
	;;
esac
results=$(bench_results)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-ledger.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
events=${LEDGER_BENCH_EVENTS:-1000000}
sessions=${LEDGER_BENCH_SESSIONS:-10000000}
doc=docs/benchmarks-ledger.md

# previous: the last results (bench/results/ledger.md, else the block of
# the document) for the part not run.
previous() {
	if [ -f "$results/ledger.md" ]; then
		cat "$results/ledger.md"
	else
		awk '/^<!-- END GENERATED ledger/ { on = 0 } on { print } /^<!-- BEGIN GENERATED ledger / { on = 1 }' "$doc"
	fi
}

# keep SECTION (Ingest or Queries): that section of the previous results,
# from its "**SECTION**" paragraph to the next section, preceded by a line
# naming the run its figures come from (the one a kept section already
# names, else the run line at the top).
keep() {
	previous >"$tmp/previous.md"
	if ! grep -q "^\*\*$1\*\*" "$tmp/previous.md"; then
		echo "bench-ledger.sh: no $1 section in the previous results to keep; run PART=all" >&2
		exit 1
	fi
	awk -v s="$1" '
		NR == 1 && /^Run of / { top = $0 }
		/^\*\*(Ingest|Queries)\*\*/ { on = (index($0, "**" s "**") == 1) }
		/^_(Ingest|Queries) figures kept from the / { if (index($0, "_" s " ") == 1) { from = $0; sub(/^_[A-Za-z]+ figures kept from the /, "", from); sub(/_$/, "", from) }; next }
		on { body = body $0 "\n" }
		END {
			if (from == "") { from = top; sub(/^Run of /, "run of ", from) }
			sub(/\n+$/, "\n", body)
			printf "_%s figures kept from the %s_\n\n%s", s, from, body
		}' "$tmp/previous.md"
}

{
	bench_run_line
	echo
	echo "PostgreSQL $(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}')."
	echo
} >"$tmp/ledger.md"
if [ "$part" = queries ]; then
	keep Ingest >>"$tmp/ledger.md"
else
	{
		echo "**Ingest**: a backlog of workload events (connects, accounting every 5 minutes, disconnects, lost and roaming sessions, audits; 20 servers) on the stream, drained by the real \`ledger serve\` with its defaults; *raw* writes the same final rows (every table, in arrival order) into a fresh database of the same engine, each table in chunks of as many rows as the ledger puts events in one transaction (\`LEDGER_BATCH\`), each chunk committed: batched inserts on SQLite, COPY on PostgreSQL (whose table also gives one COPY per table, committed once, with no commit per batch). Peak RSS is the service's own VmHWM; its CPU per event is the CPU time (user and system) the service process used, over the backlog's events."
		echo
	} >>"$tmp/ledger.md"
	# Five runs a row: the raw loops' rate alone moves by a third between
	# runs on this shared machine, and the median of three was a draw.
	LEDGER_BENCH=1 LEDGER_BENCH_EVENTS=$events LEDGER_BENCH_RUNS=${LEDGER_BENCH_RUNS:-5} LEDGER_BENCH_OUT="$tmp/ledger.md" \
		go test -count=1 -timeout 120m -run 'TestBenchIngest$' ./cmd/ledger
fi
if [ "$part" = ingest ]; then
	{
		echo
		keep Queries
	} >>"$tmp/ledger.md"
else
	{
		echo
		echo "**Queries**, through the store as the service runs them (server-side time), on generated data: sessions over 400 days on 20 servers, 100,000 users, a pool of 5,000 VPN addresses per server, 10 samples per session. Usage is every user's total over one month. *Warm* (the goals' figures: a running ledger): the working set read into memory first, then 200 untimed questions, then 1,000 questions of each kind (usage: the median of 5). *Cold* (a ledger just started; not what the goals are about, shown beside them): the machine's page cache emptied and PostgreSQL restarted, no warm-up, then 200 questions of each kind whose first ones find nothing in memory (usage: the first, cold, run). The size is the whole database divided by the millions of sessions (each with its 10 samples, counters and usage rows)."
		echo
	} >>"$tmp/ledger.md"
	LEDGER_BENCH_QUERIES=1 LEDGER_BENCH_COLD_ROWS=1 LEDGER_BENCH_SESSIONS=$sessions LEDGER_BENCH_OUT="$tmp/ledger.md" \
		go test -count=1 -timeout 240m -run 'TestBenchQueries$' ./cmd/ledger
fi
mv "$tmp/ledger.md" "$results/ledger.md"
# make bench rewrites every document's blocks at its end; run alone, this
# script puts its own block in place.
if [ -z "${OUT:-}" ]; then
	go run ./bench/gendocs -results "$results" "$doc"
fi
cat "$results/ledger.md"
