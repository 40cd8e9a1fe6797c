"""Where in depth a segmentor keeps position: the position attack, layer by layer.

    posattack profile CONFIG CHECKPOINT [--work-dir DIR] [--layers L1 L2 ... | all]
    python tools/depth_profile.py CONFIG CHECKPOINT ...   # the same tool
    python -m torch.distributed.run --nproc_per_node=4 tools/depth_profile.py CONFIG CKPT \
        --launcher pytorch

For every layer (default: each backbone stage output, each neck output, and the tensor the
decode head reads) writes how concentrated its flip-difference scores are and what targeted
vs random removal of 5/10/20% of its channels costs, with p-values and confidence intervals:
profile.json, profile.md, concentration_vs_depth.png, gap_vs_depth.png,
class_drop_by_layer.png, and one tools/attack.py-style work dir per layer under layers/. The
config's visualizer.vis_backends (or --vis-backend) receive the per-layer scalars and figures.
With --readout, also the position read-out per layer (SPC/MAE) beside concentration and the
attack gap: one table in profile.md and position_by_layer.png.
"""
from __future__ import annotations

import argparse
import sys

from mmengine.logging import MMLogger

from ..api.profile_run import run_logged_profile
from ..attack.experiment import DEFAULT_BOOTSTRAP, DEFAULT_SEEDS
from ..profile.run import DEFAULT_FRACTIONS, READOUT_TARGETS, ProfileOptions
from ..report.vis_backends import add_vis_backend_argument
from ..utils.cli import (BAD_INPUT_ERRORS, add_run_arguments, default_work_dir, parse_region_arg,
                         report_bad_input)
from ..utils.distributed import init_launcher
from ..utils.run_options import options_from_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='MMSeg config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where results go '
                        '(default: ./work_dirs/<config name>/profile)')
    parser.add_argument('--layers', nargs='+', help="layers to profile, e.g. 'backbone.layer1 "
                        "backbone:3', or 'all' (default): every stage output, neck output and "
                        'the tensor the decode head reads')
    parser.add_argument('--fractions', type=float, nargs='+', default=list(DEFAULT_FRACTIONS),
                        help='fractions of each layer\'s channels to remove (default 0.05 0.1 0.2)')
    parser.add_argument('--seeds', type=int, default=DEFAULT_SEEDS,
                        help='random draws per N (p < 0.05 needs 19 or more)')
    parser.add_argument('--bootstrap', type=int, default=DEFAULT_BOOTSTRAP,
                        help='image bootstrap resamples for the confidence intervals')
    parser.add_argument('--bootstrap-seed', type=int, default=0)
    parser.add_argument('--regions', nargs='+', type=parse_region_arg,
                        default=['paper', dict(type='border', bands=4)],
                        help='evaluation regions: paper, border[=K], grid[=RxC], frame[=F], halves')
    parser.add_argument('--max-images', type=int, help='evaluate the first N test images')
    parser.add_argument('--batch-size', type=int, help='override the test batch size')
    parser.add_argument('--layer-plots', action='store_true',
                        help="also draw tools/attack.py's three plots in every layer's folder")
    parser.add_argument('--readout', action='store_true',
                        help='add the position read-out column (Islam et al., ICLR 2020): per '
                        'layer, SPC/MAE of a read-out trained on the config\'s train images '
                        '(see docs/position_readout.md; about 3 s of CPU per layer and target '
                        'map on the demo\'s 300 training images)')
    parser.add_argument('--readout-targets', nargs='+', default=list(READOUT_TARGETS),
                        help='target maps of the read-out column (default: all five)')
    parser.add_argument('--readout-epochs', type=int, default=15)
    parser.add_argument('--resume', action='store_true',
                        help='keep finished layers (and the identification) in the work dir')
    add_vis_backend_argument(parser)
    add_run_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    work_dir = args.work_dir or default_work_dir(args.config, 'profile')
    try:
        # outside torchrun, --launcher pytorch is bad input, not a traceback
        init_launcher(args.launcher, args.dist_timeout)
        if not MMLogger.check_instance_created('posattack'):  # a second call in one process warns
            MMLogger.get_instance('posattack', log_level='INFO')
        opts = options_from_args(ProfileOptions, args, work_dir=work_dir)
        run_logged_profile(opts, args.vis_backend)
    except BAD_INPUT_ERRORS as error:
        return report_bad_input(error)
    except KeyboardInterrupt:
        print('interrupted: finished layers are kept in the work dir; rerun with --resume '
              'to go on.', file=sys.stderr)
        return 130
    return 0

