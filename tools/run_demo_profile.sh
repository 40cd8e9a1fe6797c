#!/usr/bin/env bash
# The depth profile of the demo model (make demo-seeds' seed 0), and the table the README
# links: docs/tables/demo_profile.md with its plots, stamped with date, machine and time.
#   make demo-profile            (runs make demo-seeds' seed 0 training first if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${POSATTACK_VENV:-.venv}/bin/python"
DATA="${DATA:-data/synthetic_cityscapes_side_free}"
WORK="${WORK:-work_dirs/demo/profile}"
CONFIG=configs/demo/deeplabv3_r18-tiny_flip_side-free_synthetic-cityscapes.py
CKPT_DIR=work_dirs/demo/seeds/seed0/train
if [ ! -f "$CKPT_DIR/last_checkpoint" ]; then
  SEEDS=1 bash tools/run_demo_seeds.sh
fi
CKPT=$(realpath --relative-to=. "$(cat "$CKPT_DIR/last_checkpoint")")
COMMAND="python tools/depth_profile.py $CONFIG $CKPT --work-dir $WORK --cfg-options test_dataloader.dataset.data_root=$DATA"
start=$(date +%s)
"$PY" tools/depth_profile.py "$CONFIG" "$CKPT" --work-dir "$WORK" --resume \
  --cfg-options test_dataloader.dataset.data_root="$DATA"
"$PY" tools/tables/profile_table.py "$WORK/profile.json" --out docs/tables/demo_profile.md \
  --command "$COMMAND" --seconds $(( $(date +%s) - start ))
echo "[demo-profile] table: docs/tables/demo_profile.md"
