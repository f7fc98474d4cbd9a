# The two commands of the quick start: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= examples/sample
OUT ?= runs/demo
STUDY ?= runs/compare
# The ViT's base checkpoint: a Hub id or a local folder (e.g. BASE=path/to/dinov2-small).
BASE ?= facebook/dinov2-small
# PyTorch's CPU build comes from here on a machine without an NVIDIA GPU, when the index answers.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# The trainers' defaults are the recipe the docs report; only the loader's processes are set here (2 cores).
VIT_ARGS ?= --workers 1

.PHONY: install demo test lint audit compare clean
.DEFAULT_GOAL := demo

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# torch first, so no other package pulls a different build. Without an NVIDIA GPU, PyPI's Linux build
	@# (CUDA, several GB) is of no use: take the CPU build where its index answers, else the default index.
	@if ! command -v nvidia-smi >/dev/null 2>&1 && $(PY) -c "import urllib.request as u; \
		u.urlopen('$(TORCH_CPU_INDEX)/', timeout=10)" >/dev/null 2>&1; then \
		echo "No NVIDIA GPU: PyTorch's CPU build from $(TORCH_CPU_INDEX)"; \
		$(PY) -m pip install --quiet torch==2.13.0 --index-url $(TORCH_CPU_INDEX); \
	else \
		$(PY) -m pip install --quiet torch==2.13.0; \
	fi
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed

audit: install
	$(PY) -m octcore.audit $(DATA)

# Audit and split the bundled sample, train the three classical models and (when BASE can be loaded) the ViT,
# then serve them in the Space on http://127.0.0.1:7860 (GRADIO_SERVER_PORT to change it; Ctrl-C stops it).
demo: install
	$(PY) -m octcore.audit $(DATA)
	$(PY) -m octcore.split $(DATA) --out $(OUT)/split.json
	for f in hog+lbp hog lbp; do $(PY) -m baselines.train --data $(DATA) --split-file $(OUT)/split.json --features $$f \
		--out $(OUT)/$$(echo $$f | tr + -)-svm --cache-dir cache || exit 1; done
	@if $(PY) -m train --check-base --base-model $(BASE); then \
		$(PY) -m train --data $(DATA) --split-file $(OUT)/split.json --base-model $(BASE) --out $(OUT)/vit $(VIT_ARGS) || exit 1; \
		$(PY) -m train.export_onnx --model $(OUT)/vit --data $(DATA) || true; \
	else \
		echo "No base checkpoint could be loaded from BASE=$(BASE), so no ViT is trained: the Space starts with the"; \
		echo "classical models alone. For both kinds, give a local copy: make demo BASE=path/to/dinov2-small"; \
	fi
	@OCT_VIT_MODEL=$(OUT)/vit OCT_BASELINE_MODEL=$(OUT)/hog-lbp-svm,$(OUT)/hog-svm,$(OUT)/lbp-svm $(PY) space/app.py

# The whole study on one dataset: one patient-disjoint split (split.json), which every trainer and the
# comparison read; three classical models and the ViT trained on its train part, all compared on its test part.
compare: install
	$(PY) -m octcore.split $(DATA) --out $(STUDY)/split.json
	for f in hog lbp hog+lbp; do $(PY) -m baselines.train --data $(DATA) --split-file $(STUDY)/split.json --features $$f \
		--out $(STUDY)/$$(echo $$f | tr + -)-svm --cache-dir cache || exit 1; done
	$(PY) -m train --data $(DATA) --split-file $(STUDY)/split.json --base-model $(BASE) --out $(STUDY)/vit $(VIT_ARGS)
	$(PY) -m train.export_onnx --model $(STUDY)/vit --data $(DATA)
	$(PY) -m compare --data $(DATA) --split-file $(STUDY)/split.json --out $(STUDY)/report \
		--model $(STUDY)/hog-svm --model $(STUDY)/lbp-svm --model $(STUDY)/hog-lbp-svm --model $(STUDY)/vit

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) runs
