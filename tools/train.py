"""Train a segmentor with MMEngine's Runner, like mmseg's own tools/train.py.

    python tools/dataset_converters/make_synthetic_cityscapes.py data/synthetic_cityscapes
    python tools/train.py configs/demo/deeplabv3_r18-tiny_synthetic-cityscapes.py
    python tools/train.py CONFIG --work-dir work_dirs/run1 --resume   # continue the last run

Importing posattack registers its modules and allowlists the globals of MMEngine
checkpoints, so `--resume` (which torch.loads the last checkpoint) works on torch >= 2.6.
"""
from __future__ import annotations

# The parser and the run live in the package (posattack/cli/train.py), so that the installed
# `posattack train` and this script are one tool; names kept here for their callers.
from posattack.cli.train import main, parse_args  # noqa: F401
from posattack.utils.distributed import exit_process

if __name__ == '__main__':
    exit_process(main())
