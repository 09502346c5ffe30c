#!/usr/bin/env bash
# 200 hooks started at once (hook's TestTwoHundredConcurrentHooks, with
# the production budgets), on the repository's disk, TRIALS times (default
# 5) on an otherwise idle disk and TRIALS times beside two writers that
# fsync 64 MiB files in a loop: how many hooks waited past the lock budget
# and took the lock-free fallback path, how many spent their whole budget
# (event in ocserv's log instead), and the longest time a spooled event's
# hook had run. Every trial must pass the test: every event in the spool
# exactly once or in its hook's log, every hook exited 0 within its budget.
# No root needed. Writes bench/results/hook-storm.md (the
# block of docs/spool.md).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/benchlib.sh
out=$(bench_results)
trials=${TRIALS:-5}
work=$(mktemp -d "$out/hook-storm-work.XXXXXX")
writers=()
cleanup() {
	for p in "${writers[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
go test -c -o "$work/hook.test" ./hook
run_line=$(bench_run_line)

trial() { # condition n
	local log
	log=$(cd hook && TMPDIR="$work" "$work/hook.test" -test.run '^TestTwoHundredConcurrentHooks$' -test.count=1 -test.v 2>&1) || {
		printf '%s\n' "$log" >&2
		echo "trial $2 ($1) failed" >&2
		exit 1
	}
	printf '%s\n' "$log" | sed -n "s/.*: \([0-9]*\) of \([0-9]*\) hooks took the fallback path, \([0-9]*\) spent their budget (event in the log), \([0-9]*\) spent it before the event existed; longest run in the hook \([^ ]*\) (budget \([^)]*\)); whole process, fork to exit: median \([^,]*\), max \(.*\)$/| $1 | $2 | \1 of \2 | \3 | \4 | \5 (budget \6) | \7 | \8 |/p"
}
rows=()
for i in $(seq "$trials"); do rows+=("$(trial "idle disk" "$i")"); done
for w in 1 2; do
	(while :; do dd if=/dev/zero of="$work/dd-$w" bs=1M count=64 conv=fsync status=none; done) &
	writers+=($!)
done
for i in $(seq "$trials"); do rows+=("$(trial "two fsyncing writers" "$i")"); done
{
	echo "$run_line"
	echo "$trials trials (\`TRIALS\`) of each condition; the spool on the repository's disk."
	echo
	echo "| condition | trial | on the fallback path | budget spent, event in the log | budget spent before the event | longest time in a hook (spooled events) | whole process, median | whole process, max |"
	echo "|---|---|---|---|---|---|---|---|"
	printf '%s\n' "${rows[@]}"
} >"$out/hook-storm.md"
cat "$out/hook-storm.md"
