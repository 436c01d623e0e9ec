# Two entry points do all set-up on a fresh machine (Python 3.11 + pip):
#   make run   -> creates/updates .venv, installs the project, runs the main pipeline on the default data
#   make quick -> the same pipeline on a small synthetic dataset (conf/quick) in well under a minute
#   make test  -> the same plus dev tools, then lint and the whole test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIPELINE ?= dgsr_otto
export DO_NOT_TRACK := 1
export KEDRO_DISABLE_TELEMETRY := 1

.PHONY: run quick test install install-dev lint format viz mlflow-ui lock clean-data

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files: reinstall only when the locks or pyproject.toml change.
$(VENV)/.installed: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/kedro run --pipelines=$(PIPELINE)

quick: install
	$(BIN)/kedro run --env quick --pipelines=$(PIPELINE)

lint: install-dev
	$(BIN)/ruff check src tests benchmarks notebooks
	$(BIN)/ruff format --check src tests benchmarks notebooks/*.ipynb

test: lint
	$(BIN)/pytest

format: install-dev
	$(BIN)/ruff check --fix src tests benchmarks notebooks
	$(BIN)/ruff format src tests benchmarks notebooks/*.ipynb

viz: install
	$(BIN)/kedro viz run --autoreload

mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db

# Re-lock after changing dependencies in pyproject.toml (fresh venv, then freeze).
lock:
	rm -rf /tmp/gnn_recsys_lock && $(PYTHON) -m venv /tmp/gnn_recsys_lock
	/tmp/gnn_recsys_lock/bin/pip install --quiet -e ".[dev,spark]"
	/tmp/gnn_recsys_lock/bin/pip freeze --exclude-editable | sed 's/+cpu$$//' > /tmp/gnn_recsys_lock.txt
	@echo "Locked into /tmp/gnn_recsys_lock.txt: split dev tools into requirements-dev.txt by hand."

clean-data:
	find data -type f ! -name .gitkeep -delete
