"""Write synthetic street scenes in the Cityscapes layout (see posattack/data/synthetic.py).

    python tools/dataset_converters/make_synthetic_cityscapes.py data/synthetic_cityscapes \
        --num-train 300 --num-val 60 --size 128 256 --seed 0
    # then: python tools/train.py configs/demo/deeplabv3_r18-tiny_synthetic-cityscapes.py
"""
from __future__ import annotations

# The parser and the run live in the package (posattack/cli/make_synthetic_cityscapes.py), so
# that the installed `posattack make-synthetic` and this script are one tool; names kept here for
# their callers.
from posattack.cli.make_synthetic_cityscapes import main, parse_args  # noqa: F401
from posattack.utils.distributed import exit_process

if __name__ == '__main__':
    exit_process(main())
