// Package natsperm holds the test of docs/nats.md's fleet permissions:
// the nats-server configuration between its permissions markers is loaded
// as it is into a real server, the real parts (hook, shipper, ledger
// consumer and query service, a signed operator query, a dashboard) run
// under it, and a taken-over host's credentials are tried against every
// promise the page makes. It has no code of its own.
package natsperm
