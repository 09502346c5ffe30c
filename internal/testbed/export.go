package testbed

import "time"

// The bed's namespace and command helpers, for test infrastructure beside
// the bed (package nspawn's container runs ocserv under its own systemd,
// and its clients use the same namespaces and veth links as the bed's).

// NamePrefix starts every namespace and veth the test infrastructure
// makes, so stale ones from a crashed run can be recognised.
const NamePrefix = namePrefix

// RunCmd runs argv (no shell) with a hard timeout and returns its combined
// output; the error carries the command and its output.
func RunCmd(timeout time.Duration, argv ...string) ([]byte, error) { return runCmd(timeout, argv...) }

// AddNetns creates a named network namespace with its loopback up.
func AddNetns(name string) error { return addNetns(name) }

// DelNetns kills whatever still runs in the namespace, then deletes it
// and its /etc/netns overrides.
func DelNetns(name string) error { return delNetns(name) }

// VethPair joins two namespaces with a veth pair, one address (CIDR) on
// each end; no device ever appears in the host's namespace.
func VethPair(nsA, ifA, addrA, nsB, ifB, addrB string) error {
	return vethPair(nsA, ifA, addrA, nsB, ifB, addrB)
}

// InNetns runs fn on an OS thread switched into the named namespace;
// sockets made in fn stay in it.
func InNetns(name string, fn func() error) error { return inNetns(name, fn) }

// RandHex is n random bytes in hex (names of namespaces and devices).
func RandHex(n int) string { return randHex(n) }

// CleanStaleNetns deletes namespaces with NamePrefix left by runs that
// crashed long ago.
func CleanStaleNetns(logf func(string, ...any)) { cleanStale(logf) }
