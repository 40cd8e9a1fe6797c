#!/usr/bin/env bash
# `make demo` measured: the demo run from nothing (its own data, training and attack in
# work_dirs/tables/demo), timed, and its report's headline kept as docs/tables/demo_run.md
# with date, machine and wall time. Skipped when that run is complete (delete
# work_dirs/tables/demo to measure again). Torch uses the threads it chooses, as in make demo.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${POSATTACK_VENV:-.venv}/bin/python"
WORK=work_dirs/tables/demo
if [ ! -f "$WORK/attack/results.json" ]; then
  rm -rf "$WORK"
  start=$(date +%s)
  DATA="$WORK/data" WORK="$WORK" bash tools/run_demo.sh
  seconds=$(( $(date +%s) - start ))
  "$PY" tools/tables/pooled_table.py "$WORK/attack/results.json" --name "make demo" \
    --out docs/tables/demo_run.md --seconds "$seconds" \
    --command "make demo (data, training and attack from nothing; set-up done)"
fi
