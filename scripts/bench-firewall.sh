#!/bin/sh
# Connect+disconnect cycle of a restricted user: nftables and iptables
# backends against Debian's /usr/bin/ocserv-fw, interleaved in one run inside
# a private network namespace. Needs root. ROUNDS (default 30) rounds.
set -eu
cd "$(dirname "$0")/.."
exec go test -tags e2e -count=1 -p 1 -run '^$' -bench 'BenchmarkCycle|BenchmarkOpenAuto' \
	-benchtime "${ROUNDS:-30}x" ./firewall/
