# `make demo` and `make test` each do all set-up on a fresh machine (a venv in .venv), then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

# torch==2.13.0 first: on the project machines it is a local CPU wheel, and pinning it keeps pip from
# resolving torch to a multi-GB CUDA build. matbench 0.6 hard-pins old matminer/scikit-learn, so it goes
# in with --no-deps next to the current ones (its runtime needs are in pyproject's dependencies).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q --no-deps "matbench==0.6"
	touch $(STAMP)

demo: install
	$(BIN)/hybridmat demo

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check hybridmat tests

bench: install
	$(BIN)/hybridmat bench featurize

clean:
	rm -rf $(VENV) runs
