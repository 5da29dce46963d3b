# edufleet: `make demo` runs the whole system on loopback, `make test` runs every check.
#
# Both create .venv with the pinned dependencies and start a private PostgreSQL
# and Mosquitto unless EDUFLEET_DATABASE_URL / EDUFLEET_MQTT_URL name existing ones.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SERVICES := $(PYTHON) scripts/services.py
PYTEST_ARGS ?=

.PHONY: venv test lint typecheck pytest demo bench bench-import bench-registry bench-ingest \
	bench-agent bench-simulator bench-walls bench-qr bench-dispatch bench-dynsec drills clean

$(STAMP): constraints.txt requirements-dev.txt agent/pyproject.toml collector/pyproject.toml
	$(SERVICES) ensure venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -r requirements-dev.txt -e agent -e collector
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(SERVICES) ensure chromium
	$(SERVICES) ensure cjkfont
	$(SERVICES) ensure docker-compose
	$(SERVICES) run -- $(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

demo: venv
	$(SERVICES) run -- $(BIN)/edufleet demo

bench-import: venv
	$(SERVICES) run -- $(BIN)/python bench/bench_import.py

bench-registry: venv
	$(SERVICES) run -- $(BIN)/python bench/bench_registry.py

bench-ingest: venv
	$(SERVICES) run -- $(BIN)/python bench/bench_ingest.py

.PHONY: bench-simulator
bench-simulator: venv
	$(SERVICES) run -- $(BIN)/python bench/bench_simulator.py

bench-agent: venv
	$(SERVICES) run -- $(BIN)/python bench/bench_agent_footprint.py

.PHONY: bench-walls
bench-walls: venv
	$(SERVICES) run -- $(BIN)/python bench/bench_walls.py

bench-qr: venv
	$(SERVICES) ensure wrk
	$(SERVICES) run -- $(BIN)/python bench/bench_qr.py

bench-dispatch: venv
	$(SERVICES) run -- $(BIN)/python bench/bench_dispatch.py

bench-dynsec: venv
	$(SERVICES) run -- $(BIN)/python bench/bench_dynsec.py

bench: bench-import bench-registry bench-ingest bench-simulator bench-agent bench-walls \
	bench-qr bench-dispatch bench-dynsec

# The failure drills, at a few thousand devices; each takes a minute or two, so
# `make test` leaves them out (pytest deselects the "drill" marker by default).
drills: venv
	EDUFLEET_DRILL_DEVICES=3000 EDUFLEET_DRILL_INTERVAL=5 EDUFLEET_DRILL_SECONDS=60 \
		$(SERVICES) run -- $(BIN)/pytest -q -m drill tests/drills

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test-artifacts
