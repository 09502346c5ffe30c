# ocserv-telemetry. `make demo` runs the product on an embedded NATS server;
# `make test` runs every test that needs no root; `make e2e` (as root) runs
# the tests that need network namespaces, real ocserv and real iptables.
GO      ?= go
BIN     := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/ocserv-telemetry/ocserv-telemetry/hook.Version=$(VERSION)
# Tests with a fuzz target run each one briefly; CI sets FUZZTIME.
FUZZTIME ?= 10s
# Packages with root-only tests (build tag e2e).
E2E_PKGS := ./hook/... ./e2e/... ./firewall/...

.PHONY: all build test e2e bench fuzz demo vet clean package check-units

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
# load is reported, not asserted). Then the check that every figure in the
# README and docs/ comes from a script.
test: build
	$(GO) test -count=1 -timeout 20m ./...

# Root-only tests: network namespaces, real ocserv/openconnect/occtl/ocpasswd,
# real iptables and nftables. -p 1: they share the host's kernel state.
e2e: build
	@if [ "$$(id -u)" != 0 ]; then echo "make e2e needs root (network namespaces, ocserv, iptables)"; exit 1; fi
	$(GO) test -tags e2e -count=1 -p 1 -timeout 40m $(E2E_PKGS)

fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

bench: build
	./scripts/bench.sh

demo: build
	$(GO) run ./cmd/demo

# .deb and .rpm in dist/ (nfpm, from the module proxy).
package: build
	./scripts/package.sh

# systemd-analyze verify and security of the units (shipper exposure <= 3.0).
check-units: build
	./scripts/check-units.sh

clean:
	rm -rf $(BIN) dist
