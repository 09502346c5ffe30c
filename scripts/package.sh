#!/bin/sh
# scripts/package.sh: build the .deb and .rpm with nfpm (from the Go module
# proxy, pinned) into dist/. make package runs it after make build.
# Environment: VERSION (default: git describe), ARCH (default: go env GOARCH),
# NFPM (default: the pinned module).
set -eu
cd "$(dirname "$0")/.."
NFPM=${NFPM:-github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.41.1}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo 0.0.0)}
# deb and rpm versions start with a digit.
case $VERSION in
[0-9]*.[0-9]*) ;;
v[0-9]*.[0-9]*) VERSION=${VERSION#v} ;;
*) VERSION=0.0.0~git.$VERSION ;;
esac
ARCH=${ARCH:-$(go env GOARCH)}
for b in hook shipper ctl commander; do
	[ -x "bin/$b" ] || {
		echo "package: bin/$b missing: run make build first" >&2
		exit 1
	}
done

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/ocserv-telemetry-package.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$STAGE/systemd" "$STAGE/packaging" dist
cp install.sh "$STAGE/"
cp bin/hook bin/shipper bin/ctl bin/commander "$STAGE/bin/"
cp systemd/ocserv-telemetry-shipper.service systemd/ocserv-telemetry-commander.service "$STAGE/systemd/"
cp packaging/agent.env.example packaging/postinstall.sh packaging/preremove.sh "$STAGE/packaging/"
cp packaging/nfpm.yaml "$STAGE/"
export VERSION ARCH
OUT=$(pwd)/dist
for p in deb rpm; do
	# nfpm reads the files relative to its working directory: the stage.
	(cd "$STAGE" && go run "$NFPM" package --config nfpm.yaml --packager "$p" --target "$OUT/")
done
ls -l dist/
