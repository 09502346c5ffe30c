#!/usr/bin/env bash
# Hook benchmark: whole-process time of one connect event with fsync on,
# in the same run as (a) the floor, a minimal Go program that appends one
# line and fsyncs it, and (b) shell writers: the bare flock + printf >> +
# sync, and one doing the hook's job the way the seed's bash writer does
# (seq file, uuid, date, printf, sync). Interleaved rounds (bench/procbench)
# because these machines are noisy; only ratios mean anything.
# Goals (docs/design.md): hook <= 1.3x floor; shell >= 4x hook.
# Writes bench/results/hook.json (every round), hook.md (the block of
# docs/benchmarks.md) and hook-summary.md (the README's). RUNS rounds
# (default 500).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/benchlib.sh
runs=${RUNS:-500}
out=$(bench_results)
run_line=$(bench_run_line) # now: the connect environment below replaces PATH
# On the repository's disk, not a tmpfs: fsync must reach a real device.
work=$(mktemp -d "$out/hook-work.XXXXXX")
trap 'rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$work/floor" ./bench/floor
go build -o "$work/procbench" ./bench/procbench
make -s build >/dev/null
mkdir -m 0750 "$work/spool" "$work/shell" "$work/seed" "$work/floorq"
# HOOK_BUDGET: a stall on a busy machine must cost the round its time,
# not abort the run (procbench fails on any stderr); medians are unaffected.
printf 'SERVER_ID=bench\nSPOOL_DIR=%s/spool\nSPOOL_FSYNC=on\nHOOK_BUDGET=10s\n' "$work" >"$work/agent.env"

# ocserv's environment for a connect, as the hook sees it.
while IFS= read -r kv; do [ -n "$kv" ] && export "${kv?}"; done <testdata/ocserv-hook-env/connect.env
bin/hook --config "$work/agent.env"
line=$(head -n1 "$work/spool/queue.ndjson") # the same bytes for the floor and the bare shell

"$work/procbench" -runs "$runs" -warmup 30 -json "$out/hook.json" -- \
	floor "$work/floor" "$work/floorq/queue.ndjson" "$line" :: \
	hook "$root/bin/hook" --config "$work/agent.env" :: \
	shell-bare /bin/sh "$root/bench/shell-writer.sh" "$work/shell" "$line" :: \
	shell-seed /bin/bash "$root/bench/shell-writer-seed.sh" "$work/seed" alice >"$work/table.md"

median() { jq -r --arg n "$1" '.results[] | select(.name == $n) | .median' "$out/hook.json"; }
f=$(median floor) h=$(median hook) s=$(median shell-bare) b=$(median shell-seed)
events=$(wc -l <"$work/spool/queue.ndjson")
{
	echo "$run_line"
	echo "$runs interleaved rounds (\`RUNS\`), $((runs + 30)) with the warm-up; every round's time of every command is in \`bench/results/hook.json\`."
	echo
	cat "$work/table.md"
	echo
	awk -v f="$f" -v h="$h" -v s="$s" -v b="$b" 'BEGIN {
		printf "- hook / floor: **%.2fx** (goal ≤ 1.3x)\n", h/f
		printf "- seed-style shell writer (seq, uuid, date, printf, sync) / hook: **%.2fx** (goal ≥ 4x)\n", b/h
		printf "- bare shell writer (flock + printf + sync, none of the hook'"'"'s work) / hook: %.2fx\n", s/h
		printf "- bare shell writer / floor: %.2fx\n", s/f
	}'
	echo "- hook binary: $(stat -c %s bin/hook) bytes (stripped, static); events the hook wrote in this run: $events"
} >"$out/hook.md"
awk -v f="$f" -v h="$h" -v b="$b" -v d="$(date -u +%F)" -v r="$runs" 'BEGIN {
	printf "Measured by `scripts/bench-hook.sh` (%s, %d interleaved rounds, [docs/benchmarks.md](docs/benchmarks.md#hook-one-connect-event-fsync-on)): one connect event, fsync on, whole process: the hook took **%.2fx** the time of a minimal Go program that appends the same line and fsyncs it (goal ≤ 1.3x); a shell writer doing its job the seed'"'"'s way took **%.1fx** the hook'"'"'s (goal ≥ 4x).\n", d, r, h/f, b/h
}' >"$out/hook-summary.md"
cat "$out/hook.md" "$out/hook-summary.md"
