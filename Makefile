# Two commands do everything from a fresh clone (see README.md):
#   make demo   the main job on the embedded default (synthetic Cityscapes + tiny model)
#   make test   the test suite (all of it; `make test-fast` leaves out the tests marked slow)
#   make lint   style: ruff (ruff.toml) and isort (setup.cfg); .ci/run runs it before the tests
#   make aug-shift-demo   AugShift vs plain training on the embedded default (about 45 min)
#   make demo-seeds   the demo over SEEDS training seeds (default 5), pooled tests and claims
#   make demo-profile   the depth profile of the demo model (docs/tables/demo_profile.md)
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= data/synthetic_cityscapes
WORK ?= work_dirs/demo

.PHONY: setup demo demo-seeds demo-profile test test-fast lint aug-shift-demo clean
setup:
	@bash tools/setup_env.sh

demo: setup
	@bash tools/run_demo.sh

demo-seeds: setup
	@bash tools/run_demo_seeds.sh

demo-profile: setup
	@bash tools/run_demo_profile.sh

aug-shift-demo: setup
	@bash tools/run_aug_shift_demo.sh

test: setup
	$(PY) -m pytest -q tests

# Quick iteration: the tests that train a model or spawn processes are marked slow.
test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/isort --check-only --diff posattack tools tests

clean:
	rm -rf $(WORK) work_dirs/aug_shift $(DATA)
