# Everything installs from the repo's own locked files into .venv:
#   requirements-bootstrap.txt (uv, hash-pinned) -> requirements.lock (+ requirements-dev.lock).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
export UV_PYTHON := $(BIN)/python
# Bytecode compiled at install, as pip does in the image: otherwise the first import of each
# module in every fresh venv compiles it (35 s of a first `trainyard validate` at 1M rows).
export UV_COMPILE_BYTECODE := 1

.DEFAULT_GOAL := help
.PHONY: help demo up down status test test-unit lint hooks bench bench-serving lock clean browser

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements-bootstrap.txt

# The runtime package (include/trainyard) and the local tooling (tools/trainyard_dev), editable.
$(VENV)/.runtime: requirements.lock pyproject.toml tools/pyproject.toml | $(UV)
	$(UV) pip install --quiet -r requirements.lock
	$(UV) pip install --quiet --no-deps -e . -e tools
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.lock
	$(UV) pip install --quiet -r requirements-dev.lock
	@touch $@

demo: $(VENV)/.runtime  ## start the embedded stack, train through Airflow, print the outcome
	$(BIN)/trainyard-dev demo

up: $(VENV)/.runtime  ## start the embedded stack only
	$(BIN)/trainyard-dev stack up

down:  ## stop the embedded stack (state stays in .stack/)
	@if [ -x $(BIN)/trainyard-dev ]; then $(BIN)/trainyard-dev stack down; else echo "nothing to stop"; fi

status: $(VENV)/.runtime  ## which services of the embedded stack are running
	$(BIN)/trainyard-dev stack status

# `make test` measures coverage of include/trainyard and fails under pyproject.toml's
# [tool.coverage.report] fail_under; test-unit covers less, so it does not measure.
test: $(VENV)/.dev browser  ## lint, then every test (unit, DAG integrity, end to end on real services, browser) with coverage
	$(BIN)/ruff check dags plugins include tools tests benchmarks
	$(BIN)/pytest --cov

# The browser test drives Debian's Chromium through Playwright (never `playwright install`).
browser:  ## install Debian's Chromium for the browser test when missing (apt-get, as root)
	@if [ -x "$${TRAINYARD_CHROMIUM:-/usr/bin/chromium}" ]; then \
		echo "browser: $${TRAINYARD_CHROMIUM:-/usr/bin/chromium}"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	else \
		echo "browser: no Chromium and cannot apt-get it (not root): the browser test will skip (fail under CI=true)"; \
	fi

test-unit: $(VENV)/.dev  ## unit and DAG tests only
	$(BIN)/pytest tests/unit tests/dags

lint: $(VENV)/.dev  ## ruff, including Airflow's AIR rules
	$(BIN)/ruff check dags plugins include tools tests benchmarks
	$(BIN)/ruff format --check dags plugins include tools tests benchmarks

hooks: $(VENV)/.dev  ## install the git pre-commit hooks (ruff check, ruff format; .pre-commit-config.yaml)
	$(BIN)/pre-commit install

bench: $(VENV)/.dev  ## run the benchmarks (figures go to benchmarks/results/)
	$(BIN)/python benchmarks/parse_time.py
	$(BIN)/python benchmarks/training_wall_time.py
	$(BIN)/python benchmarks/drift_check.py
	$(BIN)/python benchmarks/drift_to_retrain_latency.py
	$(BIN)/python benchmarks/fault_time_to_fail.py
	$(BIN)/python benchmarks/fault_recovery.py
	$(BIN)/python benchmarks/serving_latency.py

bench-serving: $(VENV)/.dev  ## model server vs mlflow models serve (p50/p95/p99, CPU); alias move -> served
	$(BIN)/python benchmarks/serving_latency.py

lock: | $(UV)  ## recompile the locks after editing requirements*.txt
	$(UV) pip compile requirements.txt -o requirements.lock --generate-hashes --python-version 3.11
	$(UV) pip compile requirements-dev.txt -o requirements-dev.lock --generate-hashes --python-version 3.11

clean: down  ## stop the stack and delete its state (.stack/)
	rm -rf .stack

# ---- production shape (docker-compose.yaml's services without Docker; see docs/deployment.md) ----
.PHONY: prod-local prod-local-status prod-local-down bench-prod

prod-local: $(VENV)/.runtime  ## production shape: Celery workers, Postgres, Redis, MLflow auth; trains once
	$(BIN)/trainyard-dev prod demo

prod-local-status: $(VENV)/.runtime  ## which services of the production shape are running
	$(BIN)/trainyard-dev prod status

prod-local-down:  ## stop the production shape and drop its databases and Redis index
	@if [ -x $(BIN)/trainyard-dev ]; then $(BIN)/trainyard-dev prod down; else echo "nothing to stop"; fi

bench-prod: $(VENV)/.dev  ## training DAG: Celery+Postgres vs standalone; 2 pipelines on 2 workers
	$(BIN)/python benchmarks/production_shape.py
