"""make tables-readout: the position read-out of the demo model, per layer, under zero,
reflect and replicate padding and with a randomly initialised backbone, stamped.

    python tools/tables/readout_table.py [--config CONFIG] [--checkpoint CKPT] [--data DIR] \
        [--work-dir work_dirs/demo/readout] [--out docs/tables/demo_readout.md]

Runs posattack.readout on every layer the depth profile walks by default (each backbone stage
output and the tensor the decode head reads), each alone, for all five target maps, with the
trained backbone switched to each padding and with re-drawn weights (zero padding); then
writes the table and its plot beside it (``<out stem>.png``) under a line naming the date,
the machine, its load, the command and the time taken. Resumes: finished read-outs in the
work dir are kept (delete the work dir to measure again).
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
import time

import torch
from mmengine.logging import MMLogger

from posattack.data.dataloader import build_test_dataloader
from posattack.models.builder import load_segmentor
from posattack.profile.depth_layers import depth_layers, first_batch_inputs
from posattack.readout.report import READOUT_LEGEND, readout_table
from posattack.readout.run import ReadoutOptions, readout_model
from posattack.utils.cli import BAD_INPUT_ERRORS, report_bad_input
from posattack.utils.fileio import write_bytes_atomic, write_text_atomic
from posattack.utils.machine import measured_by

CONFIG = 'configs/demo/deeplabv3_r18-tiny_flip_side-free_synthetic-cityscapes.py'
CHECKPOINT = 'work_dirs/demo/seeds/seed0/train/iter_600.pth'
DATA = 'data/synthetic_cityscapes_side_free'
PADDINGS = ('zero', 'reflect', 'replicate')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', default=CONFIG)
    parser.add_argument('--checkpoint', default=CHECKPOINT,
                        help='the demo model (make demo-seeds, seed 0)')
    parser.add_argument('--data', default=DATA, help='data_root of the images')
    parser.add_argument('--work-dir', default='work_dirs/demo/readout')
    parser.add_argument('--out', default='docs/tables/demo_readout.md')
    parser.add_argument('--epochs', type=int, default=15)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)   # one thread: the timing below is of one core
    if not MMLogger.check_instance_created('posattack'):
        MMLogger.get_instance('posattack', log_level='INFO')
    data = [f'{split}_dataloader.dataset.data_root={args.data}' for split in ('train', 'test')]
    command = (f'python tools/tables/readout_table.py --config {args.config} --checkpoint '
               f'{args.checkpoint} --data {args.data} --epochs {args.epochs}')
    started, load, cpu = time.perf_counter(), os.getloadavg()[0], time.process_time()
    try:
        if not osp.isfile(args.checkpoint):
            raise FileNotFoundError(f'{args.checkpoint} does not exist: train the demo model '
                                    'first (make demo-seeds SEEDS=1), or pass --checkpoint.')
        cfg_options = dict(item.split('=', 1) for item in data)
        model, cfg = load_segmentor(args.config, args.checkpoint, cfg_options=cfg_options)
        inputs = first_batch_inputs(model, build_test_dataloader(cfg, 1, 1))
        layers = depth_layers(model, inputs)
        opts = ReadoutOptions(args.config, args.checkpoint, args.work_dir,
                              cfg_options=cfg_options, layers=layers, fuse=False,
                              paddings=list(PADDINGS), random_init=True, epochs=args.epochs,
                              resume=True)
        result = readout_model(model, cfg, opts)
    except BAD_INPUT_ERRORS as error:
        return report_bad_input(error)
    minutes = (time.perf_counter() - started) / 60
    cpu_minutes = (time.process_time() - cpu) / 60
    size = result['image_size']
    stamp = (f'{measured_by(command)}, {minutes:.1f} min wall, {cpu_minutes:.1f} min of CPU '
             f'(load average {load:.1f} at start, '
             f'{os.getloadavg()[0]:.1f} at end; one thread; read-outs kept from an earlier run '
             f'in {args.work_dir} are not re-timed); {result["num_train_images"]} training and '
             f'{result["num_test_images"]} held-out images at {size[0]}x{size[1]}, '
             f'{result["training"]["epochs"]} epochs, seed {result["training"]["seed"]}, '
             f'{result["bootstrap"]} bootstrap resamples. Backbones: trained_<padding> is the '
             'trained model with every padded convolution of its backbone switched to that '
             'padding (it was trained with zero padding); random_init_zero has re-drawn weights.')
    plot = f'{osp.splitext(args.out)[0]}.png'
    with open(osp.join(args.work_dir, 'readout.png'), 'rb') as f:
        write_bytes_atomic(plot, f.read())
    lines = [f'<!-- generated by tools/tables/readout_table.py from {args.work_dir}/'
             'readout.json -->',
             stamp, '', READOUT_LEGEND, ''] + readout_table(result) + \
        ['', f'![read-out by layer and padding]({osp.basename(plot)})']
    write_text_atomic(args.out, '\n'.join(lines) + '\n')
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
