# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -c constraints.txt
STAMP := $(VENV)/.installed
MAX_JOBS ?= 2

export MLFLOW_DISABLE_TELEMETRY := true
export PYTHONUNBUFFERED := 1

.PHONY: install services demo test test-slow bench lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(PIP) -q torch==2.13.0
	@# mmcv's compiled ops (Voxelization, rotated NMS) build against the installed torch, once: pip caches
	@# the wheel in ~/.cache/pip, so only the first set-up on a machine pays the ~15-35 min compile.
	$(PIP) -q "setuptools<81" wheel mmengine
	MMCV_WITH_OPS=1 MAX_JOBS=$(MAX_JOBS) $(PIP) mmcv==2.1.0 --no-build-isolation
	$(PIP) -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# PostgreSQL for the team tracking-server tests (Debian's package, installed once when missing).
services:
	@scripts/install-services.sh

demo: $(STAMP)
	$(BIN)/suite run fraud
	$(BIN)/suite run medical
	$(BIN)/suite run driving
	$(BIN)/suite compare

test: $(STAMP) services
	$(BIN)/pytest

# The long variants `make test` leaves out (marked `slow`): fraud on Spark over a whole file, a Spark
# scoring job killed and resumed, medical and driving killed inside a checkpoint write, medical scored
# under spark-submit.
test-slow: $(STAMP) services
	$(BIN)/pytest -m slow

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

lint: $(STAMP)
	$(BIN)/ruff check apps common pipelines tests benchmarks

clean:
	rm -rf $(VENV) data mlflow/mlflow.db mlflow/artifacts
