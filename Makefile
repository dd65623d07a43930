# Two commands on a fresh machine (Python 3.11): `make train` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: setup train demo test test-all bench clean

setup: $(VENV)/.installed

# constraints.txt pins torch's CPU build for machines without a GPU (see README).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# The main job: a short self-play run (hydra; extra overrides via ARGS="key=value ...").
train: setup
	WANDB_ERROR_REPORTING=false $(BIN)/python -m selfplay.train $(ARGS)

# Random actions in a holdout task: a video and a summary under runs/.
demo: setup
	$(BIN)/python -m tabletop_env.demo $(ARGS)

# The tests also cover the optional Ray backend, so they install the ray extra.
$(VENV)/.installed-ray: $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,ray]"
	touch $@

test: setup $(VENV)/.installed-ray
	$(BIN)/python -m pytest -q $(ARGS)

test-all: setup $(VENV)/.installed-ray
	$(BIN)/python -m pytest -q -m "slow or not slow" $(ARGS)

bench: setup
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,bench]"
	$(BIN)/python benchmarks/env_throughput.py $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info
