#!/bin/sh
# Shipper benchmarks (DESIGN.md performance goals), each against a baseline
# taken in the same run: throughput vs a raw PublishMsgAsync loop, latency
# hook exit → subscriber at 100 events/s, drain time and the shipper's own
# peak RSS for a backlog of 1/10 and all of SHIPPER_BENCH_BACKLOG events.
# Writes the figures to docs/benchmarks-shipper.md (or $1).
set -eu
cd "$(dirname "$0")/.."
out=${1:-docs/benchmarks-shipper.md}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
	echo "# Shipper benchmarks"
	echo
	echo "Produced by \`scripts/bench-shipper.sh\` on $(uname -srm), $(nproc) cores, $(go version | cut -d' ' -f3)."
	echo "Medians of repeated runs; every goal is a ratio or a bound measured in the same run."
	echo
} >"$tmp"
SHIPPER_BENCH=1 SHIPPER_BENCH_OUT="$tmp" \
	SHIPPER_BENCH_EVENTS=${SHIPPER_BENCH_EVENTS:-100000} SHIPPER_BENCH_RUNS=${SHIPPER_BENCH_RUNS:-5} \
	SHIPPER_BENCH_BACKLOG=${SHIPPER_BENCH_BACKLOG:-1000000} \
	go test -count=1 -timeout 60m -run 'TestBench(Throughput|Latency|DrainMemory)$' ./cmd/shipper
# The method section is written by hand; carry it over.
if [ -f "$out" ]; then
	{ echo; sed -n '/^## Method and notes/,$p' "$out"; } >>"$tmp"
fi
mv "$tmp" "$out"
trap - EXIT
echo "wrote $out"
