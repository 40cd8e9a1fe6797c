"""The position attack in one command.

    python tools/attack.py CONFIG CHECKPOINT [--work-dir DIR] [--num-channels 25 50 100]
    python tools/attack.py CONFIG CKPT_SEED0 CKPT_SEED1 CKPT_SEED2   # pooled over models

Identifies position-encoding channels of the tensor the decode head consumes (flip
difference, Islam et al. ICCV 2021), removes the top N and, as the baseline, N random
channels (several seeds), and scores every setting with per-region mIoU, with tests that
carry their uncertainty over random draws and images. Writes ranking.json, per_image.npz,
results.json/.csv, report.md, plots and overlays into the work dir. With several checkpoints
of the config (training seeds), each model goes to <work-dir>/models/<name>/ and the work dir
gets summary.json and report.md pooled over models.
"""
from __future__ import annotations

# The parser and the run live in the package (posattack/cli/attack.py), so that the installed
# `posattack attack` and this script are one tool; names kept here for their callers.
from posattack.cli.attack import main, parse_args  # noqa: F401
from posattack.utils.distributed import exit_process

if __name__ == '__main__':
    exit_process(main())
