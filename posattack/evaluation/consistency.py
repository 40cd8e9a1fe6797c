"""Shift consistency over a test set: Cons.s and agreement mIoU, overall and per region.

For each test image, ``trials`` pairs of crops per max shift s, offset by (dy, dx) with
|dy|, |dx| <= s (crops are (H - s) x (W - s) of the network input); Cons.s is the percentage
of the pixels both crops see whose predicted label agrees, agreement_mIoU.s the mIoU of one
crop's labels against the other's there, each also per region (center vs periphery...).
The same seed gives the same crops. This is what tools/consistency.py runs: the crops come
from :class:`~posattack.training.shift_crops.ShiftConsistencyPairs` appended to the test
pipeline, the pairs go through :class:`~.shift_consistency.ShiftPairTTAModel`, and
:class:`~.shift_consistency.ShiftConsistencyMetric` scores them (distributed runs collect
through MMEngine's evaluator).

Usage::

    result = run_consistency(ConsistencyOptions('config.py', 'ckpt.pth', 'work_dirs/cons'))
    result['metrics']['Cons.8']
"""
from __future__ import annotations

import os.path as osp
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

import torch
from mmengine.dist import get_dist_info, is_main_process
from mmengine.evaluator import Evaluator
from mmengine.logging import print_log
from mmengine.utils import ProgressBar

from ..data.dataloader import build_test_dataloader
from ..models.builder import load_segmentor
from ..models.non_finite import NonFiniteWatch
from ..training.shift_crops import ShiftConsistencyPairs
from ..utils.fileio import file_sha256, write_json_atomic
from ..utils.output_folder import claim_output_folder
from ..utils.owned_files import claim_folder
from ..utils.run_options import ModelRunOptions
from .shift_consistency import ShiftConsistencyMetric, ShiftPairTTAModel

__all__ = ['CONSISTENCY_FORMAT', 'ConsistencyOptions', 'run_consistency']

CONSISTENCY_FORMAT = 'posattack.consistency/1'
CONSISTENCY_OUTPUTS = ('consistency.json', 'consistency_details.json')


def _older_consistency_file(data) -> bool:
    """consistency.json of a posattack from before its format field."""
    return isinstance(data, dict) and {'max_shifts', 'trials', 'metrics'} <= set(data)


def _claim_work_dir(work_dir: str) -> list:
    """The work dir's manifest: a non-empty folder posattack did not write is refused (a
    fresh run used to replace a user's files of the same names without a word)."""
    legacy = [(name, _older_consistency_file) for name in CONSISTENCY_OUTPUTS[:1]]
    return [claim_folder(work_dir, '--work-dir', legacy=legacy,
                         legacy_outputs=CONSISTENCY_OUTPUTS)]


@dataclass
class ConsistencyOptions(ModelRunOptions):
    """What tools/consistency.py's arguments say (see its --help)."""
    max_shifts: Sequence[int] = (8, 16)
    trials: int = 1
    seed: int = 0
    regions: Sequence[Union[str, dict]] = field(default_factory=lambda: ['paper'])


def run_consistency(opts: ConsistencyOptions) -> dict:
    """Measure; write consistency.json (settings and metrics) and consistency_details.json
    (pixels and per-class agreement IoU per region) into the work dir; return the former."""
    # the transform checks max shifts, trials and seed before anything heavy happens
    views = ShiftConsistencyPairs(max_shifts=opts.max_shifts, trials=opts.trials, seed=opts.seed)
    metric = ShiftConsistencyMetric(regions=opts.regions,
                                    out_file=osp.join(opts.work_dir,
                                                      'consistency_details.json'))
    # Before the model: a refused folder costs nothing; every file written is recorded.
    with claim_output_folder(opts.work_dir, lambda: _claim_work_dir(opts.work_dir)):
        return _measure(opts, views, metric)


def _measure(opts: ConsistencyOptions, views: ShiftConsistencyPairs,
             metric: ShiftConsistencyMetric) -> dict:
    segmentor, cfg = load_segmentor(opts.config, opts.checkpoint, opts.cfg_options,
                                    trust_checkpoint=opts.trust_checkpoint)
    cfg.test_dataloader.dataset.pipeline = list(cfg.test_dataloader.dataset.pipeline) + [
        dict(type=ShiftConsistencyPairs, max_shifts=views.max_shifts, trials=views.trials,
             seed=views.seed)]
    dataloader = build_test_dataloader(cfg, opts.batch_size, opts.max_images)
    model = ShiftPairTTAModel(module=segmentor).eval()
    evaluator = Evaluator(metric)
    evaluator.dataset_meta = segmentor.dataset_meta
    rank, world_size = get_dist_info()
    progress = ProgressBar(len(dataloader.dataset) // world_size) if rank == 0 else None
    first_batch = True
    with torch.no_grad():
        for data in dataloader:
            if first_batch:  # NaN logits agree with themselves everywhere: Cons.s = 100
                with NonFiniteWatch(segmentor) as watch:
                    outputs = model.test_step(data)
                watch.raise_if_logits_non_finite('the first test batch')
                first_batch = False
            else:
                outputs = model.test_step(data)
            evaluator.process(outputs, data)
            if progress is not None:
                for _ in range(len(data['data_samples'][0])):
                    progress.update()
    metrics = evaluator.evaluate(len(dataloader.dataset))
    result = dict(format=CONSISTENCY_FORMAT, config=osp.abspath(opts.config),
                  checkpoint=osp.abspath(opts.checkpoint),
                  checkpoint_sha256=file_sha256(opts.checkpoint),
                  max_shifts=views.max_shifts, trials=views.trials, seed=views.seed,
                  regions=metric.region_specs, num_images=len(dataloader.dataset),
                  metrics=metrics)
    if is_main_process():
        write_json_atomic(osp.join(opts.work_dir, 'consistency.json'), result)
        summary = ', '.join(f'Cons.{s} {metrics[f"Cons.{s}"]:.2f}' for s in views.max_shifts)
        print_log(f'{summary}; written to {osp.join(opts.work_dir, "consistency.json")}',
                  'posattack')
    return result
