# groupwatch — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-fast test-cluster lint format run stop kafka topics schemas clean \
	bench bench-table bench-ingest bench-stream bench-peer bench-analytics docker-images \
	compose-test screenshots vendor-uplot

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "groupwatch needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

## The whole suite; starts a real Kafka broker (from Maven Central jars) unless
## KAFKA_BOOTSTRAP_SERVERS points at one.
test: install
	$(BIN)/pytest

## The cluster fault suite on a local 3-node KRaft cluster (opt-in; CI runs it after `test`).
test-cluster: install
	GROUPWATCH_CLUSTER_TEST=1 $(BIN)/pytest tests/cluster

## Only the tests that need no broker.
test-fast: install
	$(BIN)/pytest -m "not kafka and not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/groupwatch schemas
	$(BIN)/python -m bench table --check

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

schemas: install
	$(BIN)/groupwatch schemas --write

## Runs what exists of the stack natively (broker + topics today; see README).
run: install
	$(BIN)/groupwatch up

stop: install
	$(BIN)/groupwatch kafka stop

kafka: install
	$(BIN)/groupwatch kafka start

topics: install
	$(BIN)/groupwatch topics create

## Benchmarks (docs/PERFORMANCE.md; most need a broker: `make kafka`, KAFKA_BOOTSTRAP_SERVERS).
## `make bench` lists them; `make bench NAME=stream ARGS="--rounds 3 --baseline-ref main"`.
bench: install
	$(BIN)/python -m bench $(if $(NAME),$(NAME) $(ARGS),--list)

## Regenerate the table in docs/PERFORMANCE.md from bench/results/*.json.
bench-table: install
	$(BIN)/python -m bench table --write

bench-ingest: install
	$(BIN)/python -m bench ingest $(ARGS)

bench-stream: install
	$(BIN)/python -m bench stream $(ARGS)

## The stream worker vs Quix Streams (at-least / exactly-once) and the raw loop; the
## bench creates Quix's own venv (.venv-quix, bench/stream/quix-requirements.txt) if missing.
bench-peer: install
	$(BIN)/python -m bench peer $(ARGS)

bench-analytics: install
	$(BIN)/python -m bench sink $(ARGS)
	$(BIN)/python -m bench served $(ARGS)
	$(BIN)/python -m bench report $(ARGS)

## PNG screenshots of every dashboard page into docs/ (headless Debian Chromium).
screenshots: install
	$(BIN)/python -m tests.analytics.dashboard.screenshots docs

## Refresh the vendored chart library from the npm registry: make vendor-uplot UPLOT=1.6.32
UPLOT ?= 1.6.32
vendor-uplot:
	analytics/dashboard/vendor-uplot.sh $(UPLOT)

## Local images without a registry (debootstrap base), then the compose proof.
docker-images:
	docker/build-images.sh

compose-test: install
	GROUPWATCH_COMPOSE_TEST=1 $(BIN)/pytest tests/simulate/test_compose_stack.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
