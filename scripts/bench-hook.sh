#!/usr/bin/env bash
# Hook benchmark: whole-process time of one connect event with fsync on,
# in the same run as (a) the floor, a minimal Go program that appends one
# line and fsyncs it, and (b) shell writers: the bare flock + printf >> +
# sync, and one doing the hook's job the way the seed's bash writer does
# (seq file, uuid, date, printf, sync). Interleaved rounds (bench/procbench)
# because these machines are noisy; only ratios mean anything.
# Goals (DESIGN.md): hook <= 1.3x floor; shell >= 4x hook.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${RUNS:-500}
out=${OUT:-$root/bench/results}
mkdir -p "$out"
# On the repository's disk, not a tmpfs: fsync must reach a real device.
work=$(mktemp -d "$out/hook-work.XXXXXX")
trap 'rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$work/floor" ./bench/floor
go build -o "$work/procbench" ./bench/procbench
[ -x bin/hook ] || make build >/dev/null
mkdir -m 0750 "$work/spool" "$work/shell" "$work/seed" "$work/floorq"
printf 'SERVER_ID=bench\nSPOOL_DIR=%s/spool\nSPOOL_FSYNC=on\n' "$work" > "$work/agent.env"

# ocserv's environment for a connect, as the hook sees it.
while IFS= read -r kv; do [ -n "$kv" ] && export "${kv?}"; done < testdata/ocserv-hook-env/connect.env
bin/hook --config "$work/agent.env"
line=$(head -n1 "$work/spool/queue.ndjson") # the same bytes for the floor and the bare shell

"$work/procbench" -runs "$runs" -warmup 30 -json "$out/hook.json" -- \
	floor "$work/floor" "$work/floorq/queue.ndjson" "$line" :: \
	hook "$root/bin/hook" --config "$work/agent.env" :: \
	shell-bare /bin/sh "$root/bench/shell-writer.sh" "$work/shell" "$line" :: \
	shell-seed /bin/bash "$root/bench/shell-writer-seed.sh" "$work/seed" alice >"$out/hook-table.md"

median() { jq -r --arg n "$1" '.results[] | select(.name == $n) | .median' "$out/hook.json"; }
f=$(median floor) h=$(median hook) s=$(median shell-bare) b=$(median shell-seed)
events=$(wc -l <"$work/spool/queue.ndjson")
{
	echo "## Hook: one connect event, fsync on ($runs interleaved rounds, $(nproc) cores, $(date -u +%F))"
	echo
	cat "$out/hook-table.md"
	echo
	awk -v f="$f" -v h="$h" -v s="$s" -v b="$b" 'BEGIN {
		printf "- hook / floor: %.2fx (goal <= 1.3x)\n", h/f
		printf "- bare shell (flock + printf + sync) / hook: %.2fx (goal >= 4x)\n", s/h
		printf "- seed-style shell writer (seq, uuid, date, printf, sync) / hook: %.2fx\n", b/h
	}'
	echo "- hook binary: $(stat -c %s bin/hook) bytes (stripped, static); events the hook wrote in this run: $events"
} | tee "$out/hook.md"
