#!/usr/bin/env bash
# The speed figures the README quotes, each benchmark's output kept verbatim in
# docs/tables/speed_*.md with date, machine and command (tools/command_table.py). A part
# whose table exists is skipped; delete the file to measure again. Ratios are measured within
# one run (the paths alternate), so a shared machine slows them alike; absolute times are not
# quoted. The profile benchmark needs the demo model (make tables-demo trains it). Quickest
# parts first; a file that still says "not measured yet" counts as missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${POSATTACK_VENV:-.venv}/bin/python"
DEMO_CKPT="${DEMO_CKPT:-work_dirs/tables/demo/train/last_checkpoint}"
DATA="${DATA:-data/synthetic_cityscapes}"
export OMP_NUM_THREADS=1

part() {  # part FILE TITLE [--from PREFIX] -- COMMAND...
  local out=$1 title=$2 from=()
  shift 2
  if [ "$1" = --from ]; then from=(--from "$2"); shift 2; fi
  shift
  if [ -f "$out" ] && ! grep -q '^<!-- not measured yet' "$out"; then
    echo "[speed] $out exists, skipped" >&2; return
  fi
  "$PY" tools/command_table.py --out "$out" --title "$title" "${from[@]}" -- "$@"
}
part docs/tables/speed_metric.md "RegionIoUMetric against a test pass" --from "images:" -- \
  "$PY" tools/benchmark_metric.py
part docs/tables/speed_fast_path_demo.md "Fast path, demo model (25 settings)" -- \
  "$PY" tools/benchmark_attack.py --model demo --threads 1 --compare-seeds 5 8
if [ -f "$DEMO_CKPT" ]; then
  part docs/tables/speed_profile.md "Depth profile against attack.py once per layer" -- \
    "$PY" tools/benchmark_profile.py configs/demo/deeplabv3_r18-tiny_synthetic-cityscapes.py \
    "$(cat "$DEMO_CKPT")" --rounds 2 --cfg-options test_dataloader.dataset.data_root="$DATA"
else
  echo "[speed] no demo model at $DEMO_CKPT: run make tables-demo first; profile part skipped" >&2
fi
if [ -f work_dirs/demo/seeds/seed0/train/last_checkpoint ]; then
  part docs/tables/speed_default_cost_demo.md "The calibrated default against the old default, demo" -- \
    "$PY" tools/benchmark_default_cost.py \
    configs/demo/deeplabv3_r18-tiny_flip_side-free_synthetic-cityscapes.py \
    "$(cat work_dirs/demo/seeds/seed0/train/last_checkpoint)" --rounds 2 --cfg-options \
    train_dataloader.dataset.data_root=data/synthetic_cityscapes_side_free \
    test_dataloader.dataset.data_root=data/synthetic_cityscapes_side_free
  # the design tried first (h = 10 exceedances), kept for the record of what was measured
  part docs/tables/speed_default_cost_demo_h10.md "The calibrated default with h = 10 against the old default, demo" -- \
    "$PY" tools/benchmark_default_cost.py \
    configs/demo/deeplabv3_r18-tiny_flip_side-free_synthetic-cityscapes.py \
    "$(cat work_dirs/demo/seeds/seed0/train/last_checkpoint)" --rounds 2 --now-options=--exceedances=10 \
    --cfg-options train_dataloader.dataset.data_root=data/synthetic_cityscapes_side_free \
    test_dataloader.dataset.data_root=data/synthetic_cityscapes_side_free
else
  echo "[speed] no demo model: run make demo-seeds first; default-cost part skipped" >&2
fi
R50_DATA=work_dirs/tables/speed_r50_data   # Cityscapes' ratio: as many held-out as scored images
if [ ! -f "$R50_DATA/.complete" ]; then
  "$PY" tools/make_synthetic_cityscapes.py "$R50_DATA" --num-train 4 --num-val 4 --size 256 512
  touch "$R50_DATA/.complete"
fi
part docs/tables/speed_default_cost_r50.md "The calibrated default against the old default, DeepLabv3-R50-D8 at 256x512, random init" -- \
  "$PY" tools/benchmark_default_cost.py configs/paper/deeplabv3_r50-d8_cityscapes-512x1024_posattack.py \
  random --rounds 1 --cfg-options train_dataloader.dataset.data_root=$R50_DATA \
  test_dataloader.dataset.data_root=$R50_DATA "test_dataloader.dataset.pipeline.1.scale=(512,256)" \
  test_dataloader.num_workers=0 test_dataloader.persistent_workers=False
part docs/tables/speed_batched_demo.md "Settings batched through the head, demo model (whole sweep)" -- \
  "$PY" tools/benchmark_attack.py --model demo --images 12 --only-batched --threads 1 --repeat 2
part docs/tables/speed_draws_demo.md "Cost of random draws, demo model" -- \
  "$PY" tools/benchmark_attack.py --model demo --images 8 --compare-seeds 5 7 8 10 20 \
  --only-draws --threads 1 --repeat 2
part docs/tables/speed_fast_path_r50.md "Fast path, DeepLabv3-R50-D8 at 256x512 (25 settings)" -- \
  "$PY" tools/benchmark_attack.py --model r50 --images 2 --threads 1 --compare-seeds 5 8
