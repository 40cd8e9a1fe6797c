#!/usr/bin/env bash
# The calibration of the verdict tests, measured: docs/tables/placebo_demo.md.
# The demo model (make demo-seeds' seed 0) and, when make tables-study has trained it, seed 0
# of the default on data seed 1 (other scenes: a model and data not in the repository's
# tables) are attacked with 120 random draws at the primary count (5%, N=6 of 128), every
# draw then tested as if it were the targeted set (tools/tables/placebo_table.py): the rank tests
# must call at most 5% of these placebos "holds"; the old image-bootstrap test is beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${POSATTACK_VENV:-.venv}/bin/python"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
CONFIG=configs/demo/deeplabv3_r18-tiny_flip_side-free_synthetic-cityscapes.py
DRAWS=120
if [ ! -f work_dirs/demo/seeds/seed0/train/last_checkpoint ]; then
  SEEDS=1 README=0 bash tools/run_demo_seeds.sh
fi
start=$(date +%s)
RUNS=()
for entry in "work_dirs/demo/seeds data/synthetic_cityscapes_side_free demo" \
             "work_dirs/study/flip_side_free/data1 data/synthetic_cityscapes_side_free_d1 data1"; do
  read -r train data name <<< "$entry"
  ckpt_file="$train/seed0/train/last_checkpoint"
  [ -f "$ckpt_file" ] || { echo "[placebo] $ckpt_file missing: $name skipped" >&2; continue; }
  work="work_dirs/tables/placebo/$name"
  opts="train_dataloader.dataset.data_root=$data test_dataloader.dataset.data_root=$data"
  "$PY" tools/attack.py "$CONFIG" "$(cat "$ckpt_file")" --work-dir "$work" --resume \
    --fractions 0.05 --max-draws $DRAWS --exceedances $((DRAWS + 1)) --no-overlays \
    --cfg-options $opts
  RUNS+=("$work")
done
"$PY" tools/tables/placebo_table.py "${RUNS[@]}" --out docs/tables/placebo_demo.md \
  --command "make tables-placebo ($(( $(date +%s) - start )) s for this invocation; finished attacks are kept)"
