"""The position attack in one command.

    posattack attack CONFIG CHECKPOINT [--work-dir DIR] [--num-channels 25 50 100]
    posattack attack CONFIG CKPT_SEED0 CKPT_SEED1 CKPT_SEED2   # pooled over models
    posattack attack CONFIG CHECKPOINT --vis-backend tensorboard   # curves in TensorBoard too
    posattack attack posattack::demo/deeplabv3_r18-tiny_synthetic-cityscapes.py CHECKPOINT

(python tools/attack.py takes the same arguments.)

Identifies position-encoding channels of the tensor the decode head consumes (flip
difference, Islam et al. ICCV 2021), removes the top N and, as the baseline, N random
channels (several seeds), and scores every setting with per-region mIoU, with tests that
carry their uncertainty over random draws and images. Writes ranking.json, per_image.npz,
results.json/.csv, report.md, plots and overlays into the work dir. With several checkpoints
of the config (training seeds), each model goes to <work-dir>/models/<name>/ and the work dir
gets summary.json and report.md pooled over models. The config's visualizer.vis_backends
(or --vis-backend) receive the per-region mIoU curves, the tests and the images.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

from mmengine.logging import MMLogger

from ..api.attack_run import run_logged_attack
from ..attack.experiment import DEFAULT_BOOTSTRAP, DEFAULT_SEEDS, AttackOptions
from ..attack.identification_images import (DEFAULT_IDENTIFY_MAX_IMAGES, DEFAULT_IDENTIFY_ON,
                                            IDENTIFY_ON_CHOICES)
from ..channels.ablations import ablation_names
from ..report.rank_tests import DEFAULT_EXCEEDANCES, DEFAULT_MAX_DRAWS
from ..report.vis_backends import add_vis_backend_argument
from ..utils.cli import (BAD_INPUT_ERRORS, add_run_arguments, default_work_dir, parse_region_arg,
                         report_bad_input)
from ..utils.distributed import init_launcher
from ..utils.run_options import options_from_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='MMSeg config file')
    parser.add_argument('checkpoint', nargs='+',
                        help='checkpoint file; several (of the same config) are pooled')
    parser.add_argument('--model-names', nargs='+',
                        help='folder names of the pooled models (default: from the paths)')
    parser.add_argument('--work-dir', help='where results go '
                        '(default: ./work_dirs/<config name>/attack)')
    parser.add_argument('--layer', help="attacked tensor, e.g. 'backbone:3' (default: the "
                        'tensor the decode head consumes)')
    parser.add_argument('--ranking', help='a ranking JSON (posattack or the authors\' '
                        'release); default: identify on the fly with the flip difference')
    parser.add_argument('--ranking-format', default='auto',
                        choices=['auto', 'posattack', 'authors'])
    parser.add_argument('--compare-ranking', help='a second ranking (e.g. the authors\' '
                        'release) to compare with the one this run uses: Spearman and top-k '
                        'overlap per order, in the report')
    parser.add_argument('--compare-ranking-format', default='auto',
                        choices=['auto', 'posattack', 'authors'])
    parser.add_argument('--attack-region', nargs='+', default=['overall'],
                        help='ranking order(s) for targeted removal: overall, left, right, '
                        'top, bottom, or any order the ranking has (e.g. cell_0_0); with '
                        '"left right" the report tests whether each hurts its own half more')
    parser.add_argument('--allow-ranking-layer-mismatch', action='store_true',
                        help='use a --ranking made for another layer than --layer')
    parser.add_argument('--allow-ranking-from-other-checkpoint', action='store_true',
                        help='use a --ranking identified on another checkpoint (refused '
                        'otherwise: it ranks another model\'s channels)')
    counts = parser.add_mutually_exclusive_group()
    counts.add_argument('--num-channels', type=int, nargs='+',
                        help='channel counts N to remove')
    counts.add_argument('--fractions', type=float, nargs='+',
                        help='fractions of the channels to remove (default 0.01 0.05 0.1 0.2)')
    parser.add_argument('--seeds', type=int, default=DEFAULT_SEEDS,
                        help='random draws per exploratory N (the primary N = 5%% draws '
                        'sequentially, see --max-draws; p < 0.05 needs 19 or more)')
    parser.add_argument('--max-draws', type=int, default=DEFAULT_MAX_DRAWS,
                        help='most random draws at the primary N (Besag-Clifford sequential '
                        'test; default %(default)s, floor p = 1/(1 + max))')
    parser.add_argument('--exceedances', type=int, default=DEFAULT_EXCEEDANCES,
                        help='stop drawing at the primary N once this many draws reach the '
                        'targeted value (default %(default)s)')
    parser.add_argument('--identify-on', default=DEFAULT_IDENTIFY_ON,
                        choices=list(IDENTIFY_ON_CHOICES),
                        help='images that rank the channels: the config\'s train (default) or '
                        'val split with the test pipeline, refused if they share an image with '
                        'the test set; "test" ranks on the scored images (every verdict flagged)')
    parser.add_argument('--identify-max-images', type=int, default=DEFAULT_IDENTIFY_MAX_IMAGES,
                        help='use at most this many identification images (default '
                        '%(default)s)')
    parser.add_argument('--bootstrap-groups',
                        help="resample groups of images, not images: 'city' (Cityscapes file "
                        'names) or a regex with one capture group on the file name')
    parser.add_argument('--bootstrap', type=int, default=DEFAULT_BOOTSTRAP,
                        help='image bootstrap resamples for the confidence intervals')
    parser.add_argument('--bootstrap-seed', type=int, default=0)
    parser.add_argument('--ablation', default='zero', choices=ablation_names(),
                        help='what a removed channel becomes (posattack/channels/ablations.py)')
    parser.add_argument('--regions', nargs='+', type=parse_region_arg,
                        default=['paper', dict(type='border', bands=4)],
                        help='evaluation regions: paper, border[=K], grid[=RxC], '
                        'frame[=F], halves')
    parser.add_argument('--show-dir', help='write qualitative overlays here '
                        '(default: <work-dir>/overlays)')
    parser.add_argument('--no-overlays', action='store_true')
    parser.add_argument('--num-overlays', type=int, default=4)
    parser.add_argument('--max-images', type=int, help='evaluate the first N test images')
    parser.add_argument('--batch-size', type=int, help='override the test batch size')
    parser.add_argument('--resume', action='store_true',
                        help='keep the finished settings in the work dir')
    add_vis_backend_argument(parser)
    add_run_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    work_dir = args.work_dir or default_work_dir(args.config, 'attack')
    show_dir = None if args.no_overlays else (args.show_dir or osp.join(work_dir, 'overlays'))
    try:
        # outside torchrun, --launcher pytorch is bad input, not a traceback
        init_launcher(args.launcher, args.dist_timeout)
        MMLogger.get_instance('posattack', log_level='INFO')
        opts = options_from_args(AttackOptions, args, checkpoint=args.checkpoint[0],
                                 work_dir=work_dir, show_dir=show_dir)
        run_logged_attack(opts, args.checkpoint, args.model_names, args.vis_backend)
    except BAD_INPUT_ERRORS as error:
        return report_bad_input(error)
    except KeyboardInterrupt:
        print('interrupted: finished settings are kept in results.json; '
              'rerun with --resume to go on.', file=sys.stderr)
        return 130
    return 0

