"""Per-region segmentation scores (mIoU, mAcc, aAcc per region), as an MMSeg metric.

`RegionIoUMetric` scores every region of `posattack.evaluation.regions` (center vs periphery, border
bands, grid cells, user masks...) besides the full image, where mmseg's `IoUMetric` scores
only the full image. It keeps one small (R, K, K) confusion matrix per image, so MMEngine's
`collect_results` gathers them across processes and `compute_metrics` just sums.

Two pure helpers serve code that evaluates outside an Evaluator (the attack sweep):
`region_confusion` (one image -> (R, K, K) counts) and `summarize_confusion`
(counts -> flat metrics and per-class tables).
"""
from __future__ import annotations

import os.path as osp
from collections import OrderedDict
from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger, print_log
from mmengine.structures import BaseDataElement
from mmengine.utils import mkdir_or_exist
from mmseg.registry import METRICS
from prettytable import PrettyTable

from ..utils.fileio import write_image_atomic, write_json_atomic
from .regions import (RegionLayout, RegionSpec, build_region_layout, layout_of_masks,
                      validate_region_specs)

ALLOWED_IOU_METRICS = ('mIoU', 'mDice', 'mFscore')
_REGIONS_PER_TABLE = 8  # columns of the logged per-class-by-region tables


# ------------------------------------------------------------------------- confusion
def _label_map(labels, what: str) -> np.ndarray:
    """An (H, W) integer numpy view of a label map given as array or tensor ((1, H, W) ok)."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    while labels.ndim > 2 and labels.shape[0] == 1:
        labels = labels[0]
    if labels.ndim != 2:
        raise ValueError(f'{what} must be an (H, W) label map, got shape {labels.shape}.')
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f'{what} must hold integer class indices, got dtype {labels.dtype}.')
    return labels


def _check_pred_range(pred: np.ndarray, num_classes: int) -> None:
    # Out-of-range labels would land in another class's (or region's) bins silently.
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f'pred holds labels outside [0, {num_classes}) (min {pred.min()}, '
                         f'max {pred.max()}): the model and num_classes={num_classes} '
                         f'disagree.')


def _bad_gt_error(bad_value, num_classes: int, ignore_index: int) -> ValueError:
    return ValueError(f'gt holds label {bad_value}, outside [0, {num_classes}) and not '
                      f'ignore_index={ignore_index}: set ignore_index to that value or fix '
                      f'the dataset classes.')


def _gt_row_offsets(gt: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    """Flat int64 ``gt * K`` with ignored pixels sent to row K (a spare row dropped later).

    Checks the labels on the way: anything outside [0, K) but `ignore_index` is an error.
    """
    flat = gt.ravel()
    if ignore_index >= num_classes and flat.min() >= 0:
        # The usual case (ignore 255): min(gt, K) puts every ignored pixel on row K in one
        # pass; the labels are sound iff only ignored pixels reach K.
        num_high = np.count_nonzero(flat >= num_classes)
        if num_high != np.count_nonzero(flat == ignore_index):
            bad = flat[(flat >= num_classes) & (flat != ignore_index)][0]
            raise _bad_gt_error(bad, num_classes, ignore_index)
        rows = np.minimum(flat, num_classes).astype(np.int64)
    else:
        valid = flat != ignore_index
        out_of_range = valid & ((flat < 0) | (flat >= num_classes))
        if out_of_range.any():
            raise _bad_gt_error(flat[out_of_range][0], num_classes, ignore_index)
        rows = np.where(valid, flat, num_classes).astype(np.int64)
    rows *= num_classes
    return rows


def region_confusion(pred, gt, masks: Union[np.ndarray, RegionLayout], num_classes: int,
                     ignore_index: int = 255) -> np.ndarray:
    """Confusion matrices of every region of one image: ``conf[r, gt_class, pred_class]``.

    Pixels whose gt is `ignore_index` are left out, as mmseg's IoUMetric does. One
    ``np.bincount`` covers all regions: over (piece, gt, pred) when `masks` came from
    `build_region_masks` (or is a RegionLayout), where pieces are the disjoint pixel sets
    the overlapping regions cut the image into; else over (region, gt, pred) for every True
    of `masks`. Labels outside [0, num_classes) (gt: other than `ignore_index`) raise.

    Example::

        names, masks = build_region_masks('paper', *gt.shape)
        conf = region_confusion(pred, gt, masks, num_classes=19)  # (5, 19, 19) int64
        flat, per_class = summarize_confusion(conf, names, class_names)
    """
    pred = _label_map(pred, 'pred')
    gt = _label_map(gt, 'gt')
    if pred.shape != gt.shape:
        raise ValueError(f'pred {pred.shape} and gt {gt.shape} differ in size; mmseg scores '
                         f'both at the original image size (ori_shape).')
    layout = masks if isinstance(masks, RegionLayout) else layout_of_masks(masks)
    mask_array = layout.masks if layout is not None else np.asarray(masks, dtype=bool)
    if mask_array.ndim != 3 or mask_array.shape[1:] != gt.shape:
        raise ValueError(f'masks must be (R, H, W) with (H, W) = {gt.shape}, got '
                         f'{mask_array.shape}.')
    num_classes = int(num_classes)
    num_regions = mask_array.shape[0]
    _check_pred_range(pred, num_classes)
    # Each piece (or region) owns a block of (K + 1) x K bins: gt row, pred column, and a
    # spare gt row K for ignored pixels, cut off at the end.
    block = (num_classes + 1) * num_classes
    pixel_bins = _gt_row_offsets(gt, num_classes, ignore_index)
    pixel_bins += pred.ravel()
    if layout is not None:
        pixel_bins += layout.piece_offsets(block)
        counts = np.bincount(pixel_bins, minlength=layout.num_pieces * block)
        counts = counts.reshape(layout.num_pieces, block).astype(np.float64)
        # 0/1 membership times counts below 2**53: exact in float64, and BLAS-fast
        conf = np.rint(layout.membership @ counts).astype(np.int64)
    else:
        region_index, pixel_index = np.nonzero(mask_array.reshape(num_regions, -1))
        bins = region_index * block + pixel_bins[pixel_index]
        conf = np.bincount(bins, minlength=num_regions * block).reshape(num_regions, block)
    conf = conf.reshape(num_regions, num_classes + 1, num_classes)[:, :num_classes]
    return np.ascontiguousarray(conf)


# ----------------------------------------------------------------------- summarizing
def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio; 0/0 and x/0 give NaN, without a warning flood."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    with np.errstate(divide='ignore', invalid='ignore'):
        ratio = numerator / denominator
    return np.where(denominator == 0, np.nan, ratio)


def _nanmean(values: np.ndarray) -> float:
    """np.nanmean without its 'Mean of empty slice' warning: all-NaN gives NaN."""
    values = np.asarray(values, dtype=np.float64)
    finite = ~np.isnan(values)
    return float(values[finite].mean()) if finite.any() else float('nan')


def _class_scores(conf: np.ndarray, iou_metrics: Sequence[str], beta: float) -> 'OrderedDict':
    """aAcc and per-class arrays of one region, keyed and ordered as mmseg's IoUMetric."""
    intersect = np.diagonal(conf).astype(np.float64)
    area_gt = conf.sum(axis=1).astype(np.float64)
    area_pred = conf.sum(axis=0).astype(np.float64)
    scores = OrderedDict(aAcc=_safe_divide(intersect.sum(), area_gt.sum()))
    for metric in iou_metrics:
        if metric == 'mIoU':
            scores['IoU'] = _safe_divide(intersect, area_gt + area_pred - intersect)
            scores['Acc'] = _safe_divide(intersect, area_gt)
        elif metric == 'mDice':
            scores['Dice'] = _safe_divide(2 * intersect, area_pred + area_gt)
            scores['Acc'] = _safe_divide(intersect, area_gt)
        elif metric == 'mFscore':
            precision = _safe_divide(intersect, area_pred)
            recall = _safe_divide(intersect, area_gt)
            scores['Fscore'] = _safe_divide((1 + beta**2) * precision * recall,
                                            beta**2 * precision + recall)
            scores['Precision'] = precision
            scores['Recall'] = recall
    return scores


def _percent(value: float, decimals: Optional[int]) -> float:
    value = float(value) * 100
    return float(np.round(value, decimals)) if decimals is not None else value


def check_iou_metrics(iou_metrics: Union[str, Sequence[str]]) -> list[str]:
    metrics = [iou_metrics] if isinstance(iou_metrics, str) else list(iou_metrics)
    unknown = sorted(set(metrics) - set(ALLOWED_IOU_METRICS))
    if unknown or not metrics:
        raise ValueError(f'iou_metrics {metrics} not supported; choose from '
                         f'{list(ALLOWED_IOU_METRICS)}.')
    return metrics


def summarize_confusion(conf: np.ndarray, names: Sequence[str], class_names: Sequence[str],
                        iou_metrics: Sequence[str] = ('mIoU', ), nan_to_num=None,
                        beta: float = 1, decimals: Optional[int] = 2
                        ) -> tuple[dict[str, float], dict[str, dict[str, dict[str, float]]]]:
    """Turn summed region confusions (R, K, K) into flat scalars and per-class tables.

    Scores follow mmseg's IoUMetric, region by region: percent, rounded to `decimals`;
    classes absent from a region's gt and prediction are NaN and left out of the means;
    `nan_to_num` replaces NaN per class before averaging, as mmseg does. Flat keys: ``aAcc``,
    ``mIoU``, ``mAcc`` (...) for the region named ``full``, ``<region>.mIoU`` etc. for the
    others, and ``periphery_minus_center.mIoU`` when both regions exist. ``per_class`` is
    ``{region: {class_name: {"IoU": ..., "Acc": ...}}}``.

    Example::

        conf = sum(region_confusion(p, g, masks, 19) for p, g in pairs)
        flat, per_class = summarize_confusion(conf, names, class_names)
        flat['periphery.mIoU'], per_class['center']['road']['IoU']
    """
    conf = np.asarray(conf)
    names = list(names)
    class_names = list(class_names)
    if conf.ndim != 3 or conf.shape[0] != len(names) or conf.shape[1:] != (len(class_names), ) * 2:
        raise ValueError(f'conf must be (R, K, K) = ({len(names)}, {len(class_names)}, '
                         f'{len(class_names)}) for {len(names)} regions and {len(class_names)} '
                         f'classes, got {conf.shape}.')
    iou_metrics = check_iou_metrics(iou_metrics)
    flat: dict[str, float] = OrderedDict()
    per_class: dict[str, dict[str, dict[str, float]]] = OrderedDict()
    for region_index, region in enumerate(names):
        scores = _class_scores(conf[region_index], iou_metrics, beta)
        if nan_to_num is not None:
            scores = OrderedDict((key, np.nan_to_num(value, nan=nan_to_num))
                                 for key, value in scores.items())
        key_prefix = '' if region == 'full' else f'{region}.'
        for key, value in scores.items():
            summary_key = key if key == 'aAcc' else 'm' + key
            flat[key_prefix + summary_key] = _percent(_nanmean(value), decimals)
        per_class[region] = OrderedDict(
            (class_name, OrderedDict((key, _percent(value[class_index], decimals))
                                     for key, value in scores.items() if key != 'aAcc'))
            for class_index, class_name in enumerate(class_names))
    if 'periphery' in names and 'center' in names and 'mIoU' in iou_metrics:
        difference = flat['periphery.mIoU'] - flat['center.mIoU']
        flat['periphery_minus_center.mIoU'] = (float(np.round(difference, decimals))
                                               if decimals is not None else difference)
    return dict(flat), dict(per_class)


# -------------------------------------------------------------------------- output
def _format(value: float) -> str:
    return 'nan' if np.isnan(value) else f'{value:.2f}'


def dataset_classes(metric: BaseMetric) -> list[str]:
    """The class names a metric scores, from the dataset_meta MMEngine's Evaluator sets."""
    meta = metric.dataset_meta or {}
    if 'classes' not in meta:
        raise RuntimeError(f'{type(metric).__name__} needs dataset_meta["classes"]: run it '
                           'through an MMEngine Evaluator/Runner, or set metric.dataset_meta = '
                           'dict(classes=[...]).')
    return list(meta['classes'])


def _get(sample, key: str):
    """Field of a data sample given as a dict (from the Evaluator) or a SegDataSample."""
    if isinstance(sample, BaseDataElement):
        return sample.get(key)
    return sample.get(key) if isinstance(sample, dict) else None


def _pixel_data(sample, key: str):
    item = _get(sample, key)
    if item is None:
        return None
    return item.get('data') if isinstance(item, (dict, BaseDataElement)) else item


# -------------------------------------------------------------------------- metric
@METRICS.register_module()
class RegionIoUMetric(BaseMetric):
    """IoU/Acc per image region (center, periphery, border bands, grid cells...).

    Takes mmseg IoUMetric's arguments plus `regions` (specs of posattack.evaluation.regions;
    the full image is always scored) and `out_file` (JSON of every region's scores). Returns mmseg's
    keys for the full image (``mIoU``, ``mAcc``, ``aAcc``) and ``<region>.mIoU`` /
    ``.mAcc`` / ``.aAcc`` for every other region, plus ``periphery_minus_center.mIoU``.
    Regions are built at the evaluated size (ori_shape), cached per size.

    Example (in an MMSeg config)::

        custom_imports = dict(imports=['posattack'])
        test_evaluator = dict(type='RegionIoUMetric',
                              regions=['paper', dict(type='border', bands=4)])
    """

    def __init__(self,
                 regions: Union[RegionSpec, Sequence[RegionSpec]] = ('paper', ),
                 ignore_index: int = 255,
                 iou_metrics: Sequence[str] = ('mIoU', ),
                 nan_to_num: Optional[int] = None,
                 beta: int = 1,
                 collect_device: str = 'cpu',
                 output_dir: Optional[str] = None,
                 format_only: bool = False,
                 prefix: Optional[str] = None,
                 out_file: Optional[str] = None,
                 collect_dir: Optional[str] = None,
                 keep_results: bool = False) -> None:
        # keep_results: mmseg's tools/test.py --out sets it on any test evaluator; like
        # mmseg's IoUMetric we accept it (per-image results are confusion matrices here,
        # and --out's predictions come from the test loop's own dump).
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        specs = [regions] if isinstance(regions, (str, dict)) else list(regions)
        names = validate_region_specs(specs)
        if 'full' not in names:  # the full image is what mIoU/aAcc/mAcc report
            specs = ['full'] + specs
            names = ['full'] + names
        self.region_specs = specs
        self.region_names = names
        self.ignore_index = ignore_index
        self.iou_metrics = check_iou_metrics(iou_metrics)
        self.nan_to_num = nan_to_num
        self.beta = beta
        if out_file is not None and not str(out_file).endswith('.json'):
            raise ValueError(f'out_file must end with .json, got {out_file!r}.')
        self.out_file = out_file
        self.output_dir = output_dir
        if self.output_dir and is_main_process():
            mkdir_or_exist(self.output_dir)
        self.format_only = format_only

    @property
    def class_names(self) -> list[str]:
        return dataset_classes(self)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Append one (R, K, K) int64 confusion per image to ``self.results``."""
        num_classes = len(self.class_names)
        for data_sample in data_samples:
            pred = _pixel_data(data_sample, 'pred_sem_seg')
            if pred is None:
                raise KeyError('RegionIoUMetric needs "pred_sem_seg" in every data sample '
                               '(the output of a segmentor in predict/test mode).')
            if not self.format_only:
                gt = _pixel_data(data_sample, 'gt_sem_seg')
                if gt is None:
                    raise KeyError('RegionIoUMetric needs "gt_sem_seg": load annotations in '
                                   'the test pipeline, or set format_only=True.')
                gt = _label_map(gt, 'gt')
                layout = build_region_layout(self.region_specs, *gt.shape)
                self.results.append(
                    region_confusion(pred, gt, layout, num_classes, self.ignore_index))
            if self.output_dir is not None:
                self._save_prediction(data_sample, pred)

    def _save_prediction(self, data_sample, pred) -> None:
        basename = osp.splitext(osp.basename(_get(data_sample, 'img_path')))[0]
        labels = _label_map(pred, 'pred')
        if _get(data_sample, 'reduce_zero_label'):
            labels = labels + 1  # back to the dataset's own label ids, like mmseg
        write_image_atomic(osp.abspath(osp.join(self.output_dir, f'{basename}.png')),
                          labels.astype(np.uint8))

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Sum the per-image confusions, then score, log and (out_file) save every region."""
        logger: MMLogger = MMLogger.get_current_instance()
        if self.format_only:
            if self.output_dir is not None:
                logger.info(f'results are saved to {osp.abspath(self.output_dir)}')
            return OrderedDict()
        class_names = self.class_names
        total = np.zeros((len(self.region_names), len(class_names), len(class_names)),
                         dtype=np.int64)
        for conf in results:
            total += conf
        flat, per_class = summarize_confusion(total, self.region_names, class_names,
                                              self.iou_metrics, self.nan_to_num, self.beta)
        num_pixels = total.sum(axis=(1, 2))
        self._log_tables(flat, per_class, num_pixels, class_names, logger)
        if self.out_file is not None:
            self._write_out_file(flat, per_class, num_pixels, class_names, len(results))
            print_log(f'region scores written to {self.out_file}', logger)
        return flat

    def _summary_keys(self) -> list[str]:
        keys = ['aAcc']
        for metric in self.iou_metrics:
            keys += {'mIoU': ['mIoU', 'mAcc'], 'mDice': ['mDice', 'mAcc'],
                     'mFscore': ['mFscore', 'mPrecision', 'mRecall']}[metric]
        return list(OrderedDict.fromkeys(keys))

    def _region_summary(self, flat: dict, region: str) -> dict[str, float]:
        key_prefix = '' if region == 'full' else f'{region}.'
        return OrderedDict((key, flat[key_prefix + key]) for key in self._summary_keys())

    def _log_tables(self, flat, per_class, num_pixels, class_names, logger) -> None:
        full_table = PrettyTable()
        full_table.add_column('Class', class_names)
        for key in per_class['full'][class_names[0]]:
            full_table.add_column(key, [_format(per_class['full'][c][key]) for c in class_names])
        print_log('per class results (full image):', logger)
        print_log('\n' + full_table.get_string(), logger=logger)

        region_table = PrettyTable()
        region_table.field_names = ['Region', 'Pixels'] + self._summary_keys()
        for region, pixels in zip(self.region_names, num_pixels):
            summary = self._region_summary(flat, region)
            region_table.add_row([region, int(pixels)] + [_format(v) for v in summary.values()])
        print_log('per region results:', logger)
        print_log('\n' + region_table.get_string(), logger=logger)

        iou_key = next(iter(per_class['full'][class_names[0]]))
        print_log(f'per class {iou_key} by region:', logger)
        for start in range(0, len(self.region_names), _REGIONS_PER_TABLE):  # readable widths
            class_table = PrettyTable()
            class_table.add_column('Class', class_names)
            for region in self.region_names[start:start + _REGIONS_PER_TABLE]:
                class_table.add_column(region, [_format(per_class[region][c][iou_key])
                                                for c in class_names])
            print_log('\n' + class_table.get_string(), logger=logger)

    def _write_out_file(self, flat, per_class, num_pixels, class_names, num_images) -> None:
        payload = OrderedDict(
            classes=class_names,
            ignore_index=self.ignore_index,
            num_images=num_images,
            region_specs=self.region_specs,
            metrics=flat,
            regions=OrderedDict(
                (region, OrderedDict(num_pixels=int(pixels),
                                     **self._region_summary(flat, region),
                                     per_class=per_class[region]))
                for region, pixels in zip(self.region_names, num_pixels)),
        )
        write_json_atomic(self.out_file, payload)
