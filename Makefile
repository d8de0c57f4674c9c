# jetstream-operator — the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
JSO_CACHE ?= $(HOME)/.cache/jetstream-operator
# One cargo target directory outside the checkout, shared by every clone.
export CARGO_TARGET_DIR ?= $(JSO_CACHE)/target
CARGO ?= cargo
BIN := $(CARGO_TARGET_DIR)/debug/jetstream-operator

.PHONY: help tools build crds check-crds fmt-check clippy unit integration test e2e conformance demo bench soak chaos clean-run

help:
	@echo "make demo   local control plane + NATS + operator + examples (Ctrl-C stops it)"
	@echo "make test   fmt, clippy, unit tests, CRD sync check, integration tests on real components"
	@echo "make e2e    the Helm chart on a local single-node cluster with real pods (root; see tests/e2e.rs)"
	@echo "make bench  N Streams + N Consumers: convergence, cold start, rest, drift repair, memory (BENCH_N=1000)"
	@echo "make chaos  a 1,070-object rollout under faults, three seeds in a row, and 200 generated specs on a real server"
	@echo "make soak   2,000 objects an hour at rest: 0 writes, flat RSS, requests within budget (SOAK_SECS=3600)"
	@echo "make conformance  the conformance corpus on nats-server 2.10, 2.11, 2.12, 2.14 and 2.15"
	@echo "make crds   regenerate crds/ from the Rust types"

tools:
	@scripts/install-tools

build:
	$(CARGO) build --locked

crds: build
	$(BIN) crd > crds/crds.yaml
	scripts/sync-chart-crds

# crds/ must be exactly what the code generates.
check-crds: build
	@$(BIN) crd | diff -u crds/crds.yaml - \
	  || { echo "crds/ is out of date: run 'make crds' and commit the result" >&2; exit 1; }
	@scripts/sync-chart-crds --check \
	  || { echo "the chart's CRDs are out of date: run 'make crds' and commit the result" >&2; exit 1; }

fmt-check:
	$(CARGO) fmt --all -- --check

# --features e2e: tests/e2e.rs is linted too (without the feature it compiles to nothing).
clippy:
	$(CARGO) clippy --locked --all-targets --features e2e -- -D warnings

unit:
	$(CARGO) test --locked --lib --bins

integration: tools
	$(CARGO) test --locked --test '*' -- --test-threads=2

test: tools fmt-check clippy unit check-crds integration

# The chart end to end on a single-node cluster with real pods (scripts/e2e): helm install
# with README.md's command, the examples, pods deleted, two replicas and a failover,
# uninstall, a 3-node NATS cluster. As root; the node's tools and images are cached.
e2e:
	@scripts/install-tools --node
	@scripts/e2e

# The whole conformance corpus on every supported nats-server version (make test runs it
# whole on the newest and a subset on the others).
conformance: tools
	JSO_CONFORMANCE_FULL=1 $(CARGO) test --locked --test conformance -- --test-threads=2

demo: tools build
	@scripts/demo

BENCH_N ?= 1000
bench: tools
	@scripts/install-nack
	BENCH_N=$(BENCH_N) $(CARGO) bench --locked --bench scale

# The chaos suite at size, three runs with different seeds (JSO_CHAOS_SEED replays one),
# then 200 generated specs against the real apiserver and nats-server.
CHAOS_RUNS ?= 3
chaos: tools
	@mkdir -p .run
	@for i in $$(seq 1 $(CHAOS_RUNS)); do \
	  echo "== chaos run $$i of $(CHAOS_RUNS) (whole output: .run/chaos-$$i.log)"; \
	  JSO_CHAOS_FULL=1 $(CARGO) test --locked --test chaos -- --nocapture 2>&1 \
	    | tee .run/chaos-$$i.log | grep -E -A3 '^CHAOS|test result|panicked'; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done
	JSO_FUZZ_SEED=$${JSO_FUZZ_SEED:-random} JSO_FUZZ_SERVER_CASES=200 $(CARGO) test --locked --test fuzz -- --nocapture

SOAK_SECS ?= 3600
soak: tools
	SOAK_SECS=$(SOAK_SECS) $(CARGO) bench --locked --bench soak

clean-run:
	rm -rf .run
