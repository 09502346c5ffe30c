#!/bin/sh
# Package post-install (deb: configure; rpm: $1 = 1 install, 2 upgrade):
# run the shipped install.sh, which installs or upgrades in place (atomic
# renames) and keeps the choices of the last install (--firewall, --commands).
set -eu
DIR=/usr/local/share/ocserv-telemetry
case ${1:-} in
abort-*) exit 0 ;;
esac
"$DIR/install.sh" --bin-dir "$DIR/bin" --no-packages
