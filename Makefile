# The two set-up commands of the README:
#   make run    installs everything and starts the devnet (Kafka, L1, node, price feed, dashboard)
#   make test   installs everything, starts the test broker, runs the tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-deep test-fast bench clean kafka-start kafka-stop

$(STAMP): pyproject.toml web/package-lock.json $(wildcard web/src/*)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	bash infra/kafka/kafka.sh install
	bash infra/anvil/anvil.sh install
	bash infra/browser/chromium.sh install
	cd web && npm ci --no-audit --no-fund && npm run build
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/isoroll devnet

test: install
	$(BIN)/pytest -q -p no:cacheprovider --durations=25

# The Hypothesis tests of tests/evm at their full example counts (make test runs a
# share of them, README "Tests"): the one-step differentials in full, the bridge
# invariants with 30 sequences.
test-deep: install
	ISOROLL_ONESTEP_EXAMPLES_SCALE=1 ISOROLL_BRIDGE_EXAMPLES=30 $(BIN)/pytest -q -p no:cacheprovider --durations=25 tests/evm

test-fast: install
	$(BIN)/pytest -q -p no:cacheprovider tests/unit

bench: install
	$(BIN)/python -m bench

kafka-start: install
	bash infra/kafka/kafka.sh start

kafka-stop:
	bash infra/kafka/kafka.sh stop

clean:
	bash infra/kafka/kafka.sh stop || true
	rm -rf .devnet
