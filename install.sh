#!/bin/sh
# install.sh: install ocserv-telemetry on an ocserv host, from this checkout
# (make build) or from a directory of release binaries, and wire ocserv to
# it. Run as root. docs/install.md explains every step; --dry-run prints the
# plan and changes nothing; --uninstall removes what an install added.
#
#   ./install.sh [--firewall=off|on] [--bin-dir DIR] [--ocserv-conf FILE]
#                [--root DIR] [--no-packages] [--no-start] [--commands]
#                [--server-id ID] [--ocserv-version X.Y.Z] [--dry-run]
#                [--ledger[=DB]] [--ledger-only] [--console-admin NAME]
#   ./install.sh --uninstall [--root DIR] [--dry-run]
#   ./install.sh --detect [--root DIR] [--ocserv-version X.Y.Z]
#
# POSIX sh, shellcheck-clean; every command runs with its arguments quoted,
# never through eval.
set -eu
umask 022

PROG=install.sh
MARK='# ocserv-telemetry'
BEGIN_LINE="$MARK begin: added by install.sh; install.sh --uninstall removes this block"
END_LINE="$MARK end"
DISABLED="$MARK disabled: "

# Paths on the target system (--root DIR is prefixed to each of them when
# files are written; the files themselves always name these paths).
HOOK_BIN=/usr/local/sbin/ocserv-telemetry-hook
SHIPPER_BIN=/usr/local/bin/ocserv-telemetry-shipper
CTL_BIN=/usr/local/bin/ocserv-telemetry-ctl
LIBEXEC=/usr/local/libexec/ocserv-telemetry
HOOK_SH=$LIBEXEC/hook.sh
FW_SH=$LIBEXEC/fw.sh
CONF_DIR=/etc/ocserv-telemetry
AGENT_ENV=$CONF_DIR/agent.env
AGENT_EXAMPLE=$CONF_DIR/agent.env.example
SPOOL=/var/spool/ocserv-telemetry
UNIT_DIR=/etc/systemd/system
UNIT=ocserv-telemetry-shipper.service
COMMANDER_BIN=/usr/local/bin/ocserv-telemetry-commander
COMMANDER_UNIT=ocserv-telemetry-commander.service
LEDGER_BIN=/usr/local/bin/ocserv-telemetry-ledger
LEDGER_UNIT=ocserv-telemetry-ledger.service
LEDGER_ENV=$CONF_DIR/ledger.env
LEDGER_USER=ocserv-telemetry-ledger
LEDGER_STATE=/var/lib/ocserv-telemetry-ledger
LEDGER_SQLITE=$LEDGER_STATE/ledger.db
TRUSTED_KEYS=$CONF_DIR/operators.keys
OCSERV_DROPIN_DIR=$UNIT_DIR/ocserv.service.d
OCSERV_DROPIN=$OCSERV_DROPIN_DIR/ocserv-telemetry.conf
# The fw script ocserv runs for restricted users is compiled in:
# /usr/bin/ocserv-fw before 1.2.3, /usr/libexec/ocserv-fw from 1.2.3 (and
# ${libexecdir}/ocserv-fw in other builds); from 1.4.2 a non-empty
# OCSERV_FW_SCRIPT in ocserv's environment overrides it. docs/firewall.md
# cites the source lines. preflight sets OCSERV_FW to the one this ocserv
# runs; FW_SCRIPTS are every path an install may have diverted.
FW_SCRIPTS="/usr/bin/ocserv-fw /usr/libexec/ocserv-fw"
OCSERV_FW=
OCSERV_FW_DISTRIB=
STATE=/var/lib/ocserv-telemetry/install
MANIFEST=$STATE/manifest
SETTINGS=$STATE/settings

SRCDIR=$(cd "$(dirname "$0")" && pwd)

ACTION=install
ROOT=
BIN_DIR=
OCSERV_CONF=/etc/ocserv/ocserv.conf
FIREWALL=
PACKAGES=1
START=1
DRY=0
COMMANDS=
CONSOLE_ADMIN=
SERVER_ID=
OCSERV_VERSION=
LEDGER=
LEDGER_DB=
LEDGER_ONLY=0

usage() {
	cat <<'EOF'
usage: install.sh [options]        install or upgrade (run again: changes nothing)
       install.sh --uninstall      remove what an install added

  --firewall=off|on     off (default): ocserv-fw, if anything, applies the
                        rules of restricted users; on: the hook becomes
                        ocserv's fw script and applies them (docs/firewall.md)
  --bin-dir DIR         install DIR/hook, DIR/shipper, DIR/ctl (release
                        binaries) instead of building this checkout
  --ocserv-conf FILE    ocserv's configuration (default /etc/ocserv/ocserv.conf)
  --commands            also the command service (ocserv-telemetry-commander)
  --ledger[=DB]         also the fleet ledger (ocserv-telemetry-ledger,
                        docs/ledger.md): an SQLite file by default, or the
                        PostgreSQL database of a postgres:// URL
  --ledger-only         only the ledger (a central host without ocserv)
  --console-admin NAME  on the ledger host: the web console's accounts file
                        with a first operator account NAME (docs/console.md)
  --server-id ID        SERVER_ID for a new agent.env (default: the host name)
  --ocserv-version V    skip `ocserv --version` and reading ocserv's binary:
                        V decides how --firewall=on is wired
  --no-packages         install no distribution packages
  --no-start            enable the shipper but start, reload nothing
  --root DIR            install into DIR (a DESTDIR-style root with its own
                        etc/ocserv); implies --no-start, runs no systemctl
  --dry-run             print the plan, change nothing
  --uninstall           remove what was installed (config and spool stay)
  --detect              print the ocserv version, the fw script it runs and
                        how --firewall=on would wire it; change nothing
EOF
}

say() { printf '%s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() {
	printf '%s: error: %s\n' "$PROG" "$*" >&2
	exit 1
}

# run CMD ARGS...: run a command that changes the system, or only print it
# with --dry-run.
run() {
	if [ "$DRY" = 1 ]; then
		say "  would run: $*"
		return 0
	fi
	say "  + $*"
	"$@"
}

# changed WHAT: one line per change, for the summary.
CHANGES=0
changed() {
	CHANGES=$((CHANGES + 1))
	if [ "$DRY" = 1 ]; then
		say "  would: $*"
	else
		say "  $*"
	fi
}

# needs OPTION: what an option that takes a value wants (for the error
# when it is missing); false for every other argument.
needs() {
	case $1 in
	--firewall) echo "off or on" ;;
	--bin-dir | --root) echo "a directory" ;;
	--ocserv-conf) echo "a file" ;;
	--server-id) echo "a value" ;;
	--ocserv-version) echo "a version" ;;
	--console-admin) echo "an account name" ;;
	*) return 1 ;;
	esac
}

while [ $# -gt 0 ]; do
	# "--option value" is read as "--option=value".
	if what=$(needs "$1"); then
		[ $# -ge 2 ] || die "$1 needs $what"
		opt="$1=$2"
		shift 2
		set -- "$opt" "$@"
	fi
	case $1 in
	--firewall=*) FIREWALL=${1#--firewall=} ;;
	--bin-dir=*) BIN_DIR=${1#--bin-dir=} ;;
	--ocserv-conf=*) OCSERV_CONF=${1#--ocserv-conf=} ;;
	--root=*) ROOT=${1#--root=} ;;
	--server-id=*) SERVER_ID=${1#--server-id=} ;;
	--ocserv-version=*) OCSERV_VERSION=${1#--ocserv-version=} ;;
	--console-admin=*) CONSOLE_ADMIN=${1#--console-admin=} ;;
	--commands) COMMANDS=on ;;
	--ledger) LEDGER=on ;;
	--ledger=*)
		LEDGER=on
		LEDGER_DB=${1#--ledger=}
		;;
	--ledger-only)
		LEDGER=on
		LEDGER_ONLY=1
		;;
	--no-ledger) LEDGER=off ;;
	--no-commands) COMMANDS=off ;;
	--no-packages) PACKAGES=0 ;;
	--no-start) START=0 ;;
	--dry-run) DRY=1 ;;
	--uninstall) ACTION=uninstall ;;
	--detect) ACTION=detect ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		die "unknown argument: $1"
		;;
	esac
	shift
done

case $FIREWALL in
'' | off | on) ;;
*) die "--firewall must be off or on, not '$FIREWALL'" ;;
esac
case $LEDGER_DB in
'' | /* | postgres://* | postgresql://*) ;;
*) die "--ledger=$LEDGER_DB: give an absolute path (SQLite) or a postgres:// URL" ;;
esac
case $OCSERV_CONF in
/*) ;;
*) die "--ocserv-conf must be an absolute path (on the target system), not '$OCSERV_CONF'" ;;
esac
if [ -n "$ROOT" ]; then
	[ -d "$ROOT" ] || die "--root $ROOT: no such directory"
	ROOT=$(cd "$ROOT" && pwd)
	[ "$ROOT" != / ] || ROOT=
fi
[ -n "$ROOT" ] && START=0
if [ "$(id -u)" != 0 ] && [ "$DRY" = 0 ] && [ "$ACTION" != detect ]; then
	die "run as root (files go to /usr/local, /etc and /var; --dry-run works as any user)"
fi

# Scratch space outside the target: generated files are compared with the
# installed ones before anything is replaced.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ocserv-telemetry-install.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# booted: systemd is PID 1 (what sd_booted() checks), so systemctl can talk
# to it. Never with --root.
booted() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }

# --- small file helpers --------------------------------------------------

# mode_of PATH / owner_of PATH (GNU stat: this is a Linux installer).
mode_of() { stat -c %a "$1"; }
owner_of() { stat -c %u:%g "$1"; }

# in_manifest PATH / remember PATH: what this installer created, so
# --uninstall removes exactly that. Paths are target paths (without --root).
in_manifest() { [ -f "$ROOT$MANIFEST" ] && grep -Fxq -- "$1" "$ROOT$MANIFEST"; }
NOREMEMBER=0
remember() {
	[ "$NOREMEMBER" = 0 ] || return 0
	in_manifest "$1" && return 0
	[ "$DRY" = 1 ] && return 0
	printf '%s\n' "$1" >>"$ROOT$MANIFEST"
}

# ensure_dir PATH MODE: create (and remember) a directory, or fix its mode.
ensure_dir() {
	if [ ! -d "$ROOT$1" ]; then
		changed "create directory $1 (mode $2)"
		run mkdir -p -m "$2" -- "$ROOT$1"
		run chown 0:0 -- "$ROOT$1"
		remember "$1/"
	elif [ "$(mode_of "$ROOT$1")" != "$2" ]; then
		changed "set mode $2 on $1"
		run chmod "$2" -- "$ROOT$1"
	fi
}

# ensure_parent PATH: the directories above PATH exist (created 0755 when
# missing, and remembered so that uninstall can remove them when empty).
ensure_parent() {
	_up=$(dirname "$1")
	_missing=
	while [ ! -d "$ROOT$_up" ]; do
		_missing="$_up $_missing"
		_up=$(dirname "$_up")
	done
	# Our paths hold no blanks or glob characters: split on spaces.
	for _up in $_missing; do
		ensure_dir "$_up" 755
	done
}

# ensure_state: the state dir (manifest, settings, ocserv.conf backups)
# first; its own new directories are the manifest's first entries.
ensure_state() {
	[ -d "$ROOT$STATE" ] && return 0
	_up=$STATE
	_missing=
	while [ ! -d "$ROOT$_up" ]; do
		_missing="$_up $_missing"
		_up=$(dirname "$_up")
	done
	for _up in $_missing; do
		_m=755
		[ "$_up" = "$STATE" ] && _m=700
		changed "create directory $_up (mode $_m)"
		run mkdir -m "$_m" -- "$ROOT$_up"
		run chown 0:0 -- "$ROOT$_up"
	done
	for _up in $_missing; do
		remember "$_up/"
	done
}

# put SRC DEST MODE: install SRC as DEST (root-owned, MODE) by copying to a
# temporary name in DEST's directory, syncing, then renaming it over DEST:
# a running ocserv sees the old file or the new one, never half of one.
# Nothing happens when DEST already has the same bytes, mode and owner.
put() {
	_src=$1 _dst=$2 _mode=$3
	if [ -f "$ROOT$_dst" ] && cmp -s -- "$_src" "$ROOT$_dst" &&
		[ "$(mode_of "$ROOT$_dst")" = "$_mode" ] && [ "$(owner_of "$ROOT$_dst")" = 0:0 ]; then
		return 0
	fi
	ensure_parent "$_dst"
	if [ -e "$ROOT$_dst" ]; then
		changed "replace $_dst"
	else
		changed "install $_dst (mode $_mode)"
	fi
	_tmp="$ROOT$(dirname "$_dst")/.$(basename "$_dst").ocserv-telemetry-new"
	run cp -- "$_src" "$_tmp"
	run chown 0:0 -- "$_tmp"
	run chmod "$_mode" -- "$_tmp"
	run sync -- "$_tmp"
	run mv -f -- "$_tmp" "$ROOT$_dst"
	remember "$_dst"
}

# remove_file PATH: delete PATH (a target path) if it exists.
remove_file() {
	if [ -e "$ROOT$1" ] || [ -L "$ROOT$1" ]; then
		changed "remove $1"
		run rm -f -- "$ROOT$1"
	fi
}

# --- what is installed ---------------------------------------------------

# setting NAME: a value recorded by the last install ("" if none). The
# settings file holds NAME=VALUE lines written by this script; it is read
# line by line, never sourced.
setting() {
	[ -f "$ROOT$SETTINGS" ] || return 0
	sed -n "s/^$1=//p" "$ROOT$SETTINGS" | tail -n 1
}

# ocserv_binary: the target's ocserv executable ("" if none): with --root
# only the root's own, else the one in PATH.
ocserv_binary() {
	if [ -n "$ROOT" ]; then
		if [ -x "$ROOT/usr/sbin/ocserv" ]; then
			printf '%s\n' "$ROOT/usr/sbin/ocserv"
		fi
		return 0
	fi
	command -v ocserv 2>/dev/null || true
}

# parse_ocserv_version: "X.Y.Z" from the first line of `ocserv --version`
# on stdin: "ocserv 1.1.6" (before 1.2) or "OpenConnect VPN Server 1.3.0".
parse_ocserv_version() {
	sed -n -e '1s/^ocserv[[:space:]]\{1,\}\([0-9][0-9.]*\).*/\1/p' \
		-e '1s/^OpenConnect VPN Server[[:space:]]\{1,\}\([0-9][0-9.]*\).*/\1/p'
}

# ocserv_version: "X.Y.Z" of the target's ocserv (--ocserv-version, or
# what its `ocserv --version` prints, run inside --root DIR when that holds
# ocserv), or "".
ocserv_version() {
	if [ -n "$OCSERV_VERSION" ]; then
		printf '%s\n' "$OCSERV_VERSION"
		return 0
	fi
	_bin=$(ocserv_binary)
	[ -n "$_bin" ] || return 0
	if [ -n "$ROOT" ]; then
		chroot "$ROOT" /usr/sbin/ocserv --version 2>&1 | parse_ocserv_version
	else
		"$_bin" --version 2>&1 | parse_ocserv_version
	fi
}

# fw_facts VERSION: sets OCSERV_FW (the fw script that ocserv runs), FW_ENV
# (1 when it reads OCSERV_FW_SCRIPT from its environment) and FW_FROM
# (where that was read). From the binary when there is one and the version
# was detected, not given: the path is a string compiled into it, and only
# a build that reads the variable holds its name. Else from the version
# (docs/firewall.md).
fw_facts() {
	_bin=
	[ -n "$OCSERV_VERSION" ] || _bin=$(ocserv_binary)
	if [ -n "$_bin" ] && [ -r "$_bin" ]; then
		_paths=$(LC_ALL=C grep -a -o '/[A-Za-z0-9_./-]*/ocserv-fw' "$_bin" | sort -u)
		if [ -n "$_paths" ] && [ "$(printf '%s\n' "$_paths" | wc -l)" -eq 1 ]; then
			OCSERV_FW=$_paths
			FW_ENV=0
			if LC_ALL=C grep -a -q 'OCSERV_FW_SCRIPT' "$_bin"; then
				FW_ENV=1
			fi
			FW_FROM=${_bin#"$ROOT"}
			return 0
		fi
		warn "$_bin names no single fw script ($(printf '%s' "$_paths" | tr '\n' ' ')); going by its version $1"
	fi
	OCSERV_FW=/usr/bin/ocserv-fw
	if version_ge "$1" 1.2.3; then
		OCSERV_FW=/usr/libexec/ocserv-fw
	fi
	FW_ENV=0
	if version_ge "$1" 1.4.2; then
		FW_ENV=1
	fi
	FW_FROM="version $1"
}

# version_ge A B: A >= B for dotted numeric versions.
version_ge() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		na = split(a, x, "."); nb = split(b, y, ".")
		for (i = 1; i <= (na > nb ? na : nb); i++) {
			if (x[i] + 0 > y[i] + 0) exit 0
			if (x[i] + 0 < y[i] + 0) exit 1
		}
		exit 0
	}'
}

# server_id: the host name as a NATS subject token (letters, digits, '-'
# and '_'; every other character becomes '_'), as config.SanitizeToken does.
server_id() {
	if [ -n "$SERVER_ID" ]; then
		_id=$SERVER_ID
	else
		_id=$(cat /proc/sys/kernel/hostname 2>/dev/null || uname -n)
	fi
	_id=$(printf '%s' "$_id" | LC_ALL=C tr -c 'A-Za-z0-9_-' '_' | cut -c 1-128)
	[ -n "$_id" ] || _id=unnamed
	printf '%s\n' "$_id"
}

# conf_value FILE KEY: the last KEY=VALUE of an agent.env, unquoted.
conf_value() {
	sed -n "s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*//p" "$1" | tail -n 1 |
		sed -e 's/[[:space:]]*$//' -e "s/^\"\(.*\)\"\$/\1/" -e "s/^'\(.*\)'\$/\1/"
}

# --- distribution packages -----------------------------------------------

install_packages() {
	_need=
	if [ "$FIREWALL" = on ]; then
		command -v nft >/dev/null 2>&1 || _need="$_need nftables"
		command -v iptables-restore >/dev/null 2>&1 || _need="$_need iptables"
	fi
	# install, stat, cmp, awk, flock: coreutils, diffutils, awk, util-linux.
	command -v cmp >/dev/null 2>&1 || _need="$_need diffutils"
	command -v flock >/dev/null 2>&1 || _need="$_need util-linux"
	if [ -z "$_need" ]; then
		say "packages: nothing missing"
		return 0
	fi
	if [ "$PACKAGES" = 0 ] || [ -n "$ROOT" ]; then
		warn "not installing packages (--no-packages or --root):$_need"
		return 0
	fi
	# shellcheck disable=SC2086 # _need is a list of package names
	set -- $_need
	if command -v apt-get >/dev/null 2>&1; then
		run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
	elif command -v dnf >/dev/null 2>&1; then
		run dnf install -y "$@"
	elif command -v yum >/dev/null 2>&1; then
		run yum install -y "$@"
	else
		die "no apt-get, dnf or yum: install these yourself, then rerun with --no-packages:$_need"
	fi
}

# --- binaries and wrappers -----------------------------------------------

find_binaries() {
	if [ -n "$BIN_DIR" ]; then
		BINS=$(cd "$BIN_DIR" 2>/dev/null && pwd) || die "--bin-dir $BIN_DIR: no such directory"
	elif [ -f "$SRCDIR/go.mod" ] && command -v go >/dev/null 2>&1 && command -v make >/dev/null 2>&1; then
		BINS=$SRCDIR/bin
		if [ "$DRY" = 1 ]; then
			say "  would run: make -C $SRCDIR build"
		else
			say "  + make -C $SRCDIR build"
			make -C "$SRCDIR" build >&2 || die "make build failed (see above)"
		fi
	elif [ -f "$SRCDIR/bin/hook" ]; then
		BINS=$SRCDIR/bin
		warn "no Go toolchain: installing the binaries already in $BINS"
	else
		die "no binaries: run make build in the checkout, or pass --bin-dir DIR holding hook, shipper and ctl"
	fi
	for _b in hook shipper ctl; do
		if [ ! -f "$BINS/$_b" ] || [ ! -x "$BINS/$_b" ]; then
			[ "$DRY" = 1 ] && [ -z "$BIN_DIR" ] && continue
			die "$BINS/$_b: missing or not executable"
		fi
	done
}

write_wrappers() {
	cat >"$WORK/hook.sh" <<EOF
#!/bin/sh
# ocserv-telemetry: ocserv's connect, disconnect and host-update script
# (installed by install.sh). A /bin/sh wrapper, because ocserv-fw and the
# hook --fw run this script with /bin/sh, which cannot run the binary.
exec $HOOK_BIN --config $AGENT_ENV "\$@"
EOF
	cat >"$WORK/fw.sh" <<EOF
#!/bin/sh
# ocserv-telemetry: ocserv's fw script, firewall mode (c) (installed by
# install.sh --firewall=on): the hook applies restricted users' rules.
exec $HOOK_BIN --fw --config $AGENT_ENV "\$@"
EOF
}

install_binaries() {
	say "binaries and wrappers:"
	if [ -z "${BINS:-}" ] || { [ "$DRY" = 1 ] && [ ! -f "$BINS/hook" ]; }; then
		say "  would install $HOOK_BIN, $SHIPPER_BIN, $CTL_BIN from the build"
	else
		put "$BINS/hook" "$HOOK_BIN" 755
		put "$BINS/shipper" "$SHIPPER_BIN" 755
		put "$BINS/ctl" "$CTL_BIN" 755
		if [ "$COMMANDS" = on ]; then
			[ -x "$BINS/commander" ] || die "$BINS/commander: missing (--commands needs the command service)"
			put "$BINS/commander" "$COMMANDER_BIN" 755
		fi
	fi
	ensure_parent "$HOOK_SH"
	ensure_dir "$LIBEXEC" 755
	put "$WORK/hook.sh" "$HOOK_SH" 755
	if [ "$FIREWALL" = on ]; then
		put "$WORK/fw.sh" "$FW_SH" 755
	else
		remove_file "$FW_SH"
	fi
}

# --- configuration and spool ---------------------------------------------

install_config() {
	say "configuration:"
	_example=$SRCDIR/packaging/agent.env.example
	[ -f "$_example" ] || { [ -n "$BIN_DIR" ] && _example=$BIN_DIR/agent.env.example; }
	[ -f "$_example" ] || die "no agent.env.example next to install.sh (packaging/) or in --bin-dir"
	ensure_dir "$CONF_DIR" 755
	put "$_example" "$AGENT_EXAMPLE" 644
	if [ -e "$ROOT$AGENT_ENV" ]; then
		say "  keeping $AGENT_ENV (the operator's; every key is in $AGENT_EXAMPLE)"
		if [ "$(mode_of "$ROOT$AGENT_ENV")" != 600 ]; then
			warn "$AGENT_ENV is mode $(mode_of "$ROOT$AGENT_ENV"); it may hold NATS secrets: chmod 600 it"
		fi
		return 0
	fi
	{
		say "# ocserv-telemetry agent configuration (written by install.sh; yours to edit,"
		say "# never overwritten). KEY=VALUE lines, read by the hook, the shipper and"
		say "# systemd's EnvironmentFile=. Set NATS_URL (and credentials) to start"
		say "# shipping; every key is described below and in docs/configuration.md."
		say "SERVER_ID=$(server_id)"
		say "FIREWALL=$FIREWALL"
		say ""
		cat "$_example"
	} >"$WORK/agent.env"
	# Not in the manifest: --uninstall keeps the operator's configuration.
	NOREMEMBER=1
	put "$WORK/agent.env" "$AGENT_ENV" 600
	NOREMEMBER=0
}

install_spool() {
	say "spool:"
	ensure_parent "$SPOOL"
	ensure_dir "$SPOOL" 750
	if [ "$(owner_of "$ROOT$SPOOL" 2>/dev/null || echo 0:0)" != 0:0 ]; then
		changed "chown root $SPOOL"
		run chown 0:0 -- "$ROOT$SPOOL"
	fi
}

# --- systemd -------------------------------------------------------------

install_units() {
	say "systemd:"
	put "$SRCDIR/systemd/$UNIT" "$UNIT_DIR/$UNIT" 644
	_units=$UNIT
	if [ "$COMMANDS" = on ]; then
		put "$SRCDIR/systemd/$COMMANDER_UNIT" "$UNIT_DIR/$COMMANDER_UNIT" 644
		_units="$UNIT $COMMANDER_UNIT"
	elif [ -e "$ROOT$UNIT_DIR/$COMMANDER_UNIT" ]; then
		disable_unit "$COMMANDER_UNIT"
		remove_file "$UNIT_DIR/$COMMANDER_UNIT"
		remove_file "$COMMANDER_BIN"
	fi
	for _u in $_units; do
		if ! command -v systemctl >/dev/null 2>&1; then
			warn "no systemctl: enable and start $_u with your init system"
		elif [ ! -L "$ROOT$UNIT_DIR/multi-user.target.wants/$_u" ]; then
			changed "enable $_u"
			if [ -n "$ROOT" ]; then
				run systemctl --root="$ROOT" enable "$_u"
			else
				run systemctl enable "$_u"
			fi
		fi
	done
	if booted; then
		run systemctl daemon-reload
		if [ "$START" = 1 ]; then
			for _u in $_units; do
				if [ "$CHANGES" -gt 0 ]; then
					run systemctl restart "$_u"
				else
					run systemctl start "$_u"
				fi
			done
		fi
	fi
}

# disable_unit UNIT: disable (and stop, when systemd runs) an enabled unit.
disable_unit() {
	command -v systemctl >/dev/null 2>&1 || return 0
	[ -L "$ROOT$UNIT_DIR/multi-user.target.wants/$1" ] || return 0
	changed "disable $1"
	if booted; then
		run systemctl disable --now "$1"
	elif [ -n "$ROOT" ]; then
		run systemctl --root="$ROOT" disable "$1"
	else
		run systemctl disable "$1"
	fi
}

# --- ocserv.conf ---------------------------------------------------------

# wire_conf IN OUT: OUT is IN with our block of script lines (before the
# first [vhost:…] section, or at the end) and every other active
# connect/disconnect/host-update-script line commented out with our marker.
wire_conf() {
	awk -v begin="$BEGIN_LINE" -v end="$END_LINE" -v dis="$DISABLED" -v script="$HOOK_SH" '
	function block() {
		print begin
		print "connect-script = " script
		print "disconnect-script = " script
		print "host-update-script = " script
		print end
		done = 1
	}
	$0 == begin { inblock = 1; next }
	inblock { if ($0 == end) inblock = 0; next }
	!done && /^[[:space:]]*\[/ { block() }
	/^[[:space:]]*(connect|disconnect|host-update)-script[[:space:]]*=/ { print dis $0; next }
	{ print }
	END { if (!done) block() }
	' "$1" >"$2"
}

# unwire_conf IN OUT: our block out, our disabled lines back as they were.
unwire_conf() {
	awk -v begin="$BEGIN_LINE" -v end="$END_LINE" -v dis="$DISABLED" '
	$0 == begin { inblock = 1; next }
	inblock { if ($0 == end) inblock = 0; next }
	index($0, dis) == 1 { print substr($0, length(dis) + 1); next }
	{ print }
	' "$1" >"$2"
}

# ocserv_test FILE: ocserv -t -c FILE, quietly; 0 when ocserv accepts it or
# is not installed here.
ocserv_test() {
	command -v ocserv >/dev/null 2>&1 || return 0
	ocserv -t -c "$1" >"$WORK/ocserv-t.out" 2>&1
}

# replace_conf NEW: put NEW in ocserv.conf's place keeping its owner and mode.
replace_conf() {
	_c=$ROOT$OCSERV_CONF
	_tmp="$(dirname "$_c")/.$(basename "$_c").ocserv-telemetry-new"
	run cp -- "$1" "$_tmp"
	run chown --reference="$_c" -- "$_tmp"
	run chmod --reference="$_c" -- "$_tmp"
	run sync -- "$_tmp"
	run mv -f -- "$_tmp" "$_c"
}

install_conf() {
	say "ocserv.conf ($OCSERV_CONF):"
	_c=$ROOT$OCSERV_CONF
	wire_conf "$_c" "$WORK/ocserv.conf.new"
	if cmp -s -- "$_c" "$WORK/ocserv.conf.new"; then
		say "  already wired"
		return 0
	fi
	diff -u -- "$_c" "$WORK/ocserv.conf.new" | sed -e '1,2d' -e 's/^/    /' || true
	# Validate before touching anything: a config that ocserv accepted
	# before must still be accepted (one it already refused is reported,
	# not blamed on us).
	if ! ocserv_test "$WORK/ocserv.conf.new"; then
		if ocserv_test "$_c"; then
			cat "$WORK/ocserv-t.out" >&2
			die "ocserv -t refuses the wired ocserv.conf (above); nothing was changed"
		fi
		warn "ocserv -t refuses $OCSERV_CONF before and after wiring (not caused by this install):"
		sed 's/^/    /' "$WORK/ocserv-t.out" >&2
	fi
	# Backup first: the original (taken once, before the first change)
	# for --uninstall, and the file as it is now next to it.
	if [ ! -f "$ROOT$STATE/ocserv.conf.orig" ]; then
		changed "back up $OCSERV_CONF to $STATE/ocserv.conf.orig"
		run cp -p -- "$_c" "$ROOT$STATE/ocserv.conf.orig"
	fi
	changed "wire $OCSERV_CONF (lines marked '$MARK')"
	replace_conf "$WORK/ocserv.conf.new"
	# The file as this install left it: --uninstall restores the original
	# byte for byte when ocserv.conf still is exactly this.
	run cp -p -- "$_c" "$ROOT$STATE/ocserv.conf.installed"
	if booted && [ "$START" = 1 ] && systemctl is-active --quiet ocserv.service; then
		run systemctl reload ocserv.service
	fi
}

uninstall_conf() {
	_conf=$(setting ocserv_conf)
	[ -n "$_conf" ] || _conf=$OCSERV_CONF
	_c=$ROOT$_conf
	say "ocserv.conf ($_conf):"
	[ -f "$_c" ] || {
		warn "$_conf: no such file; nothing to unwire"
		return 0
	}
	if [ -f "$ROOT$STATE/ocserv.conf.installed" ] && [ -f "$ROOT$STATE/ocserv.conf.orig" ] &&
		cmp -s -- "$_c" "$ROOT$STATE/ocserv.conf.installed"; then
		changed "restore the original $_conf (unchanged since install)"
		replace_conf "$ROOT$STATE/ocserv.conf.orig"
	else
		unwire_conf "$_c" "$WORK/ocserv.conf.new"
		if cmp -s -- "$_c" "$WORK/ocserv.conf.new"; then
			say "  nothing of ours in it"
		else
			diff -u -- "$_c" "$WORK/ocserv.conf.new" | sed -e '1,2d' -e 's/^/    /' || true
			changed "unwire $_conf (edited since install: only our marked lines change); before: $_conf.ocserv-telemetry-uninstall.bak"
			run cp -p -- "$_c" "$_c.ocserv-telemetry-uninstall.bak"
			replace_conf "$WORK/ocserv.conf.new"
		fi
	fi
	if booted && systemctl is-active --quiet ocserv.service; then
		run systemctl reload ocserv.service
	fi
}

# --- firewall mode (c) ---------------------------------------------------

divert_root_args() {
	# dpkg-divert --root DIR keeps its database in DIR/var/lib/dpkg.
	if [ -n "$ROOT" ]; then
		[ -d "$ROOT/var/lib/dpkg" ] || die "--root $ROOT has no dpkg database (var/lib/dpkg), so dpkg-divert cannot record the diversion"
		printf '%s\n' "--root=$ROOT"
	fi
}

# fw_install: make ocserv run our fw wrapper as its fw script.
fw_install() {
	_v=$FW_VERSION
	if [ "$FW_WAY" = dropin ]; then
		# This ocserv reads OCSERV_FW_SCRIPT from its environment.
		fw_undivert_all
		say "  ocserv $_v runs \$OCSERV_FW_SCRIPT when set (read from $FW_FROM): OCSERV_FW_SCRIPT in a drop-in for ocserv.service"
		command -v systemctl >/dev/null 2>&1 ||
			warn "no systemctl: the drop-in works only when systemd starts ocserv; elsewhere set OCSERV_FW_SCRIPT=$FW_SH in ocserv's environment yourself"
		cat >"$WORK/ocserv-dropin.conf" <<EOF
# ocserv-telemetry (install.sh --firewall=on): the hook is ocserv's fw
# script (firewall mode c). Removed by install.sh --uninstall.
[Service]
Environment=OCSERV_FW_SCRIPT=$FW_SH
EOF
		_before=$CHANGES
		put "$WORK/ocserv-dropin.conf" "$OCSERV_DROPIN" 644
		FW_METHOD=dropin
		if [ "$CHANGES" != "$_before" ]; then
			booted && run systemctl daemon-reload
			NEXT="$NEXT
  - restart ocserv (systemctl restart ocserv; it disconnects every user) so that it runs the hook as its fw script"
		fi
		return 0
	fi
	# This ocserv runs a fixed path and ignores the variable (preflight
	# checked that dpkg-divert can take the path).
	say "  ocserv $_v runs $OCSERV_FW and ignores OCSERV_FW_SCRIPT (read from $FW_FROM): $OCSERV_FW diverted to $OCSERV_FW_DISTRIB, our fw wrapper in its place"
	fw_remove_dropin
	# A path an earlier install diverted for another ocserv (before an
	# upgrade moved the script) goes back first.
	for _p in $FW_SCRIPTS $(setting fw_script); do
		if [ "$_p" != "$OCSERV_FW" ]; then
			fw_undivert "$_p"
		fi
	done
	_ra=$(divert_root_args)
	# shellcheck disable=SC2086 # _ra is empty or one --root=DIR word
	_by=$(dpkg-divert $_ra --listpackage "$OCSERV_FW")
	if [ -z "$_by" ]; then
		# No moment without a fw script: the diversion is recorded without
		# --rename, Debian's script is copied to its diverted name, and our
		# wrapper is renamed over the original path in one step.
		changed "divert $OCSERV_FW to $OCSERV_FW_DISTRIB (dpkg-divert --local)"
		# shellcheck disable=SC2086
		run dpkg-divert $_ra --local --no-rename --divert "$OCSERV_FW_DISTRIB" --add "$OCSERV_FW"
		run cp -p -- "$ROOT$OCSERV_FW" "$ROOT$OCSERV_FW_DISTRIB"
		NEXT="$NEXT
  - users connected now got ocserv-fw's rules: their disconnect runs the hook, which leaves those rules; restart ocserv, or run $OCSERV_FW_DISTRIB --removeall (docs/firewall.md)"
	fi
	# The diverted path is not in the manifest: fw_undivert owns it.
	NOREMEMBER=1
	put "$WORK/fw.sh" "$OCSERV_FW" 755
	NOREMEMBER=0
	FW_METHOD=divert
}

fw_remove_dropin() {
	if [ -e "$ROOT$OCSERV_DROPIN" ]; then
		remove_file "$OCSERV_DROPIN"
		rmdir -- "$ROOT$OCSERV_DROPIN_DIR" 2>/dev/null || true
		booted && run systemctl daemon-reload
		NEXT="$NEXT
  - restart ocserv (systemctl restart ocserv) so that it stops running the hook as its fw script"
	fi
	return 0
}

# fw_undivert PATH: Debian's fw script back at PATH and our diversion of
# it removed (nothing when PATH is not diverted by us).
fw_undivert() {
	command -v dpkg-divert >/dev/null 2>&1 || return 0
	[ -z "$ROOT" ] || [ -d "$ROOT/var/lib/dpkg" ] || return 0
	_f=$1
	_ra=$(divert_root_args)
	# shellcheck disable=SC2086
	_by=$(dpkg-divert $_ra --listpackage "$_f")
	[ "$_by" = LOCAL ] || return 0
	# shellcheck disable=SC2086
	_to=$(dpkg-divert $_ra --truename "$_f")
	[ "$_to" = "$_f.distrib" ] || return 0
	if [ -f "$ROOT$_f" ] && ! grep -q -- "--fw --config $AGENT_ENV" "$ROOT$_f"; then
		die "$_f is diverted but is not our fw wrapper; leaving the diversion alone"
	fi
	changed "put Debian's $_f back and remove the diversion"
	if [ -f "$ROOT$_to" ]; then
		# Debian's script renamed over ours in one step, then the record.
		_tmp="$ROOT$(dirname "$_f")/.$(basename "$_f").ocserv-telemetry-new"
		run cp -p -- "$ROOT$_to" "$_tmp"
		run mv -f -- "$_tmp" "$ROOT$_f"
		run rm -f -- "$ROOT$_to"
	fi
	# shellcheck disable=SC2086
	run dpkg-divert $_ra --local --no-rename --remove "$_f"
}

# fw_undivert_all: every fw script path an install may have diverted, back.
fw_undivert_all() {
	for _p in $FW_SCRIPTS $(setting fw_script); do
		fw_undivert "$_p"
	done
}

# --- the fleet ledger (--ledger) -------------------------------------------

# has_user NAME: the account exists on the target.
has_user() {
	if [ -n "$ROOT" ]; then
		[ -f "$ROOT/etc/passwd" ] && grep -q "^$1:" "$ROOT/etc/passwd"
	else
		getent passwd "$1" >/dev/null 2>&1
	fi
}

# ledger_ids: "uid:gid" of the ledger's user in the target's passwd (numeric,
# so --root never resolves names against this host's).
ledger_ids() {
	if [ -n "$ROOT" ]; then
		awk -F: -v u="$LEDGER_USER" '$1 == u { print $3 ":" $4 }' "$ROOT/etc/passwd"
	else
		printf '%s:%s\n' "$(id -u "$LEDGER_USER")" "$(id -g "$LEDGER_USER")"
	fi
}

# ensure_trusted_keys: the operators' trusted keys file, which the command
# service and the ledger both refuse to start without, created with no key
# in it (nothing is trusted until the operator adds a line from `ctl
# keygen`). The operator's from then on: not in the manifest, kept by
# --uninstall like agent.env.
ensure_trusted_keys() {
	[ ! -e "$ROOT$TRUSTED_KEYS" ] || return 0
	printf '# role public-key name: operators allowed to query the ledger and run commands\n' >"$WORK/operators.keys"
	NOREMEMBER=1
	put "$WORK/operators.keys" "$TRUSTED_KEYS" 644
	NOREMEMBER=0
}

# install_ledger: the binary, a system user, ledger.env (the operator's
# once written: LEDGER_DATABASE from --ledger=DB, SQLite by default), the
# state directory, the schema (ledger migrate, as the ledger's user) and
# the unit. The database itself is never removed by --uninstall.
install_ledger() {
	say "ledger:"
	if [ -n "${BINS:-}" ] && [ -f "$BINS/ledger" ]; then
		put "$BINS/ledger" "$LEDGER_BIN" 755
	elif [ "$DRY" = 1 ]; then
		say "  would install $LEDGER_BIN from the build"
	else
		die "$BINS/ledger: missing (--ledger needs the ledger; make build makes it)"
	fi
	if ! has_user "$LEDGER_USER"; then
		if [ -n "$ROOT" ] && [ ! -f "$ROOT/etc/passwd" ]; then
			warn "$ROOT has no etc/passwd: create the system user $LEDGER_USER there yourself"
		else
			changed "create system user $LEDGER_USER"
			if [ -n "$ROOT" ]; then
				run useradd --root "$ROOT" --system --user-group --no-create-home --home-dir "$LEDGER_STATE" --shell /usr/sbin/nologin "$LEDGER_USER"
			else
				run useradd --system --user-group --no-create-home --home-dir "$LEDGER_STATE" --shell /usr/sbin/nologin "$LEDGER_USER"
			fi
		fi
	fi
	_db=${LEDGER_DB:-$LEDGER_SQLITE}
	ensure_dir "$CONF_DIR" 755
	if [ -e "$ROOT$LEDGER_ENV" ]; then
		_have=$(conf_value "$ROOT$LEDGER_ENV" LEDGER_DATABASE)
		say "  keeping $LEDGER_ENV (the operator's)"
		if [ -n "$LEDGER_DB" ] && [ "$_have" != "$LEDGER_DB" ]; then
			warn "$LEDGER_ENV has LEDGER_DATABASE=${_have:-(default)}, not the --ledger one: edit it yourself (it is never overwritten)"
		fi
	else
		_nats=nats://127.0.0.1:4222
		if [ -f "$ROOT$AGENT_ENV" ]; then
			_n=$(conf_value "$ROOT$AGENT_ENV" NATS_URL)
			[ -z "$_n" ] || _nats=$_n
		fi
		{
			say "# ocserv-telemetry ledger configuration (written by install.sh; yours to"
			say "# edit, never overwritten). The agent's NATS_* keys, SUBJECT_PREFIX and"
			say "# NATS_EVENTS_STREAM, plus the LEDGER_* keys of docs/configuration.md."
			say "# Root and the ledger's user read it: it may hold NATS and database secrets."
			say "NATS_URL=$_nats"
			say "LEDGER_DATABASE=$_db"
			say "LEDGER_TRUSTED_KEYS=$TRUSTED_KEYS"
		} >"$WORK/ledger.env"
		NOREMEMBER=1
		put "$WORK/ledger.env" "$LEDGER_ENV" 640
		NOREMEMBER=0
		if has_user "$LEDGER_USER"; then
			_ids=$(ledger_ids)
			run chgrp "${_ids#*:}" -- "$ROOT$LEDGER_ENV"
		fi
	fi
	ensure_trusted_keys
	if [ ! -d "$ROOT$LEDGER_STATE" ]; then
		ensure_parent "$LEDGER_STATE"
		changed "create directory $LEDGER_STATE (mode 700, the ledger's)"
		run mkdir -m 700 -- "$ROOT$LEDGER_STATE"
		if has_user "$LEDGER_USER"; then
			run chown "$(ledger_ids)" -- "$ROOT$LEDGER_STATE"
		fi
	fi
	# The schema, as the user the service runs as (an SQLite file must be
	# its own). Never with --root: that system is not running.
	if [ -z "$ROOT" ]; then
		if [ "$DRY" = 1 ]; then
			say "  would run: runuser -u $LEDGER_USER -- $LEDGER_BIN migrate --config $LEDGER_ENV"
		else
			say "  + runuser -u $LEDGER_USER -- $LEDGER_BIN migrate --config $LEDGER_ENV"
			runuser -u "$LEDGER_USER" -- "$LEDGER_BIN" migrate --config "$LEDGER_ENV" ||
				die "ledger migrate failed (is the database reachable? see above); rerun install.sh when it is"
		fi
	else
		say "  not migrating inside --root: run $LEDGER_BIN migrate there before starting the ledger"
	fi
	put "$SRCDIR/systemd/$LEDGER_UNIT" "$UNIT_DIR/$LEDGER_UNIT" 644
	if ! command -v systemctl >/dev/null 2>&1; then
		warn "no systemctl: enable and start $LEDGER_UNIT with your init system"
	elif [ ! -L "$ROOT$UNIT_DIR/multi-user.target.wants/$LEDGER_UNIT" ]; then
		changed "enable $LEDGER_UNIT"
		if [ -n "$ROOT" ]; then
			run systemctl --root="$ROOT" enable "$LEDGER_UNIT"
		else
			run systemctl enable "$LEDGER_UNIT"
		fi
	fi
	if booted; then
		run systemctl daemon-reload
		[ "$START" = 1 ] && run systemctl restart "$LEDGER_UNIT"
	fi
}

# remove_ledger: what --no-ledger takes away (the database and ledger.env stay).
remove_ledger() {
	[ -e "$ROOT$UNIT_DIR/$LEDGER_UNIT" ] || return 0
	disable_unit "$LEDGER_UNIT"
	remove_file "$UNIT_DIR/$LEDGER_UNIT"
	remove_file "$LEDGER_BIN"
}

# --- install / uninstall -------------------------------------------------

# preflight: every reason to refuse, before anything is changed.
preflight() {
	[ -f "$ROOT$OCSERV_CONF" ] || die "$OCSERV_CONF: no such file (is ocserv installed? --ocserv-conf FILE names another)"
	if [ -e "$ROOT$AGENT_ENV" ]; then
		_fw=$(conf_value "$ROOT$AGENT_ENV" FIREWALL)
		[ -n "$_fw" ] || _fw=off
		if [ "$_fw" != "$FIREWALL" ]; then
			die "$AGENT_ENV says FIREWALL=$_fw but this install is --firewall=$FIREWALL: set FIREWALL=$FIREWALL there (the hook reads it), or rerun with --firewall=$_fw; nothing was changed"
		fi
	fi
	FW_VERSION=
	FW_WAY=none
	[ "$FIREWALL" = on ] || return 0
	FW_VERSION=$(ocserv_version)
	[ -n "$FW_VERSION" ] || die "--firewall=on: cannot tell the ocserv version (no ocserv, or an ocserv --version output not understood); pass --ocserv-version X.Y.Z"
	fw_facts "$FW_VERSION"
	OCSERV_FW_DISTRIB=$OCSERV_FW.distrib
	if [ "$FW_ENV" = 1 ]; then
		FW_WAY=dropin
		return 0
	fi
	FW_WAY=divert
	command -v dpkg-divert >/dev/null 2>&1 ||
		die "--firewall=on with ocserv $FW_VERSION needs $OCSERV_FW replaced, and there is no dpkg-divert here; see docs/install.md (rpm-based systems)"
	_ra=$(divert_root_args)
	# shellcheck disable=SC2086 # _ra is empty or one --root=DIR word
	_by=$(dpkg-divert $_ra --listpackage "$OCSERV_FW")
	# shellcheck disable=SC2086
	_to=$(dpkg-divert $_ra --truename "$OCSERV_FW")
	if [ -n "$_by" ] && { [ "$_by" != LOCAL ] || [ "$_to" != "$OCSERV_FW_DISTRIB" ]; }; then
		die "$OCSERV_FW is already diverted (by $_by, to $_to); undo that first"
	fi
	if [ -z "$_by" ] && [ ! -f "$ROOT$OCSERV_FW" ]; then
		die "$OCSERV_FW: no such file (is ocserv installed?)"
	fi
}

write_settings() {
	{
		say "ocserv_conf=$OCSERV_CONF"
		say "firewall=$FIREWALL"
		say "fw_method=$FW_METHOD"
		if [ "$FW_METHOD" = divert ]; then
			say "fw_script=$OCSERV_FW"
		fi
		say "commands=$COMMANDS"
		say "ledger=$LEDGER"
		say "ledger_only=$LEDGER_ONLY"
	} >"$WORK/settings"
	if [ -f "$ROOT$SETTINGS" ] && cmp -s -- "$WORK/settings" "$ROOT$SETTINGS"; then
		return 0
	fi
	changed "record the install in $SETTINGS"
	if [ "$DRY" = 0 ]; then
		cp -- "$WORK/settings" "$ROOT$SETTINGS"
		chmod 600 -- "$ROOT$SETTINGS"
	fi
}

# --- the web console's first account (--console-admin) -------------------

# The console (docs/console.md) runs in the ledger; its accounts file gets
# a first operator account with a generated password, written to a
# root-only file (never to the terminal or a log): read it, log in,
# delete it. An existing accounts file is left alone (`ledger
# console-user` manages it), and uninstall keeps it with the rest of the
# configuration.
CONSOLE_USERS=/etc/ocserv-telemetry/console-users
CONSOLE_PASSWORD=/etc/ocserv-telemetry/console-admin.password
install_console_admin() {
	say "web console:"
	if [ -f "$ROOT$CONSOLE_USERS" ]; then
		say "  $CONSOLE_USERS exists; accounts are managed with: ledger console-user add|passwd|delete"
		return 0
	fi
	changed "create $CONSOLE_USERS with the operator account $CONSOLE_ADMIN; its password in $CONSOLE_PASSWORD (0600)"
	[ "$DRY" = 1 ] && return 0
	[ -x "$BINS/ledger" ] || die "$BINS/ledger: missing (--console-admin needs the ledger binary)"
	ensure_parent "$CONSOLE_USERS"
	_pw=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
	(umask 077 && printf '%s\n' "$_pw" >"$ROOT$CONSOLE_PASSWORD") || die "cannot write $CONSOLE_PASSWORD"
	printf '%s\n' "$_pw" | "$BINS/ledger" console-user add "$CONSOLE_ADMIN" --role operator --password-stdin \
		--file "$ROOT$CONSOLE_USERS" >/dev/null || die "could not create the console account $CONSOLE_ADMIN (see above)"
	NEXT="$NEXT
  - web console: log in as $CONSOLE_ADMIN with the password in $CONSOLE_PASSWORD, then delete that file"
}

do_install() {
	# A rerun keeps what the last install chose unless told otherwise.
	[ -n "$FIREWALL" ] || FIREWALL=$(setting firewall)
	[ -n "$FIREWALL" ] || FIREWALL=off
	[ -n "$COMMANDS" ] || COMMANDS=$(setting commands)
	[ -n "$COMMANDS" ] || COMMANDS=off
	[ -n "$LEDGER" ] || LEDGER=$(setting ledger)
	[ -n "$LEDGER" ] || LEDGER=off
	if [ "$LEDGER_ONLY" = 1 ] || [ "$(setting ledger_only)" = 1 ] && [ "$LEDGER" = on ]; then
		do_install_ledger_only
		return 0
	fi
	_prev_conf=$(setting ocserv_conf)
	if [ -n "$_prev_conf" ] && [ "$_prev_conf" != "$OCSERV_CONF" ]; then
		die "already installed for $_prev_conf; run --uninstall first to wire $OCSERV_CONF instead"
	fi
	FW_METHOD=none
	NEXT=
	say "ocserv-telemetry: install${ROOT:+ into $ROOT} (firewall $FIREWALL, commands $COMMANDS)"
	[ "$DRY" = 1 ] && say "(dry run: nothing is changed)"
	preflight
	install_packages
	find_binaries
	write_wrappers
	ensure_state
	install_binaries
	install_config
	# Before install_units starts the command service, which refuses to
	# start without it.
	[ "$COMMANDS" != on ] || ensure_trusted_keys
	install_spool
	say "firewall mode:"
	if [ "$FIREWALL" = on ]; then
		fw_install
	else
		say "  off: the hook never adds rules; ocserv-fw (if restrict-user-to-routes is set) stays in charge"
		fw_undivert_all
		fw_remove_dropin
	fi
	install_conf
	install_units
	if [ "$LEDGER" = on ]; then
		install_ledger
	else
		remove_ledger
	fi
	[ -z "$CONSOLE_ADMIN" ] || install_console_admin
	write_settings
	say ""
	if [ "$CHANGES" = 0 ]; then
		say "Nothing to change: ocserv-telemetry is installed as asked."
	elif [ "$DRY" = 1 ]; then
		say "Dry run: $CHANGES changes planned, none made."
		return 0
	else
		say "Done: $CHANGES changes."
	fi
	_ship=started
	booted && [ "$START" = 1 ] || _ship="enabled (start it: systemctl start $UNIT)"
	say "The hook runs on every ocserv session event; the shipper is $_ship."
	say "Next:"
	say "  - set NATS_URL (and NATS_CREDS or other credentials) in $AGENT_ENV, then: systemctl restart $UNIT"
	say "  - check: ocserv-telemetry-ctl status; events accumulate in $SPOOL until NATS answers${NEXT}"
	[ "$COMMANDS" != on ] || say "  - command service: add operators' keys to $TRUSTED_KEYS (ctl keygen prints the line); it uses NATS_URL from $AGENT_ENV"
}

# do_install_ledger_only: a central host: the ledger and ctl, no agent.
do_install_ledger_only() {
	LEDGER_ONLY=1
	FW_METHOD=none
	say "ocserv-telemetry: install the ledger only${ROOT:+ into $ROOT}"
	[ "$DRY" = 1 ] && say "(dry run: nothing is changed)"
	find_binaries
	ensure_state
	say "binaries:"
	if [ -n "${BINS:-}" ] && [ -f "$BINS/ctl" ]; then
		put "$BINS/ctl" "$CTL_BIN" 755
	fi
	install_ledger
	write_settings
	say ""
	if [ "$DRY" = 1 ]; then
		say "Dry run: $CHANGES changes planned, none made."
		return 0
	fi
	say "Done: $CHANGES changes."
	say "Next:"
	say "  - set NATS_URL (and credentials) in $LEDGER_ENV; add operators' keys to $TRUSTED_KEYS"
	say "  - systemctl restart $LEDGER_UNIT; check: $LEDGER_BIN status --config $LEDGER_ENV"
}

do_uninstall() {
	NEXT=
	say "ocserv-telemetry: uninstall${ROOT:+ from $ROOT}"
	[ "$DRY" = 1 ] && say "(dry run: nothing is changed)"
	[ -f "$ROOT$MANIFEST" ] || die "no install record ($STATE/manifest): nothing installed by install.sh${ROOT:+ in $ROOT}"
	# ocserv first: once it no longer names our scripts, removing them
	# cannot refuse a login.
	uninstall_conf
	say "firewall mode:"
	fw_undivert_all
	fw_remove_dropin
	say "systemd:"
	disable_unit "$COMMANDER_UNIT"
	disable_unit "$LEDGER_UNIT"
	disable_unit "$UNIT"
	say "files:"
	# Files first, then directories deepest first (only when empty).
	while IFS= read -r _p; do
		case $_p in
		*/) ;;
		*) remove_file "$_p" ;;
		esac
	done <"$ROOT$MANIFEST"
	sort -r "$ROOT$MANIFEST" | while IFS= read -r _p; do
		case $_p in
		*/)
			_d=${_p%/}
			[ "$_d" = "$STATE" ] || [ "$_d" = "$(dirname "$STATE")" ] && continue
			if [ -d "$ROOT$_d" ] && [ "$DRY" = 0 ]; then
				if rmdir -- "$ROOT$_d" 2>/dev/null; then
					say "  removed directory $_d"
				else
					say "  kept $_d (not empty)"
				fi
			fi
			;;
		esac
	done
	booted && run systemctl daemon-reload
	say "  kept $AGENT_ENV and the events in $SPOOL: remove them yourself if you want"
	if [ -e "$ROOT$LEDGER_ENV" ]; then
		say "  kept $LEDGER_ENV, the ledger's database and the user $LEDGER_USER: remove them yourself if you want"
	fi
	if [ "$DRY" = 0 ]; then
		# ROOT is empty on a real root; the guard belongs on STATE, so an
		# edit that emptied it could never make this rm -rf "$ROOT".
		rm -rf -- "$ROOT${STATE:?}"
		rmdir -- "$ROOT$(dirname "$STATE")" 2>/dev/null || true
	fi
	say ""
	if [ "$DRY" = 1 ]; then
		say "Dry run: nothing was removed."
	else
		say "Done: ocserv-telemetry is uninstalled.${NEXT}"
	fi
}

# do_detect: what --firewall=on would find and do (any user, no changes).
do_detect() {
	FW_VERSION=$(ocserv_version)
	if [ -z "$FW_VERSION" ]; then
		_bin=$(ocserv_binary)
		[ -n "$_bin" ] || die "no ocserv${ROOT:+ in $ROOT/usr/sbin} (pass --ocserv-version X.Y.Z)"
		die "cannot tell the version of $_bin from its --version output (pass --ocserv-version X.Y.Z)"
	fi
	fw_facts "$FW_VERSION"
	say "ocserv $FW_VERSION"
	say "fw script: $OCSERV_FW (read from $FW_FROM)"
	if [ "$FW_ENV" = 1 ]; then
		say "reads OCSERV_FW_SCRIPT: yes"
		say "--firewall=on: Environment=OCSERV_FW_SCRIPT=$FW_SH in $OCSERV_DROPIN"
	else
		say "reads OCSERV_FW_SCRIPT: no"
		say "--firewall=on: dpkg-divert $OCSERV_FW to $OCSERV_FW.distrib, our fw wrapper in its place"
	fi
}

case $ACTION in
uninstall) do_uninstall ;;
detect) do_detect ;;
*) do_install ;;
esac
