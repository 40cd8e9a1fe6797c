# Two commands do everything from a fresh clone (see README.md):
#   make demo   the main job on the embedded default (synthetic Cityscapes + tiny model)
#   make test   the test suite (all of it; `make test-fast` leaves out the tests marked slow)
#   make lint   style: ruff (ruff.toml) and isort (setup.cfg); .ci/run runs it before the tests
#   make mutation   mutation testing (mutmut) of the statistics' and fast path's modules listed
#                   in setup.cfg [mutmut]; writes docs/mutation.md (hours; not in make test)
#   make aug-shift-demo   AugShift vs plain and BlurPool training on the plain demo config
#                         (the former embedded default; about 50 min)
#   make demo-seeds   the demo over SEEDS training seeds (default 5), pooled tests and claims
#                     (JOBS=2: two models train at once, one thread each)
#   make demo-profile   the depth profile of the demo model (docs/tables/demo_profile.md)
#   make tables   every measured table in README.md and docs/ (hours; each part resumes and
#                 runs alone: tables-demo, tables-seeds, tables-study, tables-placebo,
#                 tables-profile, tables-probes, tables-aug-shift, tables-speed,
#                 tables-readout, tables-full-resolution), then copies them in. DRY_RUN=1
#                 lists the runs a target would do and runs nothing.
#   make tables-readout   the position read-out of the demo model per layer and padding
#                         (docs/tables/demo_readout.md, included in docs/position_readout.md)
#   make tables-full-resolution   the attack at 1024x2048 on zoo architectures, phase by
#                         phase, and the paper's experiment projected (docs/cost_model.md;
#                         hours on 2 CPU cores; each architecture x image count resumes)
# The runs and tables are one declared plan in Python: tools/tables/pipeline.py (--list).
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= data/synthetic_cityscapes_side_free
WORK ?= work_dirs/demo
PIPELINE = $(PY) tools/tables/pipeline.py $(if $(filter 1,$(DRY_RUN)),--dry-run)

TABLE_PARTS := tables-demo tables-seeds tables-study tables-placebo tables-profile \
	tables-probes tables-aug-shift tables-speed tables-readout tables-full-resolution
RUNS_AND_TABLES := demo demo-seeds demo-profile aug-shift-demo tables $(TABLE_PARTS)
.PHONY: setup test test-fast lint mutation clean $(RUNS_AND_TABLES)
setup:
	@bash tools/misc/setup_env.sh

# Each run or table is a part of the plan (tools/tables/pipeline.py); `make tables` runs
# every table part in order, then copies the tables into README.md and docs/*.md.
$(RUNS_AND_TABLES): setup
	@$(PIPELINE) $@

test: setup
	$(PY) -m pytest -q tests

# Quick iteration: the tests that spawn a process or take over 3 s of CPU are marked slow
# (README, "Tests"); the rest run on two workers (pytest-xdist), a test file per worker.
TEST_JOBS ?= 2
test-fast: setup
	$(PY) -m pytest -q -m "not slow" -n $(TEST_JOBS) --dist loadfile tests

# Mutation testing: every mutant of the listed modules that no fast test notices is in
# docs/mutation.md, explained (tools/misc/mutation_equivalents.txt) or not. JOBS=2 for two
# workers.
mutation: setup
	@PYTHON=$(PY) bash tools/misc/run_mutation.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/isort --check-only --diff posattack tools tests

# Every work dir the runs write (make tables' too) and the data they generate; docs/tables
# stay (they are the measured record).
clean:
	rm -rf $(WORK) work_dirs/aug_shift work_dirs/study work_dirs/tables work_dirs/probe_tables \
		$(DATA) mutants mutants.tmp mutants.log
