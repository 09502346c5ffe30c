#!/usr/bin/env bash
# make bench: every scripts/bench-*.sh, results in bench/results/, then the
# README's and docs/' generated blocks rewritten from them (bench/gendocs;
# only the blocks: the text around them is written by hand). As a normal
# user the benchmarks that need root (network namespaces, firewall rules)
# say they are skipped and their blocks keep their last figures; as root
# everything runs. On a shared machine run it under a lock other heavy jobs
# also take, e.g. flock /work/.heavy.lock make bench.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f bench/results/*.md # a block is rewritten only from this run's results
for s in scripts/bench-*.sh; do
	echo "== $s"
	"$s"
done
echo "== scripts/check-units.sh (the units' exposure, for docs/install.md)"
./scripts/check-units.sh
echo "== docs"
go run ./bench/gendocs -results bench/results README.md docs/*.md
