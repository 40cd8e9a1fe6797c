"""Worker for tests/test_evaluation/test_metrics_distributed.py: RegionIoUMetric under torchrun
on CPU.

    python -m torch.distributed.run --standalone --nproc_per_node 2 \
        tests/helpers/region_metric_dist_worker.py OUT.json

Every rank builds the same deterministic samples, keeps its DistributedSampler share
(padded to equal length, as the sampler does), and evaluates through MMEngine's Evaluator,
so BaseMetric.evaluate -> collect_results must gather the per-image confusions and drop the
padding. Rank 0 writes the metrics to OUT.json.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

NUM_SAMPLES = 7  # odd: the sampler pads one duplicate that collect_results must drop
SIZE = (24, 40)
CLASSES = tuple(f'class_{k}' for k in range(5))
REGIONS = ['paper', dict(type='border', bands=3), dict(type='grid', rows=2, cols=2)]


def make_samples():
    """The same SegDataSamples on every rank (seeded)."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    rng = np.random.default_rng(0)
    samples = []
    for index in range(NUM_SAMPLES):
        gt = rng.integers(0, len(CLASSES), SIZE)
        gt[rng.random(SIZE) < 0.1] = 255
        # images differ in quality, so a double-counted image would move the scores
        pred = np.where(rng.random(SIZE) < index / NUM_SAMPLES, np.where(gt == 255, 0, gt),
                        rng.integers(0, len(CLASSES), SIZE))
        data_sample = SegDataSample(metainfo=dict(img_path=f'img_{index}.png', ori_shape=SIZE))
        data_sample.pred_sem_seg = PixelData(data=torch.from_numpy(pred)[None])
        data_sample.gt_sem_seg = PixelData(data=torch.from_numpy(gt)[None])
        samples.append(data_sample)
    return samples


def evaluate_share(samples, rank, world_size, batch_size=2):
    """Evaluate this rank's share of `samples` and return the (collected) metrics."""
    from mmengine.evaluator import Evaluator

    import posattack.evaluation.metric  # noqa: F401  registers RegionIoUMetric
    indices = list(range(len(samples)))
    padded = indices + indices[:(-len(indices)) % world_size]
    share = [samples[i] for i in padded[rank::world_size]]
    from mmseg.registry import METRICS
    evaluator = Evaluator(METRICS.build(dict(type='RegionIoUMetric', regions=REGIONS)))
    evaluator.dataset_meta = dict(classes=CLASSES)
    for start in range(0, len(share), batch_size):
        evaluator.process(data_samples=share[start:start + batch_size], data_batch=None)
    return evaluator.evaluate(len(samples))


def main(out_path):
    import torch.distributed as dist
    from mmengine.dist import get_dist_info
    dist.init_process_group('gloo')  # mmengine's init_dist needs CUDA
    rank, world_size = get_dist_info()
    metrics = evaluate_share(make_samples(), rank, world_size)
    if rank == 0:
        tmp_path = f'{out_path}.tmp'
        with open(tmp_path, 'w') as stream:
            json.dump(dict(world_size=world_size, metrics=metrics), stream)
        os.replace(tmp_path, out_path)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
    # Now and then the interpreter's own teardown aborts in a gloo/c10d thread destructor
    # ("terminate called without an active exception") after all work is done and the
    # group destroyed; skip that teardown so the exit status reflects the test alone.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

