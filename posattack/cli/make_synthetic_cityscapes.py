"""Write synthetic street scenes in the Cityscapes layout (see posattack/data/synthetic.py).

    python tools/dataset_converters/make_synthetic_cityscapes.py data/synthetic_cityscapes \
        --num-train 300 --num-val 60 --size 128 256 --seed 0
    # then: python tools/train.py configs/demo/deeplabv3_r18-tiny_synthetic-cityscapes.py
    # Cityscapes' own scale, all 19 train classes in every image (for benchmarks at full size):
    python tools/dataset_converters/make_synthetic_cityscapes.py data/synthetic_cityscapes_full \
        --num-train 0 --num-val 4 --size 1024 2048 --all-classes
"""
from __future__ import annotations

import argparse
import sys
import time

from mmengine.logging import print_log

from ..data.synthetic import generate_cityscapes


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate a synthetic Cityscapes-format dataset (leftImg8bit + gtFine).')
    parser.add_argument('out_dir', help='dataset root to create (the config\'s data_root)')
    parser.add_argument('--num-train', type=int, default=300, help='train images')
    parser.add_argument('--num-val', type=int, default=60, help='val images')
    parser.add_argument('--size', type=int, nargs=2, default=(128, 256),
                        metavar=('HEIGHT', 'WIDTH'), help='image size in pixels')
    parser.add_argument('--seed', type=int, default=0, help='seed; same seed, same bytes')
    parser.add_argument('--side-free', action='store_true',
                        help='scenes whose classes do not depend on the side of the street '
                        '(sidewalk/terrain and building/wall told apart by looks), for '
                        'training with random horizontal flips')
    parser.add_argument('--all-classes', action='store_true',
                        help='also draw a truck, a bus, a tram, riders on a bicycle and a '
                        'motorcycle and a parked bicycle: all 19 train classes in every image')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        info = generate_cityscapes(args.out_dir, args.num_train, args.num_val,
                                   size=tuple(args.size), seed=args.seed,
                                   side_free=args.side_free, all_classes=args.all_classes)
    except (ValueError, FileExistsError, NotADirectoryError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    print_log(
        f'wrote {info["num_train"]} train + {info["num_val"]} val scenes of '
        f'{info["size"][0]}x{info["size"][1]} to {info["root"]} in '
        f'{time.perf_counter() - start:.1f} s', logger='current')
    for split, names in info['classes_present'].items():
        print_log(f'{split}: {len(names)} classes present: {", ".join(names)}', logger='current')
    return 0

