// Package firewall enforces ocserv's per-user network policy
// (restrict-user-to-routes, restrict-user-to-ports) the way Debian's
// ocserv-fw script (ocserv 1.1.6) does, but atomically, failing closed, and
// without spawning a process per rule.
//
// # Policy (ocserv-fw's, per tun device)
//
// For traffic forwarded from the device, in this order: DNS (UDP 53, and
// TCP 53 in conntrack state NEW or ESTABLISHED) to each of the session's
// DNS servers is accepted; denied ports are rejected, or, with allowed
// ports, only those go on and everything else is rejected; then, with
// restrict-user-to-routes, no-routes are rejected, routes accepted and the
// rest rejected (when the user has no routes at all, the rest is
// accepted); without it, everything that got this far is accepted. Return
// traffic to the device (conntrack ESTABLISHED,RELATED) is accepted. Other
// traffic to the device is left to the host's own rules. Rejections use
// ICMP/ICMPv6 port unreachable, like iptables' REJECT.
//
// # Backends
//
// nftables (the default where the kernel has nf_tables): one table
// "inet octel_<device>" per device, a base chain on the forward
// hook at priority filter - 10 (as in upstream's nftables rewrite of
// ocserv-fw), the device matched by name (iifname/oifname, exact, so it
// works before the device exists). Connect deletes any leftover table and
// builds the new one in one netlink batch: one kernel transaction, no
// process spawned. Disconnect deletes the table if it is the session's.
//
// Rules carry their owner (Owner: ocserv's ID and the session_uid), and
// Remove deletes only its owner's, in the same transaction as the check:
// ocserv can give a device to the next session before the previous one's
// disconnect runs (docs/firewall.md, "Whose rules").
//
// iptables: per device and family, chains "OCTEL-<device>" and
// "OCTELR-<device>" (its route checks) in the filter table, and two jumps at
// the top of FORWARD whose comment names the owner
// ("ocserv-telemetry:id=<ID>:uid=<session_uid>"). Each family is changed by
// one "iptables-restore --noflush" (or ip6tables-restore) transaction fed
// on stdin; the two run in parallel. Every helper process runs with a
// bounded wait (runChild); RemoveAll too, one transaction per flavour and
// family. Both backends render the same rule plan, so they give the same
// verdicts.
//
// Connect and Disconnect wrap a backend for the hook: a restricted session
// gets its rules; if that fails, a reject-all rule for the device; if even
// that fails, the outcome tells the hook to refuse the login.
//
// # Intended differences from ocserv-fw 1.1.6
//
//  1. IPv6 return traffic is accepted too (ocserv-fw has the conntrack rule
//     for IPv4 only, so behind an IPv6 FORWARD policy of DROP its users got
//     no replies).
//  2. Allowed-ports mode: ICMPv6 error messages (destination unreachable,
//     packet too big, time exceeded, parameter problem; RFC 4890 says they
//     must not be dropped) go on to the route checks even when icmpv6 is not
//     in the list. ocserv-fw rejects them, which breaks IPv6 path MTU
//     discovery and error reporting. "icmp" still means ICMPv4 only and
//     "icmpv6" all of ICMPv6, as in ocserv-fw.
//  3. Allowed-ports mode without restrict-user-to-routes: IPv6 traffic to an
//     allowed port is accepted. ocserv-fw's route chain then holds an
//     IPv4-only accept, so its IPv6 traffic falls through to the
//     reject-everything rule: all IPv6 was rejected.
//  4. Protocols without ports ("esp all", and ports "all" for tcp/udp/sctp)
//     are matched by protocol. ocserv-fw runs "iptables -p esp --dport all",
//     which fails, and its "set -e" then refuses the login.
//  5. Exact device matching everywhere: ocserv-fw's cleanup greps
//     "-[io] vpns1", which also deletes the rules of vpns10 to vpns19.
//  6. RemoveAll removes our chains and tables too; ocserv-fw --removeall
//     deletes its tagged rules but looks for "INPUT-ocserv-fw" chains, so
//     its FORWARD-ocserv-fw-* chains stay behind.
//  7. Atomic: a device's rules change in one transaction (nftables: both
//     families at once; iptables: one per family). ocserv-fw runs about 25
//     separate iptables commands, and the user's traffic passes while the
//     rules are half-built, or stays half-restricted when one fails.
//  8. Fail closed: when the rules cannot be applied the device gets a
//     reject-all rule, and when that fails the hook refuses the login.
//     ocserv-fw refuses the login only for failures after its DNS rules
//     ("set -e"); an earlier failure lets the user in with whatever
//     was installed.
//  9. Input is validated before anything reaches the kernel: a policy with
//     an entry that did not parse (events.Policy.Invalid), both allowed and
//     denied ports (ocserv-fw silently honours only the deny list), an
//     unknown protocol or a bad port gives reject-all, not an iptables
//     command built from shell words. Device names are restricted to
//     letters, digits, '_', '.' and '-' (not starting with '-'), so no name
//     is an iptables wildcard ('+'), negation or option.
//  10. Our rules come first: the nftables chain runs at priority
//     filter - 10 and the iptables jumps are inserted at the top of
//     FORWARD. ocserv-fw appends its DNS, port and route rules to the end of
//     FORWARD, so an earlier host rule accepting the device's traffic made
//     the restriction void (and an earlier reject hid DNS).
//  11. nftables backend only: an accept in our table is not final. The
//     packet then meets the host's other forward chains (iptables' FORWARD
//     policy, firewalld), which must let VPN traffic through, as they
//     must for unrestricted users anyway. A host whose FORWARD policy drops
//     forwarded traffic and relied on ocserv-fw's ACCEPT rules should use
//     the iptables backend. Rejections are final with both backends.
//  12. Names differ from every ocserv-fw's (table prefix "octel_", chains
//     "OCTEL-"/"OCTELR-", comments "ocserv-telemetry…"): the iptables
//     scripts claim the comment "ocserv-fw" and "*-ocserv-fw*" chains, the
//     nftables script (1.4.2 to 1.5.0) every "inet ocserv_*" table. Each
//     tool only ever removes its own rules, and they can coexist during a
//     migration. Earlier releases' "ocserv_telemetry_" tables are still
//     removed by ours.
//  13. Connect for a session with nothing to enforce removes leftovers of an
//     earlier session on the same device (ocserv does not run ocserv-fw for
//     such users, so a missed disconnect would have restricted them).
//  14. Running OCSERV_NEXT_SCRIPT is the hook's job, not this package's.
package firewall
