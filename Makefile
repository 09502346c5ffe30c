# ocserv-telemetry. `make demo` runs the product on an embedded NATS server;
# `make test` runs every test that needs no root; `make e2e` (as root) runs
# the tests that need network namespaces, real ocserv and real iptables.
GO      ?= go
BIN     := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/ocserv-telemetry/ocserv-telemetry/hook.Version=$(VERSION)
# Tests with a fuzz target run each one briefly; CI sets FUZZTIME. A count
# of inputs (Nx), not a duration: with a duration, go1.26's fuzz coordinator
# can report its own deadline as a failure on a busy machine (golang/go#75804,
# fixed in go1.27); a count has no deadline to race. A duration still works
# by hand (make fuzz FUZZTIME=5m).
FUZZTIME ?= 20000x
# Packages with root-only tests (build tag e2e) that do not depend on the
# ocserv version; ./e2e/... runs once per version in E2E_VERSIONS.
E2E_PKGS := ./hook/... ./firewall/... ./internal/distro/... ./policy/...
# The ocserv versions make e2e runs the end-to-end suite on (1.1.6 is the
# host's; the others run from cached Debian roots, internal/distro).
E2E_VERSIONS ?= 1.1.6 1.3.0 1.5.0

.PHONY: all build test e2e bench fuzz demo vet clean package check-units screenshots

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/hook ./cmd/hook
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/shipper ./cmd/shipper
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ctl ./cmd/ctl
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/commander ./cmd/commander
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ledger ./cmd/ledger

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e ./...

# Unit and integration tests (embedded nats-server, real processes, no root),
# all packages side by side: the tests assert what the design promises, not
# what a quiet machine does (how many hooks took the fallback path under
# load is reported, not asserted). Among them internal/docblocks: it fails
# when a figure that reads like a measurement sits in the README or docs/
# outside a block `make bench` writes.
test: build
	$(GO) test -count=1 -timeout 20m ./...

# Root-only tests: network namespaces, real ocserv/openconnect/occtl/ocpasswd,
# real iptables and nftables, and Debian containers booted with systemd as
# PID 1 (systemd-nspawn; their debootstrapped roots are cached in
# /var/cache/ocserv-telemetry-test) that install the .deb from dist/.
# -p 1: they share the host's kernel state.
e2e: build package
	@if [ "$$(id -u)" != 0 ]; then echo "make e2e needs root (network namespaces, ocserv, iptables)"; exit 1; fi
	$(GO) test -tags e2e -count=1 -p 1 -timeout 40m $(E2E_PKGS)
	GO=$(GO) ./scripts/e2e-matrix.sh $(E2E_VERSIONS)

fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

# Every benchmark (as a normal user those that need no root, saying which
# were skipped); results in bench/results/, figures into the generated
# blocks of the README and docs/ (docs/benchmarks.md).
bench: build
	./scripts/bench.sh

# CONSOLE=1: then bin/ledger with the web console on the demo's events,
# serving until Ctrl-C (it prints the address and a login).
demo: build
	$(GO) run ./cmd/demo $(if $(CONSOLE),--console)

# The console's screenshots in docs/console/ (a real headless Chromium).
screenshots:
	$(GO) test -count=1 -run 'TestBrowser(Console|Policy)$$' ./console -screenshots=$(CURDIR)/docs/console

# .deb and .rpm in dist/ (nfpm, from the module proxy).
package: build
	./scripts/package.sh

# systemd-analyze verify and security of the units (shipper exposure <= 3.0).
check-units: build
	./scripts/check-units.sh

clean:
	rm -rf $(BIN) dist
