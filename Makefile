# Bifrost — clustered AI gateway. `make run` and `make test` are all a new machine needs.

SWIFT        ?= swift
BUILD_FLAGS  ?=
RELEASE_DIR  := .build/release
DEBUG_DIR    := .build/debug
STATE_DIR    ?= .bifrost
BENCH_OUT    ?= bench/out
BENCH_EVENTS ?= 1000000
VENV         ?= .venv
PYTHON       ?= python3
SDK_PACKAGES := openai anthropic pytest pyyaml

APT_PACKAGES := liblmdb-dev lmdb-utils pkg-config haproxy chromium fonts-liberation openssl

.PHONY: all deps venv build build-tests test test-swift test-sdk test-ui run demo-eventlog sim bench faults soak lint format clean

all: build

## deps: install the system packages the build and tests need (Debian), if missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

## venv: a Python virtualenv with the official OpenAI and Anthropic SDKs and pytest (for test-sdk).
venv: $(VENV)/.installed

$(VENV)/.installed: Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check $(SDK_PACKAGES)
	touch $@

## build: debug build of the library and every tool.
build: deps
	$(SWIFT) build $(BUILD_FLAGS)

build-tests: deps
	$(SWIFT) build --build-tests $(BUILD_FLAGS)

## test: build everything, then run every test: Swift suites (unit, store, tools, crash, cluster,
## fault suite), the official OpenAI/Anthropic SDKs against a real node, the deploy files, and the
## dashboard in headless Chromium against a real 3-node cluster.
test: test-swift test-sdk test-ui

## Unit, store, tool and in-process network suites run in parallel; then the suites that start
## real node processes, one at a time (they measure timing on a 2-core machine).
test-swift: build-tests
	$(SWIFT) test --skip-build --skip MultiProcess $(BUILD_FLAGS)
	$(SWIFT) test --skip-build --filter MultiProcess $(BUILD_FLAGS)

test-sdk: build-tests venv
	BIFROST_BIN=$(DEBUG_DIR) $(VENV)/bin/pytest -q -p no:cacheprovider Tests/sdk Tests/deploy

## test-ui: headless Chromium renders /ui of a real 3-node cluster (screenshots in test-output/ui).
test-ui: build-tests venv
	BIFROST_BIN=$(DEBUG_DIR) $(VENV)/bin/pytest -q -p no:cacheprovider Tests/ui

## run: a local 3-node cluster (API 8080-8082, gossip 7946-7948) behind the mock provider (18080); Ctrl-C stops it.
run: build
	BIN=$(DEBUG_DIR) STATE_DIR=$(STATE_DIR) tools/scripts/local-cluster.sh

## demo-eventlog: write a node's log under $(STATE_DIR)/demo, then inspect and audit it with the tools.
demo-eventlog: build
	BIN=$(DEBUG_DIR) STATE_DIR=$(STATE_DIR) tools/scripts/demo-eventlog.sh

## sim: the seeded cluster simulator; SEEDS=N runs N seeds, SEED=S replays one.
sim: build
	$(DEBUG_DIR)/bifrost-sim $(if $(SEED),--seed $(SEED)) $(if $(SEEDS),--seeds $(SEEDS),$(if $(SEED),,--seeds 50)) $(SIM_ARGS)

## bench: release build, then every benchmark; writes $(BENCH_OUT)/*.json and docs/BENCHMARKS.md.
bench: deps
	@missing=""; command -v wrk >/dev/null || missing="wrk"; [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	if [ -n "$$missing" ]; then SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; fi
	$(SWIFT) build -c release $(BUILD_FLAGS)
	BIN=$(RELEASE_DIR) BENCH_OUT=$(BENCH_OUT) BENCH_EVENTS=$(BENCH_EVENTS) tools/scripts/bench.sh

## faults: the fault suite with full phases (30 s partition); figures go into the bench report.
faults: build-tests
	BIFROST_FAULTS_FULL=1 BIFROST_FAULTS_OUT=$(abspath $(BENCH_OUT)) $(SWIFT) test --skip-build --filter 'MultiProcess/(FaultSuiteTests|FailoverTests)'
	python3 tools/scripts/bench_report.py $(BENCH_OUT) docs/BENCHMARKS.md

## soak: release build, then a 3-node cluster at SOAK_RATE req/s with a 1-minute retention horizon
## for SOAK_MINUTES; writes $(BENCH_OUT)/soak.json, docs/images/soak.png and the report.
SOAK_MINUTES ?= 20
SOAK_RATE    ?= 200
soak: deps venv
	$(SWIFT) build -c release $(BUILD_FLAGS)
	$(VENV)/bin/pip install -q --disable-pip-version-check matplotlib
	mkdir -p $(BENCH_OUT)
	$(RELEASE_DIR)/bifrost-bench soak --minutes $(SOAK_MINUTES) --rate $(SOAK_RATE) --horizon 1m --interval 5s --json > $(BENCH_OUT)/soak.json
	$(VENV)/bin/python tools/scripts/soak_chart.py $(BENCH_OUT)/soak.json docs/images/soak.png
	python3 tools/scripts/bench_report.py $(BENCH_OUT) docs/BENCHMARKS.md

## lint: check formatting against .swift-format.
lint:
	$(SWIFT) format lint --strict -r Sources Tests tools Package.swift

format:
	$(SWIFT) format format -i -r Sources Tests tools Package.swift

clean:
	rm -rf .build $(BENCH_OUT)
