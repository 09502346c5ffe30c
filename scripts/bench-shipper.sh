#!/usr/bin/env bash
# Shipper benchmarks (docs/design.md performance goals), each against a
# baseline taken in the same run: throughput vs a raw PublishMsgAsync loop,
# latency hook exit → subscriber at 100 events/s, drain time and the
# shipper's own peak RSS for a backlog of 1/10 and all of
# SHIPPER_BENCH_BACKLOG events. No root needed. Writes bench/results/
# shipper.md (the block of docs/benchmarks-shipper.md) and
# shipper-summary.md (the README's).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/benchlib.sh
out=$(bench_results)
tmp=$(mktemp -d "$out/shipper-work.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
bench_run_line >"$tmp/shipper.md"
echo >>"$tmp/shipper.md"
: >"$tmp/summary"
SHIPPER_BENCH=1 SHIPPER_BENCH_OUT="$tmp/shipper.md" SHIPPER_BENCH_SUMMARY="$tmp/summary" \
	SHIPPER_BENCH_EVENTS=${SHIPPER_BENCH_EVENTS:-100000} SHIPPER_BENCH_RUNS=${SHIPPER_BENCH_RUNS:-5} \
	SHIPPER_BENCH_BACKLOG=${SHIPPER_BENCH_BACKLOG:-1000000} \
	go test -count=1 -timeout 60m -run 'TestBench(Throughput|Latency|DrainMemory)$' ./cmd/shipper
mv "$tmp/shipper.md" "$out/shipper.md"
{
	# shellcheck disable=SC2016 # backquotes are Markdown
	printf 'Measured by `scripts/bench-shipper.sh` (%s, [docs/benchmarks-shipper.md](docs/benchmarks-shipper.md)): ' "$(date -u +%F)"
	paste -sd';' "$tmp/summary" | sed 's/;/; /g; s/$/./'
} >"$out/shipper-summary.md"
cat "$out/shipper.md" "$out/shipper-summary.md"
