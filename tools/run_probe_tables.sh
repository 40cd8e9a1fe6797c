#!/usr/bin/env bash
# Table 1 of Islam et al. (ICCV 2021) with tools/probe.py table, and the runs that move it
# towards the authors' protocol; writes docs/tables/probes_table1.md and
# docs/tables/probes_protocol.md (stamped with date, machine, command, time) and refills the
# include blocks of docs/probes.md. Each part has its own work dir and resumes: runs already
# in its results.json with the same settings are skipped, so a rerun is cheap.
#   table1       36 runs: 3 paddings x {GAPNet, PermuteNet} x {location, image cls} x {3,5,7}
#                (ResNetV1c-18 at 1/4 width, 16 px patches, 400 iterations; the longest part)
#   full_width*  3 runs, zero padding, 3x3 location: full ResNet-18 width, 32 px patches;
#                GAPNet (3x3 head) and PermuteNet per batch, PermuteNet per image
#                (FULL_ITERS iterations each, default 400)
#   protocol     12 runs, zero padding: GAPNet with the authors' 3x3 head, PermuteNet with
#                their one permutation per batch
#   long         4 runs, zero padding, 3x3 grid: today's networks, 2000 iterations
# Settings: WORK (default work_dirs/probe_tables), FULL_ITERS, PARTS (default all:
# "table1 full_width protocol long"). The tables list a part that has no results as not run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${POSATTACK_VENV:-.venv}/bin/python"
WORK="${WORK:-work_dirs/probe_tables}"
FULL_ITERS="${FULL_ITERS:-400}"
PARTS="${PARTS:-table1 full_width protocol long}"
export OMP_NUM_THREADS=1
PROBE=("$PY" tools/probe.py table --num-threads 1)
DATA="$WORK/table1/data/synthetic_cityscapes"
FULL_CONFIG=configs/probes/gapnet_r18-w64-p32_grid3-location_synthetic.py
start=$(date +%s)

has_part() { [[ " $PARTS " == *" $1 "* ]]; }

# 40 + 20 synthetic scenes, as tools/probe.py table makes them without --data-root
if ! grep -q '"complete": true' "$DATA/.posattack_synthetic.json" 2>/dev/null; then
  "$PY" tools/dataset_converters/make_synthetic_cityscapes.py "$DATA" --num-train 40 --num-val 20 --size 128 256 --seed 0
fi
if has_part table1; then
  "${PROBE[@]}" --work-dir "$WORK/table1" --data-root "$DATA"
fi
if has_part full_width; then
  FULL=(--config "$FULL_CONFIG" --data-root "$DATA" --paddings zero --grid-sizes 3
        --tasks location --max-iters "$FULL_ITERS")
  "${PROBE[@]}" "${FULL[@]}" --work-dir "$WORK/full_width" --gapnet-head-kernel 3 --permutation batch
  "${PROBE[@]}" "${FULL[@]}" --work-dir "$WORK/full_width_per_image" --networks PermuteNet
fi
if has_part protocol; then
  "${PROBE[@]}" --work-dir "$WORK/protocol" --data-root "$DATA" --paddings zero \
    --gapnet-head-kernel 3 --permutation batch
fi
if has_part long; then
  "${PROBE[@]}" --work-dir "$WORK/long" --data-root "$DATA" --paddings zero --grid-sizes 3 \
    --max-iters 2000
fi

seconds=$(( $(date +%s) - start ))
COMMAND="PARTS=\"$PARTS\" FULL_ITERS=$FULL_ITERS bash tools/run_probe_tables.sh"
"$PY" tools/tables/probe_tables_md.py --out docs/tables/probes_table1.md --command "$COMMAND" \
  --seconds "$seconds" --part "ResNetV1c-18 at 1/4 width, 16 px patches=$WORK/table1"
"$PY" tools/tables/probe_tables_md.py --out docs/tables/probes_protocol.md --command "$COMMAND" \
  --seconds "$seconds" --paddings zero \
  --part "1/4 width, 16 px (Table 1 above)=$WORK/table1" \
  --part "1/4 width, 16 px, authors' variants=$WORK/protocol" \
  --part "1/4 width, 16 px, longer training=$WORK/long" \
  --part "full width, 32 px, authors' variants=$WORK/full_width" \
  --part "full width, 32 px=$WORK/full_width_per_image"
"$PY" tools/tables/include_tables.py docs/probes.md
echo "[tables-probes] docs/tables/probes_table1.md, docs/tables/probes_protocol.md"
