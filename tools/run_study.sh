#!/usr/bin/env bash
# The seed-robustness study of the embedded default (docs/seed_robustness.md): each setting
# trained with 5 training seeds on each of its data seeds, attacked and pooled as `make demo-seeds`
# does (tools/run_demo_seeds.sh), then one table of how many models carry the paper's two
# claims, docs/tables/study.md (tools/tables/study_table.py). Every part resumes: trained models
# and finished attacks are kept, so a rerun only does what is missing.
#   bash tools/run_study.sh                 the study as measured (STUDY_PLAN below)
#   bash tools/run_study.sh long            one setting, both data seeds
#   DATA_SEEDS=0 bash tools/run_study.sh    the plan's settings on one data seed
#   JOBS=2 bash tools/run_study.sh long     two models trained side by side (one per core)
#   DRY_RUN=1 bash tools/run_study.sh       only list the pooled runs it would do
# Settings (every one tried is listed here and in the table, whatever its outcome):
#   flip_side_free   the embedded default: random horizontal flip in training, on side-free
#                    scenes (classes do not depend on the side of the street), as mmseg trains
#                    its Cityscapes models (600 iterations, 60 validation images)
#   plain            the former embedded default: no flip, on scenes where sidewalk/terrain
#                    and building/wall differ only by their side of the street
#   plain_val300     plain's models, attacked on 300 validation images (the first 60 are
#                    plain's: an image depends only on its seed, split and index)
#   long             plain trained 1200 iterations instead of 600
#   long_val300      long's models on 300 validation images
#   wide             plain with the backbone's last stage (the attacked tensor) twice as wide:
#                    256 channels, so N = 13 at the primary 5%
# Models train on one thread each (OMP_NUM_THREADS=1; about 5 min per 600 iterations on a
# free core of this project's machine; JOBS is passed on to tools/run_demo_seeds.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${POSATTACK_VENV:-.venv}/bin/python"
ALL_SETTINGS="flip_side_free plain plain_val300 long long_val300 wide"
# The study as measured with the calibrated rank tests, and so what `make tables-study`
# regenerates: each setting with the data seeds it was run on (plain_val300, long and
# long_val300 were measured only with the earlier, uncalibrated tests and not rerun; see
# docs/seed_robustness.md). Name a setting to run it, on both data seeds unless DATA_SEEDS
# says otherwise.
STUDY_PLAN="flip_side_free:0,1 plain:0,1 wide:0,1"
PLAN=""  # entries SETTING:SEEDS, the data seeds comma-separated
given_seeds=$(echo ${DATA_SEEDS:-} | tr ' ' ,)
if [ $# -gt 0 ]; then
  for setting in "$@"; do PLAN+="$setting:${given_seeds:-0,1} "; done
else
  for entry in $STUDY_PLAN; do PLAN+="${entry%%:*}:${given_seeds:-${entry#*:}} "; done
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
PLAIN_CONFIG=configs/demo/deeplabv3_r18-tiny_synthetic-cityscapes.py
start=$(date +%s)

data_dir() {  # data_dir DATA_SEED SIDE_FREE NUM_VAL
  local dir=data/synthetic_cityscapes
  [ "$2" = 1 ] && dir="${dir}_side_free"
  [ "$1" != 0 ] && dir="${dir}_d$1"
  [ "$3" != 60 ] && dir="${dir}_val$3"
  echo "$dir"
}

work_dir() {  # work_dir SETTING DATA_SEED: the default on data seed 0 is make demo-seeds' run
  if [ "$1" = flip_side_free ] && [ "$2" = 0 ]; then echo work_dirs/demo/seeds
  else echo "work_dirs/study/$1/data$2"; fi
}

run_setting() {  # run_setting SETTING DATA_SEED
  local setting=$1 data_seed=$2 config=$PLAIN_CONFIG side_free=0 num_val=60 train_work=""
  case $setting in
    plain) ;;
    plain_val300) num_val=300; train_work=$(work_dir plain "$data_seed") ;;
    long) config=configs/demo/deeplabv3_r18-tiny-1200it_synthetic-cityscapes.py ;;
    long_val300) config=configs/demo/deeplabv3_r18-tiny-1200it_synthetic-cityscapes.py
      num_val=300; train_work=$(work_dir long "$data_seed") ;;
    wide) config=configs/demo/deeplabv3_r18-tiny-wide_synthetic-cityscapes.py ;;
    flip_side_free) config=configs/demo/deeplabv3_r18-tiny_flip_side-free_synthetic-cityscapes.py
      side_free=1 ;;
    *) echo "error: unknown setting '$setting'; choose from: $ALL_SETTINGS" >&2; exit 2 ;;
  esac
  local work
  work=$(work_dir "$setting" "$data_seed")
  echo "[study] $setting, data seed $data_seed -> $work" >&2
  [ "${DRY_RUN:-0}" = 1 ] && return 0
  CONFIG=$config DATA_SEED=$data_seed NUM_VAL=$num_val \
    GEN_OPTS=$([ "$side_free" = 1 ] && echo --side-free || true) \
    DATA=$(data_dir "$data_seed" "$side_free" "$num_val") WORK=$work \
    TRAIN_WORK=${train_work:-$work} SEEDS=5 README=0 \
    TABLE=docs/tables/study/${setting}_data${data_seed}.md \
    COMMAND="bash tools/run_study.sh $setting (data seed $data_seed)" \
    bash tools/run_demo_seeds.sh
}

for entry in $PLAN; do  # names first, so that a typo fails before hours of training
  case " $ALL_SETTINGS " in *" ${entry%%:*} "*) ;; *)
    echo "error: unknown setting '${entry%%:*}'; choose from: $ALL_SETTINGS" >&2; exit 2 ;; esac
done
for entry in $PLAN; do
  seeds=${entry#*:}
  for data_seed in ${seeds//,/ }; do
    run_setting "${entry%%:*}" "$data_seed"
  done
done
[ "${DRY_RUN:-0}" = 1 ] && exit 0

RUNS=()
for setting in $ALL_SETTINGS; do
  for data_seed in 0 1; do
    summary="$(work_dir "$setting" "$data_seed")/pooled/summary.json"
    [ -f "$summary" ] && RUNS+=(--run "$setting" "$data_seed" "$summary")
  done
done
"$PY" tools/tables/study_table.py "${RUNS[@]}" --out docs/tables/study.md \
  --command "make tables-study" --seconds $(( $(date +%s) - start ))
"$PY" tools/tables/include_tables.py docs/seed_robustness.md
