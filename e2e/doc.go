// Package e2e holds the root-only end-to-end tests: real ocserv, real
// openconnect, real occtl and ocpasswd in network namespaces, with the
// compiled hook wired as ocserv's scripts (see internal/testbed). The tests
// carry the e2e build tag; `make e2e` runs them as root after `make build`.
// This file has no tag so the package exists in every build.
package e2e
