#!/usr/bin/env bash
# The main job on the embedded default: synthetic Cityscapes-format data (side-free scenes:
# no class depends on the side of the street), a tiny DeepLabv3 trained on the spot with
# random horizontal flips as mmseg's Cityscapes configs train, then the position attack. Each step is skipped when its output is
# already there, so a second run takes seconds (the attack resumes and finds nothing left).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${POSATTACK_VENV:-.venv}/bin/python"
# One torch thread unless OMP_NUM_THREADS says otherwise: on a CPU the trained weights depend
# on how many threads summed them, so this is what makes `make demo` and seed 0 of
# `make demo-seeds` one model (bit-identical weights on one machine). It makes training slower on a free machine (make tables-demo times the demo).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
DATA="${DATA:-data/synthetic_cityscapes_side_free}"
WORK="${WORK:-work_dirs/demo}"
CONFIG=configs/demo/deeplabv3_r18-tiny_flip_side-free_synthetic-cityscapes.py
DATA_OPTS="train_dataloader.dataset.data_root=$DATA val_dataloader.dataset.data_root=$DATA test_dataloader.dataset.data_root=$DATA"

if [ ! -f "$DATA/.complete" ]; then
  "$PY" tools/dataset_converters/make_synthetic_cityscapes.py "$DATA" --num-train 300 --num-val 60 --size 128 256 --seed 0 --side-free
  touch "$DATA/.complete"
fi
if [ ! -f "$WORK/train/last_checkpoint" ]; then
  "$PY" tools/train.py "$CONFIG" --work-dir "$WORK/train" --cfg-options $DATA_OPTS
fi
CKPT=$(cat "$WORK/train/last_checkpoint")
"$PY" tools/attack.py "$CONFIG" "$CKPT" --work-dir "$WORK/attack" --resume \
  --show-dir "$WORK/attack/overlays" --cfg-options $DATA_OPTS
echo "[demo] report: $WORK/attack/report.md"
