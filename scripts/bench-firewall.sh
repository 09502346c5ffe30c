#!/usr/bin/env bash
# In-process firewall benchmark (package firewall, BenchmarkCycle and
# BenchmarkOpenAuto): one connect+disconnect cycle of a restricted user with
# each backend called as the hook calls it, against Debian's ocserv-fw
# exec'd twice, interleaved, inside a private network namespace. Needs
# root. ROUNDS (default 30). Writes bench/results/firewall-inprocess.md (a
# block of docs/benchmarks.md) with go test's own output.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/benchlib.sh
bench_needs_root "a network namespace and firewall rules"
out=$(bench_results)
rounds=${ROUNDS:-30}
raw=$(go test -tags e2e -count=1 -p 1 -run '^$' -bench 'BenchmarkCycle|BenchmarkOpenAuto' \
	-benchtime "${rounds}x" ./firewall/)
{
	bench_run_line
	echo "$rounds rounds (\`ROUNDS\`); \`go test -bench\`'s own output (the \`-median-µs\` and \`-speedup-x\` columns are the medians and ratios of the run):"
	echo
	echo '```'
	printf '%s\n' "$raw" | grep -E '^(Benchmark|goos|goarch|cpu|pkg)|bench_e2e_test'
	echo '```'
} >"$out/firewall-inprocess.md"
cat "$out/firewall-inprocess.md"
