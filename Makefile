# attnlens developer targets. `make demo`, `make test` and `make docs` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= $(firstword $(wildcard $(abspath ../shared) /work/shared) $(abspath ../shared))
STAMP := $(VENV)/.installed-stamp
DOCS_STAMP := $(VENV)/.docs-installed-stamp
THREADS ?= 2

.PHONY: venv demo test docs bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[test,finetune]"
	touch $(STAMP)

venv: $(STAMP)

# The SST-2 study on the default model. Where ../shared exists (offline machines), it points
# ATTNLENS_MODEL / ATTNLENS_DATA at the bundled classifier and data, unless they are already set.
demo: $(STAMP)
	@if [ -z "$$ATTNLENS_MODEL" ] && [ -d "$(SHARED)/models/minilm-sst2" ]; then export ATTNLENS_MODEL="$(SHARED)/models/minilm-sst2"; fi; \
	if [ -z "$$ATTNLENS_DATA" ] && [ -d "$(SHARED)/data/sst2" ]; then export ATTNLENS_DATA="$(SHARED)/data"; fi; \
	$(BIN)/attnlens --threads $(THREADS) sst2 --split dev

test: $(STAMP)
	$(BIN)/python -m pytest

# The docs extra goes on top of the environment `make test` uses (torch pinned first, as there).
$(DOCS_STAMP): $(STAMP) pyproject.toml Makefile
	$(BIN)/python -m pip install --quiet -e ".[test,finetune,docs]"
	touch $(DOCS_STAMP)

# API reference pages built from the docstrings (mkdocs.yml, docs/) into site/; warnings fail the build.
docs: $(DOCS_STAMP)
	$(BIN)/python -m mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sst2_study.py

clean:
	rm -rf $(VENV) runs site .pytest_cache .hypothesis
