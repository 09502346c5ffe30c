# shellcheck shell=bash
# Sourced by the scripts/bench-*.sh: where results go, and the line that
# says which run a generated block's figures come from.

# results: bench/results/, or $OUT.
bench_results() {
	local out=${OUT:-$(pwd)/bench/results}
	mkdir -p "$out"
	printf '%s\n' "$out"
}

# bench_run_line: the date, the machine and the code of this run, as the
# first line of a generated block.
bench_run_line() {
	local cpu mem commit
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
	mem=$(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
	commit=$(git describe --always --dirty 2>/dev/null || echo unknown)
	printf 'Run of %s UTC on %s, %s cores, %s, Linux %s; %s; commit %s.\n' \
		"$(date -u '+%Y-%m-%d %H:%M')" "${cpu:-an unknown CPU}" "$(nproc)" "$mem" "$(uname -r)" \
		"$(go version | cut -d' ' -f3)" "$commit"
}

# bench_needs_root: exit 0 with a message (the run goes on without this
# benchmark) unless root.
bench_needs_root() {
	if [ "$(id -u)" != 0 ]; then
		echo "$(basename "$0"): skipped: needs root ($1); the docs keep this block's last figures" >&2
		exit 0
	fi
}
