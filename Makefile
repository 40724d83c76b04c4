# Every target sets itself up on a fresh machine: it creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The PyTorch release the project is tested with. From PyPI on Linux x86_64 this is the CUDA build
# (several GB); TORCH_INDEX=https://download.pytorch.org/whl/cpu takes the CPU-only build from
# PyTorch's own wheel index instead. Empty (the default): pip's usual sources.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
STAMP := $(VENV)/.installed
# What torch was asked for, rewritten only when TORCH_SPEC or TORCH_INDEX change: then the torch in
# an existing .venv is removed first (a 2.13.0+cpu build satisfies "torch==2.13.0" from any index).
TORCH_STAMP := $(VENV)/.torch-spec

.PHONY: test quickstart lint format bench clean FORCE

$(TORCH_STAMP): FORCE
	@mkdir -p $(VENV)
	@echo '$(TORCH_SPEC) $(TORCH_INDEX)' | cmp -s - $@ || { \
		if [ -f $@ ] && [ -x $(PY) ]; then $(PY) -m pip uninstall --quiet -y torch; fi; \
		echo '$(TORCH_SPEC) $(TORCH_INDEX)' > $@; }

$(STAMP): pyproject.toml Makefile $(TORCH_STAMP)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)") "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m ruff format --check src tests benchmarks scripts
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n 2 -q

quickstart: $(STAMP)
	$(VENV)/bin/stereodistill quickstart

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m ruff format --check src tests benchmarks scripts
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(PY) -m ruff check --fix src tests benchmarks scripts
	$(PY) -m ruff format src tests benchmarks scripts

bench: $(STAMP)
	$(PY) benchmarks/bench_synthetic.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache src/*.egg-info
