#!/usr/bin/env bash
# The embedded default over several training seeds, pooled: the demo model trained with
# seeds 0..SEEDS-1 (same data, config and iterations), each attacked as `make demo` does,
# then the across-model tests and the paper's two claims (tools/attack.py with several
# checkpoints). Writes $WORK/pooled/{summary.json,report.md} and the table the README
# quotes, docs/tables/demo_pooled.md, stamped with date, machine and time taken.
# Steps whose outputs exist are skipped (each attack resumes), so a rerun is cheap.
#   SEEDS=3 make demo-seeds   fewer models (default 5)
# The seed-robustness study (tools/run_study.sh) calls this script once per setting and data
# seed through these variables (defaults: the embedded default on data seed 0):
#   CONFIG      the model config
#   DATA_SEED   seed of the synthetic data (data in data/synthetic_cityscapes_side_free for 0)
#   GEN_OPTS    options of tools/dataset_converters/make_synthetic_cityscapes.py (default --side-free)
#   NUM_VAL     validation images (default 60)
#   TRAIN_OPTS  extra --cfg-options for training only
#   TRAIN_WORK  where the models are trained (default $WORK): a setting that changes only
#               the validation images reuses the models of the setting that trained them
#   TABLE       the table to write; README=0 leaves README.md alone
#   JOBS        models trained side by side (default 1; each still on one thread): JOBS=2
#               on two free cores trains 5 models in 3 rounds instead of 5
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${POSATTACK_VENV:-.venv}/bin/python"
# One torch thread unless OMP_NUM_THREADS says otherwise (why: tools/run_demo.sh).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
DATA_SEED="${DATA_SEED:-0}"
NUM_VAL="${NUM_VAL:-60}"
GEN_OPTS="${GEN_OPTS---side-free}"   # set but empty: the plain scenes
TRAIN_OPTS="${TRAIN_OPTS:-}"
DATA="${DATA:-data/synthetic_cityscapes_side_free}"
SEEDS="${SEEDS:-5}"
JOBS="${JOBS:-1}"
source tools/lib/batches.sh
check_jobs
WORK="${WORK:-work_dirs/demo/seeds}"
TRAIN_WORK="${TRAIN_WORK:-$WORK}"
TABLE="${TABLE:-docs/tables/demo_pooled.md}"
README="${README:-1}"
COMMAND="${COMMAND:-SEEDS=$SEEDS make demo-seeds}"
CONFIG="${CONFIG:-configs/demo/deeplabv3_r18-tiny_flip_side-free_synthetic-cityscapes.py}"
DATA_OPTS="train_dataloader.dataset.data_root=$DATA val_dataloader.dataset.data_root=$DATA test_dataloader.dataset.data_root=$DATA"
start=$(date +%s)

if [ ! -f "$DATA/.complete" ]; then
  "$PY" tools/dataset_converters/make_synthetic_cityscapes.py "$DATA" --num-train 300 --num-val "$NUM_VAL" \
    --size 128 256 --seed "$DATA_SEED" $GEN_OPTS
  touch "$DATA/.complete"
fi
train_seed() {  # train_seed SEED: one model, on one thread when OMP_NUM_THREADS is 1
  "$PY" tools/train.py "$CONFIG" --work-dir "$TRAIN_WORK/seed$1/train" \
    --cfg-options $DATA_OPTS randomness.seed=$1 $TRAIN_OPTS
}
pending=()
for seed in $(seq 0 $((SEEDS - 1))); do
  [ -f "$TRAIN_WORK/seed$seed/train/last_checkpoint" ] || pending+=("$seed")
done
run_batches "training seed" "$TRAIN_WORK/seed%s/train.out" train_seed ${pending[@]+"${pending[@]}"}
CKPTS=()
NAMES=()
for seed in $(seq 0 $((SEEDS - 1))); do
  CKPTS+=("$(cat "$TRAIN_WORK/seed$seed/train/last_checkpoint")")
  NAMES+=("seed$seed")
done
"$PY" tools/attack.py "$CONFIG" "${CKPTS[@]}" --model-names "${NAMES[@]}" \
  --work-dir "$WORK/pooled" --resume --no-overlays --cfg-options $DATA_OPTS
"$PY" tools/tables/pooled_table.py "$WORK/pooled/summary.json" --out "$TABLE" \
  --command "$COMMAND" --seconds $(( $(date +%s) - start ))
echo "[demo-seeds] pooled report: $WORK/pooled/report.md; table: $TABLE"
if [ "$README" = 1 ]; then
  "$PY" tools/tables/include_tables.py README.md
fi
