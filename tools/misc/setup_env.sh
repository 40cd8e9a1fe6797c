#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment with the whole stack.
# Idempotent: a stamp file records what was installed; a second run takes seconds.
#
# Order matters on this stack:
#  1. torch==2.13.0 first (the CPU wheel), so that nothing later pulls CUDA builds;
#  2. setuptools<81 (mmcv's setup.py needs pkg_resources), wheel and ninja;
#  3. mmcv 2.1.0 built from source WITH its compiled ops (mmseg imports mmcv.ops and there
#     is no prebuilt CPU wheel for torch 2.13): about 9 minutes on 2 cores the first time,
#     seconds afterwards because pip caches the built wheel;
#  4. mmengine, mmsegmentation and the rest, then the test tools (requirements-dev.txt:
#     hypothesis, mutmut), then posattack itself in editable mode.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${POSATTACK_VENV:-.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3

stamp_key=$(cat tools/misc/setup_env.sh setup.py requirements.txt requirements-dev.txt | sha256sum \
  | cut -c1-16)
stamp="$VENV/.posattack-env-$stamp_key"
if [ -f "$stamp" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip="$VENV/bin/python -m pip"
$pip install --quiet "torch==2.13.0"
$pip install --quiet "setuptools<81" wheel ninja
if ! "$VENV/bin/python" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
  echo "[setup] building mmcv 2.1.0 with compiled ops (first time: about 9 minutes; pip caches the wheel)" >&2
  MMCV_WITH_OPS=1 $pip install --quiet --no-build-isolation "mmcv==2.1.0"
fi
$pip install --quiet -r requirements.txt
$pip install --quiet -r requirements-dev.txt
$pip install --quiet --no-build-isolation --no-deps -e .
"$VENV/bin/python" -c "import posattack, mmseg, mmcv.ops" >/dev/null
touch "$stamp"
echo "[setup] environment ready in $VENV" >&2
