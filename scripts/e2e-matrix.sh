#!/bin/sh
# e2e-matrix.sh VERSION...: run the end-to-end suite (./e2e/...) once per
# ocserv version (OCSERV_VERSION; internal/testbed), each version's Debian
# root built or found first (internal/distro/mkroots, outside the timings),
# and print the time each version took. Every version runs even when an
# earlier one failed; the exit status is 1 if any failed. As root (make e2e).
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
[ $# -gt 0 ] || set -- 1.1.6 1.3.0 1.5.0

"$GO" run ./internal/distro/mkroots "$@"

summary=
failed=0
for v in "$@"; do
	echo "=== e2e on ocserv $v"
	start=$(date +%s)
	if OCSERV_VERSION=$v "$GO" test -tags e2e -count=1 -p 1 -timeout 40m ./e2e/...; then
		result=ok
	else
		result=FAIL
		failed=1
	fi
	secs=$(($(date +%s) - start))
	summary="$summary
  ocserv $v: $result in ${secs}s"
done
echo "=== e2e per ocserv version (OCSERV_VERSION):$summary"
exit "$failed"
