#!/bin/sh
# scripts/check-units.sh: check the systemd units in systemd/ as install.sh
# installs them. In a scratch root holding the host's own unit files, the
# shipper unit (alone, and with the --commands drop-in) must pass
# `systemd-analyze verify` without a single message, and its
# `systemd-analyze security --offline=true` exposure must stay at or below
# MAX_EXPOSURE (default 3.0). The exposure figures are printed; docs/install.md
# quotes them. Needs bin/shipper (make build): verify checks ExecStart.
set -eu
cd "$(dirname "$0")/.."
MAX_EXPOSURE=${MAX_EXPOSURE:-3.0}
UNIT=ocserv-telemetry-shipper.service
SHIPPER=/usr/local/bin/ocserv-telemetry-shipper

command -v systemd-analyze >/dev/null 2>&1 || {
	echo "check-units: systemd-analyze not found (apt-get install systemd)" >&2
	exit 1
}
[ -x bin/shipper ] || {
	echo "check-units: bin/shipper missing: run make build first" >&2
	exit 1
}
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
cp "systemd/$UNIT" "$ROOT/etc/systemd/system/"

fail=0
check() {
	label=$1
	out=$(systemd-analyze verify --root="$ROOT" "$UNIT" 2>&1) || fail=1
	if [ -n "$out" ]; then
		printf 'check-units: %s: systemd-analyze verify:\n%s\n' "$label" "$out" >&2
		fail=1
	else
		printf 'check-units: %s: systemd-analyze verify: clean\n' "$label"
	fi
	sec=$(systemd-analyze security --offline=true --root="$ROOT" "$UNIT" 2>&1) || true
	level=$(printf '%s\n' "$sec" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	if [ -z "$level" ]; then
		printf 'check-units: %s: no exposure level in:\n%s\n' "$label" "$sec" >&2
		fail=1
		return 0
	fi
	if awk -v l="$level" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(l + 0 <= m + 0) }'; then
		printf 'check-units: %s: exposure %s (goal <= %s)\n' "$label" "$level" "$MAX_EXPOSURE"
	else
		printf '%s\n' "$sec" >&2
		printf 'check-units: %s: exposure %s is above %s\n' "$label" "$level" "$MAX_EXPOSURE" >&2
		fail=1
	fi
}

check "$UNIT"
mkdir -p "$ROOT/etc/systemd/system/$UNIT.d"
cp systemd/ocserv-telemetry-shipper-ocserv.conf "$ROOT/etc/systemd/system/$UNIT.d/ocserv.conf"
check "$UNIT + ocserv.conf drop-in (--commands)"
exit "$fail"
