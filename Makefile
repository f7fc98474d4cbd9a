# The two commands of the quick start: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= examples/sample
OUT ?= runs/demo

.PHONY: install demo test audit clean
.DEFAULT_GOAL := demo

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0  # first, so no other package pulls a different build
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed

audit: install
	$(PY) -m octcore.audit $(DATA)

demo: install
	$(PY) -m octcore.audit $(DATA)
	$(PY) -m octcore.split $(DATA) --out $(OUT)/split.json
	$(PY) -m baselines.train --data $(DATA) --out $(OUT)/hog-lbp-svm --cache-dir cache

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs
