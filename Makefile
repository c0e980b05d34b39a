# wasmfleet: the Makefile is the CI contract. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin
PKGS := ./...
# -race doubles the time of the sandbox tests but is worth it; CI runs it.
RACE ?= -race
TESTFLAGS ?=
# The agent reports this in its status (and the dashboard shows it): the commit, or a tag.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/wasmfleet/wasmfleet/agent.Version=$(VERSION)
# Nothing we build speaks HTTP/2 (S3 and the dashboard are fine on HTTP/1.1): leaving net/http's
# bundled HTTP/2 out takes 0.5 MiB off every binary (docs/BENCHMARKS.md, Binary sizes).
TAGS := nethttpomithttp2
# Packages the agent only runs when it starts or takes an update are compiled without
# inlining: 0.375 MiB less for the arm64 agent, no measurable time (scripts/noinline-packages).
NOINLINE := $(shell grep -v -e '^\#' -e '^$$' scripts/noinline-packages)
GCFLAGS := $(foreach p,$(NOINLINE),-gcflags='$(p)=-l')
CROSS := linux/arm64 linux/arm/6 linux/arm/7 linux/amd64

.PHONY: go-modules help build cross packages modules deps deps-interop check test bench demo demo-run clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build wasmfleet and wasmfleet-agent for this machine into bin/
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(TAGS)' $(GCFLAGS) -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

cross: ## static agent and CLI for linux/arm64, arm (GOARM=6,7) and amd64 into bin/
	@set -e; for t in $(CROSS); do \
	  IFS=/ read -r os arch arm <<<"$$t"; \
	  out=$(BIN)/$$os-$$arch$${arm:+v$$arm}; mkdir -p $$out; \
	  echo "cross $$t -> $$out"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=$$arm $(GO) build -trimpath -tags '$(TAGS)' $(GCFLAGS) -ldflags '$(LDFLAGS)' -o $$out/ ./cmd/...; \
	done

packages: cross ## .deb packages of the agent and the fleet server for amd64, arm64 and armhf (ARMv6) into dist/, with nfpm
	bash deploy/deb/build.sh dist

modules: ## rebuild the example handlers and the hostile test modules (.wasm beside sources)
	bash modules/build.sh

deps: ## install what the tests need on Debian (root, idempotent)
	bash scripts/deps.sh

deps-interop: deps ## also install cosign for the interop tests (slow: ~8 minutes)
	bash scripts/deps-interop.sh

check: ## gofmt, vet, go mod tidy without diff, cross-builds
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) mod tidy -diff
	$(MAKE) cross
	@# The developer CLI (new, build, dev) also runs on the developer's machine.
	for os in darwin windows; do GOOS=$$os GOARCH=arm64 $(GO) build -o /dev/null ./cmd/wasmfleet || exit 1; done

# The sandbox's tests assert wall-clock deadlines (a runaway guest stopped within its
# deadline + 10 ms), which only means something on a machine that is not also running other
# test binaries: they run first, alone and one package at a time (-p 1: the rewrite
# package's tests would otherwise share the two cores); then everything else, in parallel.
SANDBOX := ./agent/sandbox/...

# The Go examples' .wasm files are built, not committed (megabytes of Go runtime each).
go-modules: ## build the Go example handlers with Go alone (make test and make demo do)
	bash modules/build-go.sh

test: deps go-modules ## install test dependencies, then run every test
	$(GO) test $(RACE) -p 1 -timeout 20m $(TESTFLAGS) $(SANDBOX)
	$(MAKE) bench-smoke
	$(GO) test $(RACE) -timeout 20m $(TESTFLAGS) $$($(GO) list $(PKGS) | grep -v '/agent/sandbox')
	$(MAKE) fuzz-smoke

# Every fuzz target (found by scripts/fuzz.sh), FUZZTIME each. A crash fails the run and
# leaves its input in the package's testdata/fuzz/: commit it with the fix, as a regression
# test that plain `go test` runs.
FUZZTIME ?= 2m
.PHONY: fuzz fuzz-smoke soak
fuzz: ## run every fuzz target for FUZZTIME (2m) each
	FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

fuzz-smoke: ## run every fuzz target for 2s (make test does)
	FUZZTIME=2s bash scripts/fuzz.sh

# The long forms of the reliability tests (docs/RELIABILITY.md): 200 power cuts, 20 broker
# kills under load, 60 s of overload, a 30-minute soak with an update a minute and 10 minutes
# at a steady 1,000 events a second. The whole log goes to bin/soak.log; the figures are
# printed.
SOAKFLAGS ?= -powercuts 200 -broker-kills 20 -overload 60s -soak 30m -soak-update 1m -steady 10m
soak: deps go-modules ## the long reliability runs (~50 min): power cuts, broker kills, overload, soak, steady rate
	@mkdir -p $(BIN)
	set -o pipefail; $(GO) test -count 1 -v -timeout 100m \
	  -run '^(TestPowerCutDuringUpdate|TestBrokerRestartUnderLoad|TestOverload|TestSoak|TestSteadyRate)$$' ./agent $(SOAKFLAGS) 2>&1 | \
	  tee $(BIN)/soak.log | grep -E '^ +(powercut|brokerload|overload|soak|steady)_test\.go|^ {8}|^(---|ok|FAIL|PASS|panic)'

# agent/sandbox's benchmarks and their peers (plain wazero, a native build fork/exec'ed per
# event, Node.js), then the agent end to end through Mosquitto against the broker's own rate
# (TestEndToEndRate, E2EEVENTS readings a round) and its idle memory (TestIdleFootprint),
# write the sandbox tables of docs/BENCHMARKS.md, medians of BENCHCOUNT runs; the raw output
# stays in bin/bench-*.txt.
# Then every other package's benchmarks.
BENCHCOUNT ?= 5
E2EEVENTS ?= 20000
bench: deps go-modules ## run the benchmarks; the sandbox's and its peers' figures go into docs/BENCHMARKS.md
	@mkdir -p $(BIN)
	set -o pipefail; { echo "loadavg-before: $$(cat /proc/loadavg)"; \
	  $(GO) test -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) -timeout 60m ./agent/sandbox/; \
	  echo "loadavg-after: $$(cat /proc/loadavg)"; } | tee $(BIN)/bench-sandbox.txt
	set -o pipefail; $(GO) test -run '^(TestEndToEndRate|TestIdleFootprint)$$' -count 1 -v ./agent/ -e2e-events $(E2EEVENTS) \
	  -e2e-out $(CURDIR)/$(BIN)/bench-e2e.txt -footprint-out $(CURDIR)/$(BIN)/bench-footprint.txt | grep -E 'BENCH|^(---|ok|FAIL)'
	cat $(BIN)/bench-sandbox.txt $(BIN)/bench-e2e.txt $(BIN)/bench-footprint.txt | $(GO) run ./agent/sandbox/internal/benchtable -doc docs/BENCHMARKS.md
	$(GO) test -run '^$$' -bench . -benchmem -count 5 $$($(GO) list $(PKGS) | grep -v '/agent/sandbox$$')

# CI runs the sandbox's benchmarks once each (-benchtime 1x, -short: Node.js runs 20 events)
# to check that they and their peers work and that the table can be made from their output.
.PHONY: bench-smoke
bench-smoke:
	@mkdir -p $(BIN)
	set -o pipefail; $(GO) test -run '^$$' -bench . -benchmem -benchtime 1x -short ./agent/sandbox/ > $(BIN)/bench-smoke.txt \
	  && $(GO) run ./agent/sandbox/internal/benchtable < $(BIN)/bench-smoke.txt > /dev/null \
	  || { cat $(BIN)/bench-smoke.txt; exit 1; }

# TestScale with SCALE real agents in one process and `wasmfleet serve` in its own; prints
# the BENCH lines that docs/BENCHMARKS.md ("Rollouts") quotes.
SCALE ?= 1000
.PHONY: bench-rollout
bench-rollout: deps ## roll out to SCALE (1000) real agents through 4 waves, and abort: time, messages, S3, controller memory
	set -o pipefail; $(GO) test -run '^TestScale$$' -count 1 -v -timeout 30m ./cmd/wasmfleet/e2e -scale $(SCALE) | grep -E 'BENCH|agents started|seed:|^(---|ok|FAIL|panic)'

# `make demo` runs until Ctrl-C; CI gives it a time: make demo DEMO_ARGS='--for 90s' (exit 2
# unless every example handler was rolled out by then).
DEMO_ARGS ?=
demo: ## wasmfleet dev: broker, S3, controller, dashboard and 3 agents running the examples (needs only Go)
	bash scripts/demo.sh $(DEMO_ARGS)

demo-run: ## run each example handler once through the agent's sandbox, and some hostile modules
	bash scripts/demo-run.sh

clean: ## remove build output
	rm -rf $(BIN)
