#!/usr/bin/env bash
# The AugShift table of the README (make tables-aug-shift): every run of
# tools/run_aug_shift_demo.sh (plain; shift-crops, the control; blurpool, the anti-aliased
# backbone the paper's Table 2 compares AugShift with; augshift, latent 1 / dense 1;
# augshift-strong, latent 100 / dense 10; latent-only-1/10/100, the paper's latent term alone
# with dense_weight=0) for training seeds 0, 1 and 2, then one table per run and seed, its
# summary over seeds and the paired differences (each setting minus plain, minus shift-crops,
# and augshift minus blurpool), docs/tables/aug_shift.md, stamped. Every step resumes, so it
# can be stopped and rerun; it is long: 24 trainings on one thread each, the pair-trained ones
# about 12 min each: over 4 hours in all on this project's 2-core machine with JOBS=1 (the
# blurpool runs train about 1.2x as long as plain: 10.5 against 9 min on 2026-12-05, each on
# one thread of a machine loaded about 7 deep by other jobs).
# RUNS="plain blurpool ..." makes the table of a declared subset: only those runs are trained
# (or kept: tools/run_aug_shift_demo.sh reuses a model only if its checkpoint records the same
# config, seed and data) and tabled, and the table names the runs it leaves out and where
# their last measurement stays (EARLIER).
# KEPT_ONLY=1 trains nothing: it measures and tables the finished models kept, and the table
# names the runs and seeds still to train.
# JOBS=2 runs two training seeds' chains side by side, one per core, each logging to
# work_dirs/aug_shift/seedN.out (seeds 0 and 1, then 2). On 2026-12-03 the runs went as two
# such chains (2 h 13 min), then this script found them done and wrote the table (3.6 min).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${POSATTACK_VENV:-.venv}/bin/python"
SEEDS="${SEEDS:-0 1 2}"
JOBS="${JOBS:-1}"
source tools/lib/batches.sh
check_jobs
ALL_RUNS="plain shift-crops blurpool augshift augshift-strong latent-only-1 latent-only-10 latent-only-100"
RUNS="${RUNS:-$ALL_RUNS}"
# The last table of the runs left out of a declared RUNS subset (it keeps its own date).
EARLIER="${EARLIER:-docs/tables/aug_shift_2026-12-03.md}"
ROWS=()
RUNS_NOTE=""
NOT_RERUN=()
[ "$RUNS" = "$ALL_RUNS" ] || RUNS_NOTE=", RUNS=\"$RUNS\""
[ "${KEPT_ONLY:-0}" = 0 ] || RUNS_NOTE="$RUNS_NOTE, KEPT_ONLY=1"
for name in $ALL_RUNS; do
  case " $RUNS " in *" $name "*) ;; *) NOT_RERUN+=("$name") ;; esac
done
NOTE_ARGS=()
if [ ${#NOT_RERUN[@]} -gt 0 ]; then
  NOTE_ARGS=(--not-rerun "${NOT_RERUN[@]}")
  [ ! -f "$EARLIER" ] || NOTE_ARGS+=(--earlier "$EARLIER")
fi
seed_chain() {  # seed_chain SEED: every run of one training seed, one after another
  SEED=$1 RUNS="$RUNS" bash tools/run_aug_shift_demo.sh
}
# shellcheck disable=SC2086  # SEEDS is a list
run_batches "training seed" "work_dirs/aug_shift/seed%s.out" seed_chain $SEEDS
NOT_TRAINED=()
for seed in $SEEDS; do
  for name in $RUNS; do
    dir="work_dirs/aug_shift/seed$seed/$name"
    if grep -qx -- "$name" "work_dirs/aug_shift/seed$seed/left_out.txt" 2>/dev/null; then
      NOT_TRAINED+=("$name/$seed")  # KEPT_ONLY=1 and no finished model: not a row
      continue
    fi
    ROWS+=(--run "$name/$seed" "$dir/consistency/consistency.json" "$dir/attack/results.json")
  done
done
[ ${#NOT_TRAINED[@]} -eq 0 ] || NOTE_ARGS+=(--not-trained "${NOT_TRAINED[@]}")
# At the paper's count (5% of the channels), where each model's primary rank test (sequential
# draws, up to 99) gives the verdict; at 10% the 8 exploratory draws cannot reach p < 0.05.
"$PY" tools/aug_shift_table.py "${ROWS[@]}" "${NOTE_ARGS[@]}" --fraction 0.05 \
  --out docs/tables/aug_shift.md --command "make tables-aug-shift (SEEDS=\"$SEEDS\"$RUNS_NOTE)"
