#!/usr/bin/env bash
# make mutation: mutation testing of the modules whose bugs would change a published number.
#
# mutmut (pinned in requirements-dev.txt) mutates the files listed under `only_mutate` in
# setup.cfg's [mutmut] section, one small change at a time (a `<` for a `<=`, a 1 for a 0, a
# dropped argument...), and runs the fast tests under `pytest_add_cli_args_test_selection`
# that reach the changed function. A mutant no test notices "survives". The run writes
# docs/mutation.md: the score per module and every survivor with its diff and either the
# reason it is equivalent (tools/misc/mutation_equivalents.txt) or "not explained".
#
#   make mutation                 # from nothing: 3,709 mutants, several hours on 2 cores
#   JOBS=2 make mutation          # two workers
#   RESUME=1 make mutation        # keep mutants/ and check only what was not checked yet
#   RECHECK=1 make mutation       # keep mutants/ and check again every mutant left
#                                 # undetected (after adding tests that may kill them)
#   ONLY='posattack.report.*' make mutation   # only the mutants whose names match
#   RESUME=1 ONLY='posattack.channels.* posattack.attack.linear_shortcut*' make mutation
#                                 # several patterns, space-separated, earlier results kept
#
# mutmut first runs the selected tests once to learn which tests reach which function, then
# runs, for each mutant, only those tests. Not part of `make test`. To add a module: its path
# to only_mutate, its fast tests to pytest_add_cli_args_test_selection (both in setup.cfg);
# changing the test selection makes mutmut check every mutant again.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv/bin/python}"
JOBS="${JOBS:-1}"
start=$(date +%s)
if [ "${RESUME:-0}" != "1" ] && [ "${RECHECK:-0}" != "1" ]; then
  rm -rf mutants
fi
names=()
if [ "${RECHECK:-0}" = "1" ]; then
  mapfile -t names < <("$PY" tools/misc/mutation_report.py --list-undetected)
  if [ "${#names[@]}" = 0 ]; then
    echo "[mutation] nothing to check again: no mutant left undetected" >&2
    exit 0
  fi
elif [ -n "${ONLY:-}" ]; then
  read -r -a names <<< "$ONLY"
fi
# A private temporary folder: pytest prunes old /tmp/pytest-of-$USER/pytest-N folders, and
# another pytest session of the same user (a second worktree, CI) would prune this run's.
export TMPDIR="$PWD/mutants.tmp"
rm -rf "$TMPDIR" && mkdir -p "$TMPDIR"
# One thread per worker: the tests' tensors are tiny (see tests/conftest.py).
status=0
OMP_NUM_THREADS=1 "$PY" -m mutmut run --max-children "$JOBS" "${names[@]}" > mutants.log 2>&1 \
  || status=$?
minutes=$(( ($(date +%s) - start + 59) / 60 ))
if [ ! -d mutants ]; then
  tail -20 mutants.log >&2
  echo "[mutation] mutmut made no mutants/ folder (exit $status); see mutants.log" >&2
  exit 1
fi
mode='from nothing'
if [ "${RECHECK:-0}" = "1" ]; then mode='recheck: the undetected mutants again, earlier results kept'
elif [ "${RESUME:-0}" = "1" ]; then mode='resumed: earlier results kept'; fi
"$PY" tools/misc/mutation_report.py --minutes "$minutes" --jobs "$JOBS" --mode "$mode" \
  --out docs/mutation.md
rm -rf "$TMPDIR"
