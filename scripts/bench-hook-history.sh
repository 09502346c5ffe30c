#!/usr/bin/env bash
# What made the hook as fast as it is: the hook as it was at the commits
# that changed its start-up cost, rebuilt from the repository's history and
# measured in one interleaved run against the floor (bench/procbench), with
# the same connect event, config and fsync as scripts/bench-hook.sh. Only
# the ratios to the floor of this one run are compared.
# Writes bench/results/hook-history.json and hook-history.md (the block of
# docs/benchmarks.md). RUNS rounds (default 300).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/benchlib.sh
runs=${RUNS:-300}
out=$(bench_results)
run_line=$(bench_run_line) # now: the connect environment below replaces PATH

# commit | what it changed (the table's rows, oldest first)
steps=(
	"3169647|first version: encoding/json, google/uuid, crypto/rand, atomic session-file writes"
	"2fabba2|hand-written event encoder, session state written in place, getrandom(2) instead of crypto/rand (no FIPS module linked), raw small-file reads"
	"a2089b6|the firewall (nftables over netlink, iptables) linked into the same binary for --fw"
	"5fb2afa|firewall rules carry their owning session; go-iptables for --removeall; bounded helper waits"
)

work=$(mktemp -d "$out/hook-history-work.XXXXXX")
trap 'rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$work/floor" ./bench/floor
go build -o "$work/procbench" ./bench/procbench
make -s build >/dev/null
mkdir -m 0750 "$work/floorq"

i=0
for s in "${steps[@]}"; do
	i=$((i + 1))
	mkdir "$work/src-$i"
	git archive "${s%%|*}" | tar -x -C "$work/src-$i"
	(cd "$work/src-$i" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$work/hook-$i" ./cmd/hook)
done

# ocserv's environment for a connect (its PATH included), as the hook sees it.
while IFS= read -r kv; do [ -n "$kv" ] && export "${kv?}"; done <testdata/ocserv-hook-env/connect.env

args=()
add() { # name binary
	mkdir -m 0750 "$work/spool-$1"
	# HOOK_BUDGET: as in bench-hook.sh, a stall must not abort the run.
	printf 'SERVER_ID=bench\nSPOOL_DIR=%s/spool-%s\nSPOOL_FSYNC=on\nHOOK_BUDGET=10s\n' "$work" "$1" >"$work/agent-$1.env"
	"$2" --config "$work/agent-$1.env" # makes the spool; must be silent
	args+=(:: "$1" "$2" --config "$work/agent-$1.env")
}
i=0
for s in "${steps[@]}"; do
	i=$((i + 1))
	add "${s%%|*}" "$work/hook-$i"
done
add now "$root/bin/hook"
line=$(head -n1 "$work/spool-now/queue.ndjson")

"$work/procbench" -runs "$runs" -warmup 30 -json "$out/hook-history.json" -- \
	floor "$work/floor" "$work/floorq/queue.ndjson" "$line" "${args[@]}" >"$work/table.md"

ratio() { jq -r --arg n "$1" '.results[] | select(.name == $n) | .ratio_to_first' "$out/hook-history.json"; }
{
	echo "$run_line"
	echo "$runs interleaved rounds (\`RUNS\`) of the floor and each version; every round's time is in \`bench/results/hook-history.json\`."
	echo
	echo "| version | what changed | binary | hook / floor |"
	echo "|---|---|---|---|"
	i=0
	for s in "${steps[@]}"; do
		i=$((i + 1))
		c=${s%%|*}
		printf '| %s | %s | %s bytes | %.2fx |\n' "$c" "${s#*|}" "$(stat -c %s "$work/hook-$i")" "$(ratio "$c")"
	done
	printf '| %s (this run) | everything since | %s bytes | %.2fx |\n' "$(git describe --always --dirty)" "$(stat -c %s bin/hook)" "$(ratio now)"
	echo
	echo "Every version's own medians:"
	echo
	cat "$work/table.md"
} >"$out/hook-history.md"
cat "$out/hook-history.md"
