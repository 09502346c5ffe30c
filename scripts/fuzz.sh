#!/usr/bin/env bash
# Runs every Go fuzz target in the module briefly: a number of inputs each
# (default 20000x; CI gives fewer), or a duration by hand (scripts/fuzz.sh
# 5m). Counts are the default because go1.26's coordinator can fail a
# duration run at its own deadline on a busy machine (golang/go#75804).
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-20000x}
n=0
for pkg in $(go list ./...); do
	for target in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
		echo "fuzz $pkg $target for $t"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$t" "$pkg"
		n=$((n + 1))
	done
done
[ "$n" -gt 0 ] || { echo "no fuzz targets found" >&2; exit 1; }
echo "ran $n fuzz targets"
