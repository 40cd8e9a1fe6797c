"""Rank the channels of a segmentation model by how much they encode position.

    python tools/identify.py CONFIG CHECKPOINT [--layer backbone:3] [--split val]
        [--num-images N] [--batch-size B] [--out ranking.json] [--cfg-options ...]

Runs every image of the split (mmseg's test pipeline) and its horizontal and vertical flips
through the model up to the layer, and ranks channels by the flip difference of their
globally pooled activation (Islam et al., ICCV 2021): orders overall, left, right, top and
bottom, saved as a ranking JSON that tools/attack.py and ChannelRemovalHook read.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

from ..channels.ranking import FORMAT_TAG
from ..utils.cli import BAD_INPUT_ERRORS, add_run_arguments, default_work_dir, report_bad_input
from ..utils.distributed import init_launcher
from ..utils.fileio import file_sha256
from ..utils.owned_files import check_replaceable


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='MMSeg config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--layer', help="tensor to rank, e.g. 'backbone:3' or 'backbone.layer4' "
                        '(default: the tensor the decode head consumes)')
    parser.add_argument('--split', default='val', choices=['val', 'test', 'train'],
                        help='images to use; train uses the train images with the test pipeline')
    parser.add_argument('--num-images', type=int, help='use the first N images (default: all)')
    parser.add_argument('--batch-size', type=int, help='override the dataloader batch size '
                        '(each batch runs 3x: image, horizontal and vertical flip)')
    parser.add_argument('--num-workers', type=int, help='override the dataloader workers')
    parser.add_argument('--out', help='ranking JSON to write '
                        '(default: ./work_dirs/<config name>/ranking.json)')
    parser.add_argument('--no-vertical', action='store_true',
                        help='skip the vertical flip (no top/bottom orders; 1/3 less compute)')
    parser.add_argument('--device', default=None,
                        help="'cpu' or 'cuda' (default: cuda when available)")
    parser.add_argument('--top', type=int, default=10, help='channels to print per order')
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    if args.num_images is not None and args.num_images < 1:
        parser.error(f'--num-images must be at least 1, got {args.num_images}.')
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f'--batch-size must be at least 1, got {args.batch_size}.')
    if args.top < 0:
        parser.error('--top must be non-negative.')
    return args


def format_summary(ranking, top: int) -> str:
    """The first ``top`` channels of every order, with the score that put them there."""
    lines = [f'{ranking.num_channels} channels of {ranking.layer!r}, '
             f'{ranking.num_images} images, method {ranking.method}:']
    for region in ranking.regions:
        rule = ranking.order_rules.get(region)
        scores = ranking.scores.get(rule['score']) if rule else None
        head = ranking.top(region, num_channels=min(top, ranking.num_channels))
        if scores is None:
            items = ', '.join(str(c) for c in head)
        else:
            items = ', '.join(f'{c} ({scores[c]:+.4g})' for c in head)
        lines.append(f'  {region:>8}: {items}')
    return '\n'.join(lines)


def main(argv=None) -> str:
    """Run the identification; returns the path of the ranking written."""
    args = parse_args(argv)

    import torch
    from mmengine.dist import get_dist_info
    from mmengine.logging import print_log

    from ..data.dataloader import build_split_dataloader
    from ..identify import identify_channels
    from ..models.builder import load_segmentor

    init_launcher(args.launcher, args.dist_timeout)
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'Config file not found: {args.config}')
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'Checkpoint file not found: {args.checkpoint}')
    out = args.out or default_work_dir(args.config, 'ranking.json')
    if osp.isdir(out):  # found before the identification pass, not after it
        raise ValueError(f'--out {out} is a folder: pass a file path, e.g. {out}/ranking.json.')
    check_replaceable(out, [FORMAT_TAG], '--out')  # never over a file of the user's

    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    model, cfg = load_segmentor(args.config, args.checkpoint, cfg_options=args.cfg_options,
                                trust_checkpoint=args.trust_checkpoint, device=device)
    dataloader = build_split_dataloader(cfg, args.split, batch_size=args.batch_size,
                                        num_workers=args.num_workers)
    config_name = osp.splitext(osp.basename(args.config))[0]
    model_info = {
        'config': osp.abspath(args.config),
        'config_name': config_name,
        'checkpoint': osp.abspath(args.checkpoint),
        'checkpoint_sha256': file_sha256(args.checkpoint),
        'split': args.split,
    }
    ranking = identify_channels(model, dataloader, layer=args.layer, num_images=args.num_images,
                                progress=True, vertical=not args.no_vertical,
                                model_info=model_info)
    rank, _ = get_dist_info()
    if rank == 0:
        path = ranking.save(out)
        print_log(format_summary(ranking, args.top), logger='current')
        print_log(f'Ranking written to {osp.abspath(path)}', logger='current')
    return out


def command(argv=None) -> int:
    """:func:`main` as a command: an exit status, bad input reported in one line."""
    try:
        main(argv)
    except BAD_INPUT_ERRORS as error:
        # Bad input, a full disk or a rank that stopped: one line that says what is wrong
        # and how to fix it (POSATTACK_DEBUG=1 gives the traceback), as the other tools do.
        return report_bad_input(error)
    except KeyboardInterrupt:  # one line, as the other tools; the ranking is written last
        print('interrupted: no ranking written; rerun to identify.', file=sys.stderr)
        return 130
    return 0
