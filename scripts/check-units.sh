#!/bin/sh
# scripts/check-units.sh: check the systemd units in systemd/ as install.sh
# installs them. In a scratch root holding the host's own unit files and the
# built binaries at the ExecStart paths, every unit must pass
# `systemd-analyze verify` without a single message, and the
# `systemd-analyze security --offline=true` exposure must stay at or below
# MAX_EXPOSURE (default 3.0) for the shipper, COMMANDER_MAX_EXPOSURE
# (default 4.0) for the command service and LEDGER_MAX_EXPOSURE (default
# 2.0) for the ledger. The figures go into docs/install.md's generated
# block (bench/results/unit-exposure.md; make bench puts it in place).
# Needs make build.
set -eu
cd "$(dirname "$0")/.."
MAX_EXPOSURE=${MAX_EXPOSURE:-3.0}
UNIT=ocserv-telemetry-shipper.service
SHIPPER=/usr/local/bin/ocserv-telemetry-shipper

command -v systemd-analyze >/dev/null 2>&1 || {
	echo "check-units: systemd-analyze not found (apt-get install systemd)" >&2
	exit 1
}
for b in shipper commander ledger; do
	[ -x "bin/$b" ] || {
		echo "check-units: bin/$b missing: run make build first" >&2
		exit 1
	}
done
# The ExecStart path is the one install.sh installs.
grep -q "^SHIPPER_BIN=$SHIPPER\$" install.sh || {
	echo "check-units: install.sh does not install the shipper as $SHIPPER" >&2
	exit 1
}
grep -q "^ExecStart=$SHIPPER " "systemd/$UNIT" || {
	echo "check-units: systemd/$UNIT does not run $SHIPPER" >&2
	exit 1
}

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/check-units.XXXXXX")
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT/usr/lib/systemd" "$ROOT/usr/local/bin" "$ROOT/etc/systemd/system"
cp -a /usr/lib/systemd/system "$ROOT/usr/lib/systemd/"
cp bin/shipper "$ROOT$SHIPPER"
cp bin/commander "$ROOT/usr/local/bin/ocserv-telemetry-commander"
cp bin/ledger "$ROOT/usr/local/bin/ocserv-telemetry-ledger"
cp systemd/*.service "$ROOT/etc/systemd/system/"

# The figures also go to bench/results/unit-exposure.md, the generated
# block of docs/install.md that make bench rewrites.
mkdir -p bench/results
table=$ROOT/exposure.md
printf '| unit | exposure | goal |\n|---|---|---|\n' >"$table"

fail=0
check() {
	unit=$1 max=$2
	label=$unit
	out=$(systemd-analyze verify --root="$ROOT" "$unit" 2>&1) || fail=1
	if [ -n "$out" ]; then
		printf 'check-units: %s: systemd-analyze verify:\n%s\n' "$label" "$out" >&2
		fail=1
	else
		printf 'check-units: %s: systemd-analyze verify: clean\n' "$label"
	fi
	sec=$(systemd-analyze security --offline=true --root="$ROOT" "$unit" 2>&1) || true
	level=$(printf '%s\n' "$sec" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	if [ -z "$level" ]; then
		printf 'check-units: %s: no exposure level in:\n%s\n' "$label" "$sec" >&2
		fail=1
		return 0
	fi
	printf '| %s | %s | <= %s |\n' "$unit" "$level" "$max" >>"$table"
	if awk -v l="$level" -v m="$max" 'BEGIN { exit !(l + 0 <= m + 0) }'; then
		printf 'check-units: %s: exposure %s (goal <= %s)\n' "$label" "$level" "$max"
	else
		printf '%s\n' "$sec" >&2
		printf 'check-units: %s: exposure %s is above %s\n' "$label" "$level" "$max" >&2
		fail=1
	fi
}

check "$UNIT" "$MAX_EXPOSURE"
check ocserv-telemetry-commander.service "${COMMANDER_MAX_EXPOSURE:-4.0}"
check ocserv-telemetry-ledger.service "${LEDGER_MAX_EXPOSURE:-2.0}"
{
	printf 'Run of %s on systemd %s; commit %s.\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" \
		"$(systemd-analyze --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p')" \
		"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
	cat "$table"
} >bench/results/unit-exposure.md
exit "$fail"
