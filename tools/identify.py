"""Rank the channels of a segmentation model by how much they encode position.

    python tools/identify.py CONFIG CHECKPOINT [--layer backbone:3] [--split val]
        [--num-images N] [--batch-size B] [--out ranking.json] [--cfg-options ...]

Runs every image of the split (mmseg's test pipeline) and its horizontal and vertical flips
through the model up to the layer, and ranks channels by the flip difference of their
globally pooled activation (Islam et al., ICCV 2021): orders overall, left, right, top and
bottom, saved as a ranking JSON that tools/attack.py and ChannelRemovalHook read.
"""
from __future__ import annotations

# The parser and the run live in the package (posattack/cli/identify.py), so that the installed
# `posattack identify` and this script are one tool; names kept here for their callers.
from posattack.cli.identify import command, main, parse_args  # noqa: F401
from posattack.utils.distributed import exit_process

if __name__ == '__main__':
    exit_process(command())
