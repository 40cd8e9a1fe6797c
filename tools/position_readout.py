"""How much absolute position each layer of a segmentor holds: the PosENet read-out
(Islam, Jia & Bruce, ICLR 2020) on frozen features.

    python tools/position_readout.py CONFIG CHECKPOINT [--work-dir DIR] \
        [--layers backbone.layer1 backbone:3] [--paddings zero reflect replicate] [--random-init]

For each named layer (default: the tensor the decode head reads), and all of them fused,
trains a read-out (a 3x3 convolution per layer, resized and summed, BN, sigmoid) to draw each
position map (gradient_h, gradient_v, gaussian, stripes_h, stripes_v) from the training
images (default: the config's train images), and scores it with Spearman's correlation (SPC)
and mean absolute error (MAE) on the held-out images (default: the config's test images) and
on black, white and noise inputs, with 95% bootstrap intervals over images: readout.json,
readout.md, readout.png. Seeded; --resume keeps finished read-outs.
"""
from __future__ import annotations

import argparse
import sys

from mmengine.logging import MMLogger

from posattack.readout.inputs import INPUT_KINDS, NATURAL
from posattack.readout.run import ReadoutOptions, run_readout
from posattack.readout.target_maps import target_map_names
from posattack.utils.cli import BAD_INPUT_ERRORS, add_run_arguments, report_bad_input
from posattack.utils.run_options import options_from_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='MMSeg config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', default='work_dirs/readout', help='where results go')
    parser.add_argument('--layers', nargs='+', help="layer names as in tools/depth_profile.py "
                        "(e.g. 'backbone.layer1 backbone:3'; default: the decode head's input)")
    parser.add_argument('--no-fuse', dest='fuse', action='store_false',
                        help='with several layers, skip the read-out over all of them at once')
    parser.add_argument('--images', help='training images, a folder (any depth); default: the '
                        "config's train image folder")
    parser.add_argument('--test-images', help="held-out images; default: the config's test "
                        'image folder')
    parser.add_argument('--image-size', type=int, nargs=2, metavar=('H', 'W'),
                        help='resize every image to H x W (default: the first training image)')
    parser.add_argument('--targets', nargs='+', default=list(target_map_names()),
                        help=f'position maps (default: all: {" ".join(target_map_names())})')
    parser.add_argument('--train-inputs', nargs='+', default=[NATURAL],
                        help=f'what the read-out trains on, among {" ".join(INPUT_KINDS)} '
                        '(default: natural, as the authors; black/white/noise are always scored)')
    parser.add_argument('--num-noise', type=int, default=8, help='noise images to score')
    parser.add_argument('--readout', default='posenet', help='registered read-out')
    parser.add_argument('--paddings', nargs='+', help='also run the backbone with these '
                        'paddings: zero reflect replicate (default: as built)')
    parser.add_argument('--random-init', action='store_true',
                        help='also run a backbone with freshly drawn weights (the control)')
    parser.add_argument('--epochs', type=int, default=15)
    parser.add_argument('--readout-batch-size', type=int, default=32)
    parser.add_argument('--lr', type=float, default=0.1)
    parser.add_argument('--seed', type=int, default=0, help='read-out init, batch order, noise')
    parser.add_argument('--bootstrap', type=int, default=2000)
    parser.add_argument('--bootstrap-seed', type=int, default=0)
    parser.add_argument('--max-images', type=int, help='use the first N training and held-out '
                        'images')
    parser.add_argument('--batch-size', type=int, help='images per backbone forward (default 8)')
    parser.add_argument('--resume', action='store_true', help='keep finished read-outs')
    add_run_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not MMLogger.check_instance_created('posattack'):
        MMLogger.get_instance('posattack', log_level='INFO')
    opts = options_from_args(ReadoutOptions, args)
    try:
        if args.launcher != 'none':
            raise ValueError('position_readout.py runs in one process (the read-outs are '
                             'small); drop --launcher.')
        result = run_readout(opts)
    except BAD_INPUT_ERRORS as error:
        return report_bad_input(error)
    except KeyboardInterrupt:
        print('interrupted: finished read-outs are kept in the work dir; rerun with --resume '
              'to go on.', file=sys.stderr)
        return 130
    print(f'{len(result["rows"])} read-outs: {args.work_dir}/readout.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
