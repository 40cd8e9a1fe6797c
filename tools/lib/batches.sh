# Run independent long steps (trainings, whole training chains) JOBS at a time, one per core.
# Sourced by tools/run_demo_seeds.sh and tools/run_aug_shift_tables.sh.
#
#   check_jobs                      refuses a JOBS that is not a positive integer (exit 2)
#   run_batches WHAT LOG FUNC ITEM...
#       calls FUNC ITEM for every ITEM, JOBS at a time. With JOBS=1 the calls run in the
#       foreground, their output on the terminal; otherwise each call writes to its own log,
#       the path `printf LOG ITEM` (interleaved output of two trainings would be unreadable),
#       and a batch waits for all its members. A failed call stops the script with
#       "error: WHAT ITEM failed; see LOG", before anything that needs its result runs.
# Batches, not a pool: the steps this runs take about the same time each, so a pool would
# save little, and `wait PID` gives each step's own exit status on any bash 4.

check_jobs() {
  case ${JOBS:-} in ""|*[!0-9]*|0)
    echo "error: JOBS=${JOBS:-} is not a positive integer; set JOBS=1 or more" >&2; exit 2 ;;
  esac
}

run_batches() {
  local what=$1 log_pattern=$2 func=$3
  shift 3
  local items=("$@") i j item log pids batch
  for ((i = 0; i < ${#items[@]}; i += JOBS)); do
    if [ "$JOBS" = 1 ]; then "$func" "${items[$i]}"; continue; fi
    batch=("${items[@]:$i:$JOBS}")
    pids=()
    for item in "${batch[@]}"; do
      # shellcheck disable=SC2059  # the pattern is ours, with one %s
      log=$(printf "$log_pattern" "$item")
      mkdir -p "$(dirname "$log")"
      echo "[batches] $what $item -> $log" >&2
      "$func" "$item" >"$log" 2>&1 &
      pids+=("$!")
    done
    for j in "${!pids[@]}"; do
      # shellcheck disable=SC2059
      wait "${pids[$j]}" || { echo "error: $what ${batch[$j]} failed; see" \
        "$(printf "$log_pattern" "${batch[$j]}")" >&2; exit 1; }
    done
  done
}
