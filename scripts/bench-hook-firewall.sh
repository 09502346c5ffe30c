#!/usr/bin/env bash
# Whole-process firewall benchmark of the hook as ocserv's fw script:
# one connect+disconnect cycle of a restricted user (three IPv4 and two
# IPv6 routes, a no-route in each family, an IPv4 and an IPv6 DNS server,
# allowed ports "tcp 443 udp 53 tcp 80 icmp all") with
#   ocserv-fw     Debian's /usr/bin/ocserv-fw (ocserv 1.1.6, iptables),
#   hook-nft      bin/hook --fw, FIREWALL_BACKEND=nftables (netlink),
#   hook-ipt      bin/hook --fw, FIREWALL_BACKEND=iptables (iptables-restore),
#   runner        the cycle runner around /bin/true: its own cost.
# Method: a cycle is two processes (REASON=connect, then REASON=disconnect),
# so each command is bench/cycle.sh-style runner ($work/cycle) that runs
# its argument twice, once per REASON, and fails if either run fails. The
# runner (one /bin/sh and two forks) is timed alone as "runner", and the
# ratios are given both raw and with its median subtracted from every
# cycle. bench/procbench interleaves the commands (each round runs every
# command once, in random order) so load bursts on this shared machine hit
# all of them alike; medians, p10 and p90 are reported.
# Everything runs inside a private network namespace with a tun device
# vpns0 (this kernel has no dummy module); the host's ruleset is read
# before and after and must not change. Needs root. RUNS (default 100).
# Goals (docs/design.md): ocserv-fw / hook-nft >= 30x, ocserv-fw / hook-ipt
# >= 8x. Writes bench/results/hook-firewall.json (every round),
# hook-firewall.md (the block of docs/benchmarks.md) and
# hook-firewall-summary.md (the README's).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/benchlib.sh
bench_needs_root "a network namespace and firewall rules"
runs=${RUNS:-100}
out=$(bench_results)
run_line=$(bench_run_line)
ns="octb-$$-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
# The spool on the repository's disk, as for the hook benchmark: the hook's
# fsync is part of the work measured.
work=$(mktemp -d "$out/hook-fw-work.XXXXXX")
host_rules() { iptables-save -t filter | grep -v '^#'; ip6tables-save -t filter | grep -v '^#'; nft list tables 2>/dev/null; }
host_before=$(host_rules | sed 's/\[[0-9:]*\]//')
cleanup() {
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

make -s build >/dev/null
go build -o "$work/procbench" ./bench/procbench

ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" tuntap add dev vpns0 mode tun
ip -n "$ns" link set vpns0 up

mkdir -m 0750 "$work/spool-nft" "$work/spool-ipt"
for b in nft ipt; do
	backend=nftables
	[ "$b" = ipt ] && backend=iptables
	# The budgets are raised so that a stall on a busy machine costs the
	# round its time instead of a refusal that aborts the run; they bound
	# the work, they are not part of it.
	printf 'SERVER_ID=bench\nSPOOL_DIR=%s/spool-%s\nFIREWALL=on\nFIREWALL_BACKEND=%s\nHOOK_BUDGET=10s\nHOOK_FIREWALL_BUDGET=5s\n' "$work" "$b" "$backend" >"$work/agent-$b.env"
done

# The cycle runner: REASON=connect then REASON=disconnect, both must
# succeed. It also notes when each phase started and ended (bash's
# EPOCHREALTIME, microseconds), so connect alone, the part a login waits
# for, gets its own median; ocserv does not wait for the disconnect script.
r4="10.10.10.0/255.255.255.0 10.30.0.0/255.255.0.0 172.16.5.0/255.255.255.0 "
r6="2001:db8:10::/64 2001:db8:30::/48 "
n4="10.10.10.128/255.255.255.128 "
n6="2001:db8:10:0:8000::/65 "
d4="192.168.99.53 "
d6="2001:db8:99::53 "
benv=(
	PATH=/usr/sbin:/usr/bin:/sbin:/bin
	DEVICE=vpns0 ID=4242 USERNAME=alice GROUPNAME= VHOST=default HOSTNAME=vm REMOTE_HOSTNAME=vm
	IP_REAL=198.51.100.7 IP_REAL_LOCAL=203.0.113.1 IP_LOCAL=192.168.250.1 IP_REMOTE=192.168.250.50
	IPV6_LOCAL=fd00:250::1 IPV6_REMOTE=fd00:250::50 USER_AGENT="Open AnyConnect VPN Agent v9.01-3"
	OCSERV_RESTRICT_TO_ROUTES=1
	"OCSERV_ROUTES=$r4$r6" "OCSERV_ROUTES4=$r4" "OCSERV_ROUTES6=$r6"
	"OCSERV_NO_ROUTES=$n4$n6" "OCSERV_NO_ROUTES4=$n4" "OCSERV_NO_ROUTES6=$n6"
	"OCSERV_DNS=$d4$d6" "OCSERV_DNS4=$d4" "OCSERV_DNS6=$d6"
	"OCSERV_ALLOW_PORTS=tcp 443 udp 53 tcp 80 icmp all "
	STATS_BYTES_IN=1000 STATS_BYTES_OUT=2000 STATS_DURATION=60
)
ns_rules() {
	ip netns exec "$ns" nft list ruleset 2>/dev/null
	ip netns exec "$ns" iptables-save
	ip netns exec "$ns" ip6tables-save
}
inns() { env -i "${benv[@]}" ip netns exec "$ns" "$@"; }

# Sanity: each cycle really builds and removes the rules, and leaves the
# namespace as it found it (nothing of ours, ocserv-fw's chains aside:
# its disconnect leaves an empty FORWARD-ocserv-fw-vpns0 chain behind).
check_connect() {
	name=$1 want=$2
	shift 2
	env -i "${benv[@]}" REASON=connect ip netns exec "$ns" "$@"
	if ! ns_rules | grep -F -- "$want" >/dev/null; then
		echo "$name: connect did not install $want" >&2
		exit 1
	fi
	env -i "${benv[@]}" REASON=disconnect ip netns exec "$ns" "$@"
}
check_connect ocserv-fw "ocserv-fw" /usr/bin/ocserv-fw
# How many iptables and ip6tables commands ocserv-fw runs for this user.
# sh -x traces every command ("+ iptables ...", "++" inside $(...)); an
# eval is traced as "+ eval" and its string, one command per line.
fw_cmds() {
	env -i "${benv[@]}" REASON="$1" ip netns exec "$ns" sh -x /usr/bin/ocserv-fw 2>&1 >/dev/null |
		grep -cE '^(\++ (eval )?)?(iptables|ip6tables)( |$)' || true
}
fw_connect_cmds=$(fw_cmds connect)
fw_disconnect_cmds=$(fw_cmds disconnect)
check_connect hook-nft "octel_vpns0" "$root/bin/hook" --fw --config "$work/agent-nft.env"
check_connect hook-ipt "OCTEL-vpns0" "$root/bin/hook" --fw --config "$work/agent-ipt.env"
if ns_rules | grep -E 'octel_|ocserv_telemetry_|OCTEL|ocserv-telemetry|--comment ocserv-fw'; then
	echo "rules left after a cycle" >&2
	exit 1
fi

warmup=10
# A cycle is two processes, connect then disconnect, as ocserv runs them;
# procbench forks both itself (no shell in between) and times the pair, and
# each step alone.
cycle() { printf '%s\n' REASON=connect "$@" ++ REASON=disconnect "$@"; }
mapfile -t c_fw < <(cycle /usr/bin/ocserv-fw)
mapfile -t c_nft < <(cycle "$root/bin/hook" --fw --config "$work/agent-nft.env")
mapfile -t c_ipt < <(cycle "$root/bin/hook" --fw --config "$work/agent-ipt.env")
inns "$work/procbench" -runs "$runs" -warmup "$warmup" -json "$out/hook-firewall.json" -- \
	ocserv-fw "${c_fw[@]}" :: hook-nft "${c_nft[@]}" :: hook-ipt "${c_ipt[@]}" >"$work/table.md"

left=$(ns_rules | grep -cE 'octel_|ocserv_telemetry_|OCTEL|ocserv-telemetry|--comment ocserv-fw' || true)
[ "$left" = 0 ] || { echo "rules left after the benchmark: $left lines" >&2; exit 1; }
shopt -s nullglob
spooled() { cat "$work/spool-$1"/pending/*.ndjson "$work/spool-$1"/queue.ndjson; }
ev_nft=$(spooled nft | wc -l)
actions=$(spooled nft | jq -r '"\(.type) \(.firewall.action) \(.admitted // "-")"' | sort | uniq -c | tr -s ' ' | paste -sd,)
host_after=$(host_rules | sed 's/\[[0-9:]*\]//')
[ "$host_before" = "$host_after" ] || { echo "the host ruleset changed during the benchmark" >&2; exit 1; }

# The firewall's own time inside the hook, from the events it wrote.
fw_elapsed() { # backend type
	spooled "$1" | jq -s -r --arg t "$2" '[.[] | select(.type == $t) | .firewall.elapsed_us] | sort |
		if length == 0 then "-" else (.[length / 2 | floor] / 1000 * 100 | round / 100 | tostring) end'
}
median() { jq -r --arg n "$1" '.results[] | select(.name == $n) | .median' "$out/hook-firewall.json"; }
step() { jq -r --arg n "$1" --argjson s "$2" '.results[] | select(.name == $n) | .steps[$s].median' "$out/hook-firewall.json"; }
fw=$(median ocserv-fw) hn=$(median hook-nft) hi=$(median hook-ipt)
{
	echo "$run_line"
	echo "$runs interleaved rounds (\`RUNS\`) after 10 warm-up rounds; every round's time of every command and step is in \`bench/results/hook-firewall.json\`."
	echo
	cat "$work/table.md"
	echo
	awk -v f="$fw" -v n="$hn" -v i="$hi" 'BEGIN {
		printf "- cycle, ocserv-fw / hook-nft: **%.1fx** (goal ≥ 30x)\n", f/n
		printf "- cycle, ocserv-fw / hook-ipt: **%.1fx** (goal ≥ 8x)\n", f/i
	}'
	awk -v f="$(step ocserv-fw 0)" -v n="$(step hook-nft 0)" -v i="$(step hook-ipt 0)" 'BEGIN {
		printf "- connect alone (what a login waits for): ocserv-fw %.2f ms, hook-nft %.2f ms (%.1fx), hook-ipt %.2f ms (%.1fx)\n", f*1e3, n*1e3, f/n, i*1e3, f/i
	}'
	awk -v f="$(step ocserv-fw 1)" -v n="$(step hook-nft 1)" -v i="$(step hook-ipt 1)" 'BEGIN {
		printf "- disconnect alone: ocserv-fw %.2f ms, hook-nft %.2f ms, hook-ipt %.2f ms\n", f*1e3, n*1e3, i*1e3
	}'
	echo "- iptables and ip6tables commands ocserv-fw ran for this user (\`sh -x\`): $fw_connect_cmds on connect, $fw_disconnect_cmds on disconnect; the hook: one netlink transaction (nftables) or one \`iptables-restore\` per family"
	echo "- the hook's own \`firewall.elapsed_us\`, median of this run's events: hook-nft $(fw_elapsed nft connect) ms on connect, $(fw_elapsed nft disconnect) ms on disconnect; hook-ipt $(fw_elapsed ipt connect) ms and $(fw_elapsed ipt disconnect) ms"
	echo "- events hook-nft wrote in this run (sanity cycle and warm-up included): $ev_nft (type, firewall.action, admitted: $actions)"
} >"$out/hook-firewall.md"
awk -v f="$fw" -v n="$hn" -v i="$hi" -v fc="$(step ocserv-fw 0)" -v nc="$(step hook-nft 0)" -v d="$(date -u +%F)" -v r="$runs" 'BEGIN {
	printf "Measured by `scripts/bench-hook-firewall.sh` (%s, %d interleaved rounds, [docs/benchmarks.md](docs/benchmarks.md#firewall-the-hook-as-ocservs-fw-script)): a connect+disconnect cycle of a restricted user (routes, no-routes, DNS and allowed ports in both families) took ocserv-fw %.0f ms; `hook --fw` was **%.1fx** faster with nftables (goal ≥ 30x) and **%.1fx** with iptables (goal ≥ 8x). The connect alone, what a login waits for: %.1f ms against ocserv-fw'"'"'s %.1f ms.\n", d, r, f*1e3, f/n, f/i, nc*1e3, fc*1e3
}' >"$out/hook-firewall-summary.md"
cat "$out/hook-firewall.md" "$out/hook-firewall-summary.md"
