"""Shift consistency of a segmentor: do two shifted crops of one image get the same labels?

The measurement the paper reports as Cons.8 / Cons.16 (Table 2, for classification), for
segmentation: for each image, crops A and B at a random offset (|dy|, |dx| <= max shift,
:class:`posattack.ShiftConsistencyPairs`); Cons.s is the percentage of the pixels both crops
see whose predicted label is the same in both. ``agreement_mIoU.s`` is the mIoU of B's
labels against A's on those pixels (a class that covers little area weighs as much as road),
and every region of :mod:`posattack.evaluation.regions` (placed on the whole image) gets both.

It runs through MMEngine's test-time-augmentation machinery: the transform yields the crops
as views, :class:`ShiftPairTTAModel` runs the segmentor on each view and pairs the
predictions, :class:`ShiftConsistencyMetric` scores them. ``tools/consistency.py`` wires it
up for any MMSeg config; with mmseg's own tools/test.py use ``--tta`` and::

    tta_model = dict(type='posattack.ShiftPairTTAModel')
    tta_pipeline = test_pipeline + [dict(type='posattack.ShiftConsistencyPairs',
                                         max_shifts=(8, 16), trials=1, seed=0)]
    test_evaluator = dict(type='posattack.ShiftConsistencyMetric', regions=['paper'])
"""
from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger, print_log
from mmengine.model import BaseTTAModel
from mmseg.registry import METRICS, MODELS
from mmseg.structures import SegDataSample
from prettytable import PrettyTable

from ..training.shift_crops import SHIFT_CROP_KEY, overlap_slices
from ..utils.fileio import write_json_atomic
from .metric import dataset_classes, region_confusion, summarize_confusion
from .regions import RegionSpec, build_region_layout, validate_region_specs

__all__ = ['ShiftConsistencyMetric', 'ShiftPairTTAModel', 'pair_confusion']


@MODELS.register_module()
class ShiftPairTTAModel(BaseTTAModel):
    """Runs the segmentor on every shifted view and pairs the predictions up per image.

    Each returned data sample carries ``shift_pairs``: one dict per (max shift, trial) with
    both crops' corners, the source image size and both label maps.
    """

    def merge_preds(self, data_samples_list: list[list[SegDataSample]]) -> list[SegDataSample]:
        merged = []
        for views in data_samples_list:
            crops: dict[tuple[int, int], dict[int, SegDataSample]] = defaultdict(dict)
            for view in views:
                info = view.metainfo.get(SHIFT_CROP_KEY)
                if info is None:
                    raise ValueError('ShiftPairTTAModel needs views from '
                                     "dict(type='posattack.ShiftConsistencyPairs') at the end "
                                     'of the test (tta) pipeline.')
                crops[(info['max_shift'], info['trial'])][info['member']] = view
            pairs = []
            for (max_shift, trial), members in sorted(crops.items()):
                view_a, view_b = members[0], members[1]
                info_a, info_b = view_a.metainfo[SHIFT_CROP_KEY], view_b.metainfo[SHIFT_CROP_KEY]
                pairs.append(dict(
                    max_shift=int(max_shift), trial=int(trial),
                    origin_a=tuple(info_a['origin']), origin_b=tuple(info_b['origin']),
                    source_shape=tuple(info_a['source_shape']),
                    pred_a=view_a.pred_sem_seg.data.squeeze(0).cpu(),
                    pred_b=view_b.pred_sem_seg.data.squeeze(0).cpu()))
            first = views[0]
            metainfo = {key: value for key, value in first.metainfo.items()
                        if key != SHIFT_CROP_KEY}
            sample = SegDataSample(metainfo=metainfo)
            sample.shift_pairs = pairs
            merged.append(sample)
        return merged


def pair_confusion(pred_a, pred_b, origin_a, origin_b, source_shape, layout,
                   num_classes: int) -> np.ndarray:
    """Confusion (R, K, K) of B's labels (columns) against A's (rows) where both crops see.

    Regions are placed on the source image: a pixel both crops see counts in the regions
    its source position lies in.
    """
    pred_a = np.asarray(pred_a.numpy() if isinstance(pred_a, torch.Tensor) else pred_a)
    pred_b = np.asarray(pred_b.numpy() if isinstance(pred_b, torch.Tensor) else pred_b)
    if pred_a.shape != pred_b.shape:
        raise ValueError(f'the two crops\' predictions differ in size ({pred_a.shape} vs '
                         f'{pred_b.shape}); shift pairs are crops of one size.')
    in_a, in_b, in_source = overlap_slices(origin_a, origin_b, pred_a.shape)
    # Lay both crops' common pixels onto the source image; every other source pixel is
    # "ignored" (label K), so the cached whole-image region layout applies as is.
    labels_a = np.full(tuple(source_shape), num_classes, dtype=np.int64)
    labels_b = np.zeros(tuple(source_shape), dtype=np.int64)
    labels_a[in_source] = pred_a[in_a]
    labels_b[in_source] = pred_b[in_b]
    return region_confusion(labels_b, labels_a, layout, num_classes, ignore_index=num_classes)


@METRICS.register_module()
class ShiftConsistencyMetric(BaseMetric):
    """Cons.s (label agreement, %) and agreement mIoU of shifted crop pairs, per region.

    Keys, for each max shift s: ``Cons.s``, ``agreement_mIoU.s``, ``<region>.Cons.s``,
    ``<region>.agreement_mIoU.s``, ``periphery_minus_center.Cons.s`` (when both regions
    are asked for) and, with several trials, ``Cons.s.trial_std`` (standard deviation of
    Cons.s over the trials, each trial one crop pair per image).
    """

    def __init__(self,
                 regions: Union[RegionSpec, Sequence[RegionSpec]] = ('paper', ),
                 out_file: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None,
                 keep_results: bool = False) -> None:
        # keep_results: mmseg's tools/test.py --out sets it on any test evaluator; per-image
        # results here are confusion matrices, so there is nothing more to keep
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        specs = [regions] if isinstance(regions, (str, dict)) else list(regions)
        names = validate_region_specs(specs)
        if 'full' not in names:
            specs, names = ['full'] + specs, ['full'] + names
        self.region_specs = specs
        self.region_names = names
        if out_file is not None and not str(out_file).endswith('.json'):
            raise ValueError(f'out_file must end with .json, got {out_file!r}.')
        self.out_file = out_file

    @property
    def class_names(self) -> list[str]:
        return dataset_classes(self)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Append one {(max shift, trial): (R, K, K) confusion} per image."""
        num_classes = len(self.class_names)
        for data_sample in data_samples:
            pairs = data_sample.get('shift_pairs') if isinstance(data_sample, dict) \
                else getattr(data_sample, 'shift_pairs', None)
            if pairs is None:
                raise KeyError('ShiftConsistencyMetric needs "shift_pairs" in every data '
                               'sample: run the segmentor wrapped in '
                               "dict(type='posattack.ShiftPairTTAModel') on views from "
                               "dict(type='posattack.ShiftConsistencyPairs').")
            confusions = {}
            for pair in pairs:
                layout = build_region_layout(self.region_specs, *pair['source_shape'])
                confusions[(pair['max_shift'], pair['trial'])] = pair_confusion(
                    pair['pred_a'], pair['pred_b'], pair['origin_a'], pair['origin_b'],
                    pair['source_shape'], layout, num_classes)
            self.results.append(confusions)

    def compute_metrics(self, results: list) -> dict[str, float]:
        logger: MMLogger = MMLogger.get_current_instance()
        class_names = self.class_names
        shape = (len(self.region_names), len(class_names), len(class_names))
        per_trial: dict[tuple[int, int], np.ndarray] = defaultdict(
            lambda: np.zeros(shape, dtype=np.int64))
        for confusions in results:
            for key, conf in confusions.items():
                per_trial[key] += conf
        metrics: dict[str, float] = OrderedDict()
        details = OrderedDict()
        for max_shift in sorted({shift for shift, _ in per_trial}):
            trials = sorted(trial for shift, trial in per_trial if shift == max_shift)
            total = sum(per_trial[(max_shift, trial)] for trial in trials)
            flat, per_class = summarize_confusion(total, self.region_names, class_names)
            for region in self.region_names:
                prefix = '' if region == 'full' else f'{region}.'
                metrics[f'{prefix}Cons.{max_shift}'] = flat[f'{prefix}aAcc']
                metrics[f'{prefix}agreement_mIoU.{max_shift}'] = flat[f'{prefix}mIoU']
            if 'periphery' in self.region_names and 'center' in self.region_names:
                metrics[f'periphery_minus_center.Cons.{max_shift}'] = round(
                    metrics[f'periphery.Cons.{max_shift}'] - metrics[f'center.Cons.{max_shift}'],
                    2)
            if len(trials) > 1:
                # 'full' is not always the first region (e.g. regions=['border', 'paper'])
                full = self.region_names.index('full')
                trial_cons = [summarize_confusion(per_trial[(max_shift, t)][full:full + 1],
                                                  ['full'], class_names,
                                                  decimals=None)[0]['aAcc']
                              for t in trials]
                metrics[f'Cons.{max_shift}.trial_std'] = round(float(np.std(trial_cons)), 2)
            details[max_shift] = dict(
                trials=len(trials),
                num_pixels={region: int(pixels) for region, pixels
                            in zip(self.region_names, total.sum(axis=(1, 2)))},
                per_class_IoU={region: {name: scores['IoU'] for name, scores in table.items()}
                               for region, table in per_class.items()})
        self._log_table(metrics, details)
        if self.out_file is not None:
            write_json_atomic(self.out_file, OrderedDict(
                classes=class_names, num_images=len(results), region_specs=self.region_specs,
                metrics=metrics, max_shifts=details))
            print_log(f'shift consistency written to {self.out_file}', logger)
        return metrics

    def _log_table(self, metrics: dict, details: dict) -> None:
        table = PrettyTable()
        table.field_names = ['Region'] + [f'{name}.{shift}' for shift in details
                                          for name in ('Cons', 'agreement_mIoU')]
        for region in self.region_names:
            prefix = '' if region == 'full' else f'{region}.'
            table.add_row([region] + [f'{metrics[f"{prefix}{name}.{shift}"]:.2f}'
                                      for shift in details
                                      for name in ('Cons', 'agreement_mIoU')])
        print_log('shift consistency (% of overlap pixels whose label agrees):', 'current')
        print_log('\n' + table.get_string(), 'current')
