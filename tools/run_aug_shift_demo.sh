#!/usr/bin/env bash
# AugShift on the embedded default: the demo model trained five ways, same data, iterations
# and seed: plain; on shifted crop pairs without the AugShift loss (the control); with an
# anti-aliased backbone (blurpool: BlurPool before each subsampling, Zhang 2019, the
# defence the paper's Table 2 compares with; plain training); with AugShift at the
# fragment's weights (latent 1, dense 1); with AugShift 100x / 10x stronger.
# Then shift consistency (Cons.8 / Cons.16) and the position attack of each, and one table.
# About 50 minutes on 2 free cores (the pair-trained models take 12 minutes each).
# Steps whose outputs exist are kept when they record this run (a model: its checkpoint's
# config, seed and data; consistency: the checkpoint's hash and settings; the attack: its own
# fingerprint), so a rerun only redoes what is missing or stale; a model trained another way
# in the same work dir stops it, naming what differs.
#   SEED=1 bash tools/run_aug_shift_demo.sh   another training seed (own work dirs)
#   RUNS="latent-only-1 latent-only-10" ...   other runs: the AugShift loss's latent term
#                                              alone (dense_weight=0) at latent weight 1/10/100
#   KEPT_ONLY=1 ...                            train nothing: measure and table the kept models
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
  "$PY" tools/make_synthetic_cityscapes.py "$DATA" --num-train 300 --num-val 60 --size 128 256 --seed 0
  touch "$DATA/.complete"
fi

MAX_SHIFTS="8 16"
NO_TRAIN=""
[ "${KEPT_ONLY:-0}" = 0 ] || NO_TRAIN="--no-train"

kept_consistency() {  # kept_consistency JSON CHECKPOINT: did JSON measure it, as asked now?
  [ -f "$1" ] && "$PY" - "$1" "$2" "$TRIALS" "$MAX_SHIFTS" <<'EOF'
import json, sys
from posattack.utils.fileio import file_sha256
recorded = json.load(open(sys.argv[1]))
asked = dict(checkpoint_sha256=file_sha256(sys.argv[2]), trials=int(sys.argv[3]),
             max_shifts=[int(s) for s in sys.argv[4].split()], seed=0, regions=['paper'])
sys.exit(0 if all(recorded.get(key) == value for key, value in asked.items()) else 1)
EOF
}

NAMES="${RUNS:-plain shift-crops blurpool augshift augshift-strong}"
RUNS=()
rm -f "$WORK/left_out.txt"  # this script's own list of the runs KEPT_ONLY=1 left out
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
  # A kept model is reused only if its checkpoint records this config, seed and data (and
  # finished); one trained another way stops the script with what differs.
  # KEPT_ONLY=1: no training; a run without a finished model is left out (listed in
  # $WORK/left_out.txt for make tables-aug-shift).
  "$PY" tools/train.py "$config" --work-dir "$dir/train" --keep-finished $NO_TRAIN \
    --cfg-options $DATA_OPTS randomness.seed=$SEED $weights && status=0 || status=$?
  if [ "$status" = 3 ] && [ -n "$NO_TRAIN" ]; then
    mkdir -p "$WORK" && echo "$name" >> "$WORK/left_out.txt"
    echo "[aug-shift demo] $name (seed $SEED): no finished model kept: left out (KEPT_ONLY=1)"
    continue
  elif [ "$status" != 0 ]; then
    exit "$status"
  fi
  ckpt=$(cat "$dir/train/last_checkpoint")
  if kept_consistency "$dir/consistency/consistency.json" "$ckpt"; then
    echo "[aug-shift demo] kept: $dir/consistency (this checkpoint, the same settings)"
  else
    [ ! -f "$dir/consistency/consistency.json" ] || echo "[aug-shift demo]" \
      "$dir/consistency measured another checkpoint or settings: measuring again"
    "$PY" tools/consistency.py "$config" "$ckpt" --max-shift $MAX_SHIFTS --trials "$TRIALS" \
      --work-dir "$dir/consistency" --cfg-options $DATA_OPTS
  fi
  # --resume keeps finished settings only of the same experiment (attack fingerprint); it
  # refuses results of another checkpoint or test protocol (exit 2, saying why): those are
  # attacked again from scratch, not reused.
  "$PY" tools/attack.py "$config" "$ckpt" --work-dir "$dir/attack" --resume --no-overlays \
    --cfg-options $DATA_OPTS && status=0 || status=$?
  if [ "$status" = 2 ]; then
    echo "[aug-shift demo] $dir/attack: kept results refused (above): attacking again"
    "$PY" tools/attack.py "$config" "$ckpt" --work-dir "$dir/attack" --no-overlays \
      --cfg-options $DATA_OPTS
  elif [ "$status" != 0 ]; then
    exit "$status"
  fi
  RUNS+=(--run "$name" "$dir/consistency/consistency.json" "$dir/attack/results.json")
done
[ ${#RUNS[@]} -gt 0 ] || { echo "[aug-shift demo] no run kept (KEPT_ONLY=1): no table"; exit 0; }
"$PY" tools/aug_shift_table.py "${RUNS[@]}" --out "$WORK/table.md"
echo "[aug-shift demo] table: $WORK/table.md"
