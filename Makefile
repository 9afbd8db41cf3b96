# attnlens developer targets. `make demo`, `make test` and `make docs` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
# The project's offline folder beside the checkout (or SHARED=DIR); nothing else is looked for.
SHARED ?= $(abspath $(ROOT)/../shared)
# Seconds of training when `make demo` has to fine-tune the default model first (batch 16 and learning rate
# 1e-4 learn more per second than the 2-epoch defaults: 0.79 dev accuracy after 60 s on 2 CPU threads).
DEMO_BUDGET ?= 300
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

# The SST-2 study on the default model (SST-2 itself ships with attnlens). The model: $ATTNLENS_MODEL,
# else $(SHARED)/models/minilm-sst2, else what `attnlens sst2` resolves (the thesis's hub model, the
# cached fine-tuned default); when none resolves, `attnlens finetune` makes the default first.
demo: $(STAMP)
	@if [ -z "$$ATTNLENS_MODEL" ] && [ -d "$(SHARED)/models/minilm-sst2" ]; then export ATTNLENS_MODEL="$(SHARED)/models/minilm-sst2"; fi; \
	if ! $(BIN)/python -m attnlens.models.defaults --quiet; then \
		echo "make demo: no SST-2 classifier yet; fine-tuning the default for $(DEMO_BUDGET) s of training (DEMO_BUDGET=...), then the study" >&2; \
		$(BIN)/attnlens --threads $(THREADS) finetune --time-budget $(DEMO_BUDGET) --batch-size 16 --learning-rate 1e-4 || exit $$?; \
	fi; \
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
