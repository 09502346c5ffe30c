#!/usr/bin/env bash
# make bench: every benchmark script, results under bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
for s in scripts/bench-*.sh; do
	echo "== $s"
	"$s"
done
