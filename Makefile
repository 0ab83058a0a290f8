# stepsage: `make demo` runs the whole pipeline locally; `make test` runs every test. Both set up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup demo test test-fast lint format clean

# make/*.mk fragments add their own setup steps (tool environments, browsers) to SETUP_STEPS.
SETUP_STEPS :=
-include make/*.mk

setup: $(STAMP) $(SETUP_STEPS)

# Reinstall only when the dependency list changes; `make setup` twice does nothing the second time.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'setuptools<81' wheel
	$(PY) -m pip install -q -e '.[ml,local,report,dev]'
	@touch $(STAMP)

LAMBDA_DIRS := $(filter-out lambdas/common/,$(wildcard lambdas/*/))
DEMO_DATA := data/digits

# DEMO_SERVE=0 ends the demo after the run instead of serving the inference URL until Ctrl-C.
DEMO_SERVE ?= 1

$(DEMO_DATA).zip:
	$(VENV)/bin/stepsage sample --out $(DEMO_DATA) --zip $(DEMO_DATA).zip

# Digits are chiral: a flipped 2 is not a 2, so the demo turns horizontal flips off.
demo: setup $(DEMO_DATA).zip
	$(VENV)/bin/stepsage local run $(DEMO_DATA).zip --parameter ExtraHyperParameters=hflip=off \
		$(if $(filter 0,$(DEMO_SERVE)),,--serve)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy stepsage training_code inference_code scripts lambdas/common
	@# Every Lambda has its own app.py, so each folder is checked on its own, against the shared layer.
	@for fn in $(LAMBDA_DIRS); do MYPYPATH=lambdas/common $(VENV)/bin/mypy $$fn || exit 1; done

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: setup lint
	$(VENV)/bin/pytest

# The quick tier: no network, no AWS, no subprocess training.
test-fast: $(STAMP)
	$(VENV)/bin/pytest -m unit

clean:
	rm -rf $(VENV) .tools .local-cloud .aws-sam out data .pytest_cache .mypy_cache .ruff_cache
