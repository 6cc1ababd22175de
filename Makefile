# bertprune: one target per stage of the pipeline. Every target takes EXPERIMENT=<name>, the
# path of an experiment file below experiments/ without .yaml (default: default; the file's own
# path, experiments/<name>.yaml, works too), and skips stages whose outputs are up to date, so
# rerunning a target is cheap.

EXPERIMENT ?= default
override EXPERIMENT := $(patsubst experiments/%,%,$(patsubst %.yaml,%,$(EXPERIMENT)))
CONFIG := experiments/$(EXPERIMENT).yaml
RESULTS ?= results
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# Extra arguments for every stage script a target runs, e.g. ARGS="--set prune.constraint=0.5".
ARGS ?=
# Stages to run again although their outputs are up to date, e.g. FORCE=eval or FORCE="prune eval".
# FORCE=all, like ARGS="--force", forces every stage that a target runs.
FORCE ?=
# Extra arguments for pytest, e.g. PYTEST_ARGS="-k stages".
PYTEST_ARGS ?=
STAGE = --experiment $(CONFIG) --results-dir $(RESULTS) $(if $(filter $@ all,$(FORCE)),--force) $(ARGS)

.PHONY: install lock finetune prune eval mlperf compare sweep expected benchmark all test clean
# Constraints and seeds of `make sweep`.
SWEEP_ARGS ?= --constraints 0.5 0.6 0.7 --seeds 0 1 2

# The virtual environment, rebuilt when the lock file changes.
$(VENV)/.installed: requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r requirements.lock
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed

# Regenerate requirements.lock from requirements.in in a scratch environment.
lock:
	rm -rf .lock-venv && python3 -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -r requirements.in
	.lock-venv/bin/pip freeze --all --exclude-editable | grep -v '^pip==' | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/' > requirements.lock
	rm -rf .lock-venv

finetune: install
	$(PYTHON) scripts/finetune.py $(STAGE)

prune: finetune
	$(PYTHON) scripts/prune.py $(STAGE)

eval: prune
	$(PYTHON) scripts/eval.py $(STAGE)

mlperf: eval
	$(PYTHON) scripts/mlperf.py $(STAGE)

compare: install
	$(PYTHON) scripts/compare.py $(STAGE)

sweep: install
	$(PYTHON) scripts/sweep.py $(STAGE) $(SWEEP_ARGS)

# Regenerate expected_results/paper/*.yaml from the table in the script.
expected: install
	$(PYTHON) scripts/make_expected_results.py

# LoadGen Offline throughput of BERT-base-shaped models, dense vs pruned, fp32 vs int8; rewrites
# docs/BENCHMARKS.md. Takes about 10 minutes on an idle 2-core machine.
SQUAD_DEV ?= ../shared/data/squad/v1.1/dev-v1.1.json
benchmark: install
	$(PYTHON) scripts/benchmark_mlperf.py --squad-dev $(SQUAD_DEV)

all: finetune prune eval mlperf compare

test: install
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

# Refuses an empty name or one with "..", which would delete more than one experiment's results.
clean:
	@case "$(EXPERIMENT)" in ""|*..*|/*) echo "error: EXPERIMENT='$(EXPERIMENT)' is not an experiment name, e.g. default" >&2; exit 2;; esac
	rm -rf $(RESULTS)/$(EXPERIMENT)
