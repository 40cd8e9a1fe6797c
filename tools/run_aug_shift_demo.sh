#!/usr/bin/env bash
# AugShift on the embedded default: the demo model trained five ways, same data, iterations
# and seed: plain; on shifted crop pairs without the AugShift loss (the control); with an
# anti-aliased backbone (blurpool: BlurPool before each subsampling, Zhang 2019, the
# defence the paper's Table 2 compares with; plain training); with AugShift at the
# fragment's weights (latent 1, dense 1); with AugShift 100x / 10x stronger.
# Then shift consistency (Cons.8 / Cons.16) and the position attack of each, and one table.
# About 50 minutes on 2 free cores (the pair-trained models take 12 minutes each).
# Steps whose outputs exist are skipped, so a rerun only redoes what is missing.
#   SEED=1 bash tools/run_aug_shift_demo.sh   another training seed (own work dirs)
#   RUNS="latent-only-1 latent-only-10" ...   other runs: the AugShift loss's latent term
#                                              alone (dense_weight=0) at latent weight 1/10/100
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${POSATTACK_VENV:-.venv}/bin/python"
# One torch thread unless OMP_NUM_THREADS says otherwise (why: tools/run_demo.sh).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
DATA="${DATA:-data/synthetic_cityscapes}"
SEED="${SEED:-0}"
WORK="${WORK:-work_dirs/aug_shift/seed$SEED}"
TRIALS="${TRIALS:-3}"
DATA_OPTS="train_dataloader.dataset.data_root=$DATA val_dataloader.dataset.data_root=$DATA test_dataloader.dataset.data_root=$DATA"

if [ ! -f "$DATA/.complete" ]; then
  "$PY" tools/dataset_converters/make_synthetic_cityscapes.py "$DATA" --num-train 300 --num-val 60 --size 128 256 --seed 0
  touch "$DATA/.complete"
fi

NAMES="${RUNS:-plain shift-crops blurpool augshift augshift-strong}"
RUNS=()
for name in $NAMES; do
  weights=""
  case $name in
    plain) config=configs/demo/deeplabv3_r18-tiny_synthetic-cityscapes.py ;;
    shift-crops) config=configs/demo/deeplabv3_r18-tiny_shift-crops_synthetic-cityscapes.py ;;
    blurpool) config=configs/demo/deeplabv3_r18-tiny_blurpool_synthetic-cityscapes.py ;;
    augshift) config=configs/demo/deeplabv3_r18-tiny_augshift_synthetic-cityscapes.py ;;
    augshift-strong) config=configs/demo/deeplabv3_r18-tiny_augshift_synthetic-cityscapes.py
      weights="model.latent_weight=100.0 model.dense_weight=10.0" ;;
    latent-only-*) config=configs/demo/deeplabv3_r18-tiny_augshift_synthetic-cityscapes.py
      weights="model.latent_weight=${name#latent-only-}.0 model.dense_weight=0.0" ;;
    *) echo "error: unknown run '$name'; choose from plain shift-crops blurpool augshift" \
         "augshift-strong latent-only-1 latent-only-10 latent-only-100" >&2; exit 2 ;;
  esac
  dir="$WORK/$name"
  if [ ! -f "$dir/train/last_checkpoint" ]; then
    "$PY" tools/train.py "$config" --work-dir "$dir/train" \
      --cfg-options $DATA_OPTS randomness.seed=$SEED $weights
  fi
  ckpt=$(cat "$dir/train/last_checkpoint")
  if [ ! -f "$dir/consistency/consistency.json" ]; then
    "$PY" tools/consistency.py "$config" "$ckpt" --max-shift 8 16 --trials "$TRIALS" \
      --work-dir "$dir/consistency" --cfg-options $DATA_OPTS
  fi
  "$PY" tools/attack.py "$config" "$ckpt" --work-dir "$dir/attack" --resume --no-overlays \
    --cfg-options $DATA_OPTS
  RUNS+=(--run "$name" "$dir/consistency/consistency.json" "$dir/attack/results.json")
done
"$PY" tools/tables/aug_shift_table.py "${RUNS[@]}" --out "$WORK/table.md"
echo "[aug-shift demo] table: $WORK/table.md"
