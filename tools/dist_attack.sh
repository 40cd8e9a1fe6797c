#!/usr/bin/env bash
# Usage: tools/dist_attack.sh CONFIG CHECKPOINT NPROC [tools/attack.py options...]
# Each process takes its shard of the test set; confusion matrices and identification
# sums are reduced across processes and rank 0 writes the work dir.
set -euo pipefail
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
PORT=${PORT:-29511}
PYTHON=${PYTHON:-python}
shift 3
"$PYTHON" -m torch.distributed.run --nproc_per_node="$NPROC" --master_port="$PORT" \
  "$(dirname "$0")/attack.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
