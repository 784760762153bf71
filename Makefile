# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -c constraints.txt
STAMP := $(VENV)/.installed

export MLFLOW_DISABLE_TELEMETRY := true
export PYTHONUNBUFFERED := 1

.PHONY: install demo test bench lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(PIP) -q torch==2.13.0
	$(PIP) -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/suite run fraud
	$(BIN)/suite run medical
	$(BIN)/suite compare

test: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

lint: $(STAMP)
	$(BIN)/ruff check apps common pipelines tests benchmarks

clean:
	rm -rf $(VENV) data mlflow/mlflow.db mlflow/artifacts
