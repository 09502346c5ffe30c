#!/usr/bin/env bash
# Fleet policy benchmarks (docs/policy.md), each against a baseline taken
# in the same run:
#  - policy-hook: the hook's cost of the verdicts check at connect, whole
#    process, fsync on, interleaved rounds (bench/procbench) against the
#    floor (a minimal Go program appending one line) and the hook with
#    POLICY=off; with POLICY=on and no verdict for the user (the common
#    case) and with one (read and decoded);
#  - policy-evaluation: a full sweep of POLICY_BENCH_USERS (default
#    100,000) users with a month of usage, against the store's own reads;
#    the bucket's publish volume;
#  - policy-enforcement (root: real ocserv in network namespaces): the
#    accounting event that crosses a quota → the session's disconnect
#    event, p50/p99, against an operator's kick in the same bed.
# Writes bench/results/policy-{hook,evaluation,enforcement}.md (the blocks
# of docs/policy.md).
#
# make bench runs it whole under the shared lock. Run alone, BENCH_LOCK=FILE
# takes that lock only around the measured parts: the builds and the SQLite
# database of the evaluation (seeded ahead into POLICY_BENCH_CACHE, kept for
# the day) are made outside it. POLICY_BENCH_ONLY=hook|evaluation|enforcement
# runs one part.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/benchlib.sh
out=$(bench_results)
run_line=$(bench_run_line)
runs=${RUNS:-300}
work=$(mktemp -d "$out/policy-work.XXXXXX")
trap 'rm -rf "$work"' EXIT
make -s build >/dev/null
# locked CMD...: CMD under BENCH_LOCK when set (never under make bench's own
# lock: a second flock of the same file from a child would wait forever).
locked() {
	if [ -n "${BENCH_LOCK:-}" ]; then flock "$BENCH_LOCK" "$@"; else "$@"; fi
}

part() { [ -z "${POLICY_BENCH_ONLY:-}" ] || [ "$POLICY_BENCH_ONLY" = "$1" ]; }

# --- the hook's check ------------------------------------------------------
if part hook; then
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$work/floor" ./bench/floor
go build -o "$work/procbench" ./bench/procbench
mkdir -m 0750 "$work/off" "$work/on" "$work/onv" "$work/floorq"
# A generous budget, the same for every variant: a disk that stalls for
# half a second on a shared machine must slow a round, not end the run.
printf 'SERVER_ID=bench\nSPOOL_DIR=%s/off\nSPOOL_FSYNC=on\nHOOK_BUDGET=5s\n' "$work" >"$work/off.env"
printf 'SERVER_ID=bench\nSPOOL_DIR=%s/on\nSPOOL_FSYNC=on\nHOOK_BUDGET=5s\nPOLICY=on\nPOLICY_MAX_AGE=168h\n' "$work" >"$work/on.env"
printf 'SERVER_ID=bench\nSPOOL_DIR=%s/onv\nSPOOL_FSYNC=on\nHOOK_BUDGET=5s\nPOLICY=on\nPOLICY_MAX_AGE=168h\n' "$work" >"$work/onv.env"
for d in on onv; do
	mkdir -m 0750 "$work/$d/verdicts"
	install -m 0640 /dev/null "$work/$d/verdicts/.fresh"
done
# alice (the captured environment's user) under a session limit she has
# not reached: the hook reads and decodes her verdict, then admits her.
install -m 0640 /dev/null "$work/onv/verdicts/$(printf alice | od -An -tx1 | tr -d ' \n')"
printf '{"v":1,"user":"alice","allowed":true,"sessions":{"max":2,"on_excess":"refuse","held":{"vpn2":1}},"decided":"%s"}' \
	"$(date -u +%FT%TZ)" >"$work/onv/verdicts/$(printf alice | od -An -tx1 | tr -d ' \n')"
(
	while IFS= read -r kv; do [ -n "$kv" ] && export "${kv?}"; done <testdata/ocserv-hook-env/connect.env
	bin/hook --config "$work/off.env"
	line=$(head -n1 "$work/off/queue.ndjson")
	locked "$work/procbench" -runs "$runs" -warmup 30 -json "$work/hook.json" -- \
		floor "$work/floor" "$work/floorq/queue.ndjson" "$line" :: \
		hook "$root/bin/hook" --config "$work/off.env" :: \
		hook-policy "$root/bin/hook" --config "$work/on.env" :: \
		hook-policy-verdict "$root/bin/hook" --config "$work/onv.env" >"$work/hook-table.md"
)
grep -q '"verdict":{"mirror":"fresh"' "$work/on/queue.ndjson" || { echo "bench-policy: the hook with POLICY=on did not check a fresh mirror" >&2; exit 1; }
median() { jq -r --arg n "$1" '.results[] | select(.name == $n) | .median' "$work/hook.json"; }
f=$(median floor) h=$(median hook) p=$(median hook-policy) v=$(median hook-policy-verdict)
{
	echo "$run_line"
	echo "$runs interleaved rounds, whole process, one connect event, fsync on."
	echo
	cat "$work/hook-table.md"
	echo
	awk -v f="$f" -v h="$h" -v p="$p" -v v="$v" 'BEGIN {
		printf "- hook, POLICY=off / floor: %.2fx; POLICY=on, no verdict for the user / floor: **%.2fx**; with a verdict read / floor: %.2fx (goal for the hook: ≤ 1.3x)\n", h/f, p/f, v/f
		printf "- the check itself: POLICY=on / POLICY=off: %.3fx (no verdict), %.3fx (a verdict read)\n", p/h, v/h
	}'
} >"$out/policy-hook.md"
cat "$out/policy-hook.md"
fi

# --- evaluation at scale ---------------------------------------------------
if part evaluation; then
{
	echo "$run_line"
	echo
} >"$work/eval.md"
export POLICY_BENCH_CACHE=${POLICY_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ocserv-telemetry-bench}
export POLICY_BENCH_USERS=${POLICY_BENCH_USERS:-100000}
go test -c -o "$work/engine.test" ./policy/engine
# The SQLite database, seeded ahead (outside the lock; kept for the day).
(cd policy/engine && POLICY_BENCH=1 POLICY_BENCH_SEED_ONLY=1 POLICY_BENCH_DIR="$work" \
	"$work/engine.test" -test.count=1 -test.timeout 60m -test.run 'TestBenchEvaluation$')
(cd policy/engine && POLICY_BENCH=1 POLICY_BENCH_OUT="$work/eval-body.md" POLICY_BENCH_DIR="$work" \
	POLICY_BENCH_RUNS=${POLICY_BENCH_RUNS:-5} \
	locked "$work/engine.test" -test.count=1 -test.timeout 60m -test.run 'TestBenchEvaluation$')
cat "$work/eval-body.md" >>"$work/eval.md"
mv "$work/eval.md" "$out/policy-evaluation.md"
cat "$out/policy-evaluation.md"
fi

# --- enforcement in the bed ------------------------------------------------
part enforcement || exit 0
bench_needs_root "network namespaces, real ocserv"
{
	echo "$run_line"
	echo
} >"$work/enf.md"
go test -tags e2e -c -o "$work/e2e.test" ./e2e
(cd e2e && POLICY_BENCH=1 POLICY_BENCH_OUT="$work/enf-body.md" POLICY_BENCH_RUNS=${POLICY_BENCH_ENFORCE_RUNS:-20} \
	locked "$work/e2e.test" -test.count=1 -test.timeout 30m -test.run 'TestBenchPolicyEnforcement$')
cat "$work/enf-body.md" >>"$work/enf.md"
mv "$work/enf.md" "$out/policy-enforcement.md"
cat "$out/policy-enforcement.md"
