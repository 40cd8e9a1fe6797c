"""Shift consistency of a segmentor: Cons.8 / Cons.16, overall and per region.

    python tools/consistency.py CONFIG CHECKPOINT [--max-shift 8 16] [--trials T] [--seed S]

For each test image, `trials` pairs of crops per max shift s, offset by (dy, dx) with
|dy|, |dx| <= s (crops are (H - s) x (W - s) of the network input); Cons.s is the percentage
of the pixels both crops see whose predicted label agrees, agreement_mIoU.s the mIoU of one
crop's labels against the other's there, each also per region (center vs periphery...).
The same seed gives the same crops. Writes consistency.json (settings and metrics) and
consistency_details.json (pixels and per-class agreement IoU per region) into the work dir.
The measurement itself is posattack.evaluation.consistency.
"""
from __future__ import annotations

# The parser and the run live in the package (posattack/cli/consistency.py), so that the installed
# `posattack consistency` and this script are one tool; names kept here for their callers.
from posattack.cli.consistency import main, parse_args  # noqa: F401
from posattack.utils.distributed import exit_process

if __name__ == '__main__':
    exit_process(main())
