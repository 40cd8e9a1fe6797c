"""How much does RegionIoUMetric add to a test pass? Prints its cost as a ratio.

Times the demo model's test step (preprocess, forward, resize to ori_shape, argmax) over N
random images against RegionIoUMetric.process on the same outputs, with mmseg's IoUMetric
beside it for scale. Both are timed in this one run, so the ratio is fair on any machine.

    python tools/analysis_tools/benchmark_metric.py
    python tools/analysis_tools/benchmark_metric.py --num-images 32 --size 256 512 --max-ratio 0.05
    python tools/analysis_tools/benchmark_metric.py \
        --regions '["paper", {"type": "border", "bands": 8}]'
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
import time

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIG = osp.join(REPO_ROOT, 'configs', 'demo',
                          'deeplabv3_r18-tiny_synthetic-cityscapes.py')
DEFAULT_REGIONS = ['paper', dict(type='border', bands=4), dict(type='grid', rows=3, cols=3)]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='MMSeg config of the model')
    parser.add_argument('--num-images', type=int, default=16)
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'), default=None,
                        help="image size (default: the config's crop_size, else 128 256)")
    parser.add_argument('--regions', type=json.loads, default=DEFAULT_REGIONS,
                        help='region specs as JSON (default: paper, border 4, grid 3x3)')
    parser.add_argument('--repeat', type=int, default=3, help='timing rounds; the best counts')
    parser.add_argument('--max-ratio', type=float, default=None,
                        help='exit with status 1 when metric/test-step exceeds this ratio')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    for name in ('num_images', 'batch_size', 'repeat'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be at least 1')
    return args


def make_batches(num_images, batch_size, height, width, num_classes, seed):
    """Random images and labels packed as a dataloader would (PackSegInputs layout)."""
    from mmseg.structures import SegDataSample
    rng = np.random.default_rng(seed)
    batches = []
    for start in range(0, num_images, batch_size):
        inputs, samples = [], []
        for _ in range(min(batch_size, num_images - start)):
            inputs.append(torch.from_numpy(rng.integers(0, 256, (3, height, width), np.uint8)))
            gt = rng.integers(0, num_classes, (height, width))
            gt[rng.random((height, width)) < 0.1] = 255
            sample = SegDataSample(metainfo=dict(img_shape=(height, width),
                                                 ori_shape=(height, width),
                                                 pad_shape=(height, width)))
            sample.gt_sem_seg = PixelData(data=torch.from_numpy(gt)[None])
            samples.append(sample)
        batches.append(dict(inputs=inputs, data_samples=samples))
    return batches


def best_time(function, repeat):
    best = float('inf')
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None):
    args = parse_args(argv)
    from mmseg.registry import METRICS, MODELS

    import posattack  # noqa: F401  registers RegionIoUMetric
    from posattack.evaluation.metric import region_confusion
    from posattack.evaluation.regions import build_region_masks

    cfg = Config.fromfile(args.config)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    height, width = args.size or tuple(cfg.get('crop_size', (128, 256)))
    torch.manual_seed(args.seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.eval()
    num_classes = model.decode_head.num_classes
    classes = tuple(f'class_{k}' for k in range(num_classes))
    batches = make_batches(args.num_images, args.batch_size, height, width, num_classes,
                           args.seed)

    with torch.no_grad():
        outputs = [model.test_step(batch) for batch in batches]  # warm-up, and the outputs

        def test_pass():
            for batch in batches:
                model.test_step(batch)

        forward_s = best_time(test_pass, args.repeat)

    # what an Evaluator hands to metric.process: the samples as dicts
    output_dicts = [[sample.to_dict() for sample in output] for output in outputs]

    def metric_pass(metric_cfg):
        metric = METRICS.build(metric_cfg)
        metric.dataset_meta = dict(classes=classes)

        def run():
            metric.results.clear()
            for output in output_dicts:
                metric.process(None, output)

        run()  # warm-up: builds and caches the region masks for this size
        return best_time(run, args.repeat), metric

    region_s, region_metric = metric_pass(dict(type='RegionIoUMetric', regions=args.regions))
    mmseg_s, _ = metric_pass(dict(type='IoUMetric'))

    # the same confusions without the cached pieces: one bincount over every (region, pixel)
    names, masks = build_region_masks(region_metric.region_specs, height, width)
    plain_masks = masks.copy()
    pairs = [(sample.pred_sem_seg.data, sample.gt_sem_seg.data)
             for output in outputs for sample in output]
    direct_s = best_time(
        lambda: [region_confusion(p, g, plain_masks, num_classes) for p, g in pairs],
        args.repeat)

    ratio = region_s / forward_s
    per_image = 1000 / args.num_images
    print(f'images: {args.num_images} of {height}x{width}, batch {args.batch_size}, '
          f'{len(names)} regions {args.regions}, torch threads {torch.get_num_threads()}')
    print(f'test step (model)            {forward_s:8.4f} s  {forward_s * per_image:8.3f} ms/img')
    print(f'RegionIoUMetric.process      {region_s:8.4f} s  {region_s * per_image:8.3f} ms/img')
    print(f'  direct (region, pixel) path {direct_s:7.4f} s  {direct_s * per_image:8.3f} ms/img')
    print(f'mmseg IoUMetric.process      {mmseg_s:8.4f} s  {mmseg_s * per_image:8.3f} ms/img')
    print(f'ratio RegionIoUMetric / test step: {ratio:.2%}')
    if args.max_ratio is not None and ratio > args.max_ratio:
        print(f'FAIL: ratio above {args.max_ratio:.2%}')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
