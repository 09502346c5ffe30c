#!/bin/sh
# Package pre-remove (deb: remove, upgrade, deconfigure; rpm: $1 = 0
# removal, 1 upgrade): install.sh --uninstall on removal only; an upgrade
# keeps everything and the new postinstall replaces the files in place.
set -eu
DIR=/usr/local/share/ocserv-telemetry
case ${1:-} in
remove | 0) "$DIR/install.sh" --uninstall ;;
*) ;;
esac
