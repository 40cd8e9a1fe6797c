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

import argparse
import sys

from mmengine.logging import MMLogger

from ..evaluation.consistency import ConsistencyOptions, run_consistency
from ..utils.cli import (BAD_INPUT_ERRORS, add_run_arguments, default_work_dir, parse_region_arg,
                         report_bad_input)
from ..utils.distributed import init_launcher
from ..utils.run_options import options_from_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='MMSeg config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--max-shift', type=int, nargs='+', default=[8, 16],
                        help='largest |dy|, |dx| in pixels of the network input, one '
                        'measurement each (default: 8 16, the paper\'s Cons.8 and Cons.16)')
    parser.add_argument('--trials', type=int, default=1,
                        help='crop pairs per image and max shift (default 1)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the crop positions')
    parser.add_argument('--regions', nargs='+', type=parse_region_arg, default=['paper'],
                        help='regions scored besides the full image: paper, halves, '
                        'border[=K], grid[=RxC], frame[=F] (default: paper)')
    parser.add_argument('--work-dir', help='where results go '
                        '(default: ./work_dirs/<config name>/consistency)')
    parser.add_argument('--max-images', type=int, help='use the first N test images')
    parser.add_argument('--batch-size', type=int, help='override the test batch size')
    add_run_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.work_dir = args.work_dir or default_work_dir(args.config, 'consistency')
    try:
        # outside torchrun, --launcher pytorch is bad input, not a traceback
        init_launcher(args.launcher, args.dist_timeout)
        MMLogger.get_instance('posattack', log_level='INFO')
        run_consistency(options_from_args(ConsistencyOptions, args, max_shifts=args.max_shift))
    except BAD_INPUT_ERRORS as error:
        return report_bad_input(error)
    except KeyboardInterrupt:  # one line, as the other tools; nothing partial was written
        print('interrupted: nothing written (consistency.json comes at the end); rerun to '
              'measure.', file=sys.stderr)
        return 130
    return 0

