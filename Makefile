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
#                 tables-readout), then copies them in
#   make tables-readout   the position read-out of the demo model per layer and padding
#                         (docs/tables/demo_readout.md, included in docs/position_readout.md)
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= data/synthetic_cityscapes_side_free
WORK ?= work_dirs/demo

TABLE_PARTS := tables-demo tables-seeds tables-study tables-placebo tables-profile \
	tables-probes tables-aug-shift tables-speed tables-readout tables-full-resolution
.PHONY: setup demo demo-seeds demo-profile test test-fast lint mutation aug-shift-demo clean \
	tables $(TABLE_PARTS)
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

# Every measured table: each part writes its files under docs/tables/ (stamped with date,
# machine and command); README.md and docs/*.md include them verbatim.
tables: $(TABLE_PARTS)
	$(PY) tools/include_tables.py README.md docs/*.md

tables-demo: setup
	@bash tools/run_demo_table.sh

tables-seeds: demo-seeds

tables-study: setup
	@bash tools/run_study.sh

tables-profile: demo-profile

tables-placebo: setup
	@bash tools/run_placebo_table.sh

tables-probes: setup
	@bash tools/run_probe_tables.sh

tables-aug-shift: setup
	@bash tools/run_aug_shift_tables.sh

# the demo model of make demo-seeds (seed 0), trained first if missing
tables-readout: setup
	@test -f work_dirs/demo/seeds/seed0/train/iter_600.pth || SEEDS=1 bash tools/run_demo_seeds.sh
	$(PY) tools/readout_table.py
	$(PY) tools/include_tables.py docs/position_readout.md

tables-speed: setup tables-demo
	@bash tools/run_speed_tables.sh

# The attack at 1024x2048 on zoo architectures, phase by phase (hours on 2 CPU cores; each
# architecture x image count is kept in work_dirs/tables/full_resolution and resumes), then
# the paper's experiment projected from it (docs/cost_model.md includes both).
tables-full-resolution: setup
	OMP_NUM_THREADS=1 $(PY) tools/command_table.py --out docs/tables/speed_full_resolution.md \
		--title "The attack at 1024x2048, phase by phase" --from "1024x2048" -- \
		$(PY) tools/benchmark_full_resolution.py
	OMP_NUM_THREADS=1 $(PY) tools/command_table.py --out docs/tables/cost_projection.md \
		--title "The paper's experiment, projected" --from "The paper" -- \
		$(PY) tools/cost_projection.py

test: setup
	$(PY) -m pytest -q tests

# Quick iteration: the tests that spawn a process or take over 3 s of CPU are marked slow
# (README, "Tests"); the rest run on two workers (pytest-xdist), a test file per worker.
TEST_JOBS ?= 2
test-fast: setup
	$(PY) -m pytest -q -m "not slow" -n $(TEST_JOBS) --dist loadfile tests

# Mutation testing: every mutant of the listed modules that no fast test notices is in
# docs/mutation.md, explained (tools/mutation_equivalents.txt) or not. JOBS=2 for two workers.
mutation: setup
	@PYTHON=$(PY) bash tools/run_mutation.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/isort --check-only --diff posattack tools tests

clean:
	rm -rf $(WORK) work_dirs/aug_shift $(DATA) mutants mutants.tmp mutants.log
