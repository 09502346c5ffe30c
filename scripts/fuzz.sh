#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a short time each (CI uses a
# few seconds; pass a longer duration by hand: scripts/fuzz.sh 5m).
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-10s}
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
