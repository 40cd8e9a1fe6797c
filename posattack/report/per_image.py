"""Per-image counts that let a report resample images, and the paired bootstrap over them.

mIoU is not a mean over images: it is computed from intersections and areas summed over
images (``IoU_k = TP_k / (GT_k + PRED_k - TP_k)``). So resampling images means resampling
those three count vectors, not per-image scores. Per image, region and class we keep

* ``gt``   pixels labelled k (the same for every setting),
* ``tp``   pixels labelled k and predicted k, per setting,
* ``pred`` pixels predicted k among labelled pixels, per setting,

which is 2K numbers per (image, setting, region) instead of a K x K confusion, and only for
the regions that statistical tests read (:data:`TEST_REGIONS`). A bootstrap resample is a
vector of image multiplicities ``w`` (B x n, rows sum to n); ``w @ tp`` gives every
resample's summed counts in one matrix product, and every setting sees the same ``w``
(the *paired* bootstrap: the noise of "which images" cancels in a difference of settings).

Images are ordered by their path, so the counts (and hence every interval) do not depend
on how the dataset was sharded across processes or batched.
"""
from __future__ import annotations

import io
import os
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from mmengine import dist

from ..utils.fileio import write_bytes_atomic

TEST_REGIONS = ('full', 'center', 'periphery', 'left', 'right', 'top', 'bottom')
PER_IMAGE_FORMAT = 'posattack.per_image/1'


@dataclass
class PerImageCounts:
    """Counts per image (sorted by path), region and class; see the module docstring."""
    images: list[str]
    regions: list[str]
    gt: np.ndarray                                            # (n, R, K)
    tp: dict[str, np.ndarray] = field(default_factory=dict)   # key -> (n, R, K)
    pred: dict[str, np.ndarray] = field(default_factory=dict)
    # sha256 of the fingerprint of the run that wrote the file (None: written before it was
    # recorded); see posattack.attack.resume_files
    run_sha256: Optional[str] = None

    @property
    def keys(self) -> list[str]:
        return list(self.tp)

    def merged(self, other: Optional['PerImageCounts']) -> 'PerImageCounts':
        """These settings plus ``other``'s (ours win); both must cover the same images."""
        if other is None or not other.tp:
            return self
        if not self.tp:
            return other
        if other.images != self.images or other.regions != self.regions \
                or other.gt.shape != self.gt.shape or not np.array_equal(other.gt, self.gt):
            raise ValueError('the per-image counts of the earlier run cover other images, '
                             'regions or labels than this run: the work dir belongs to '
                             'another dataset; use another --work-dir or drop --resume.')
        return PerImageCounts(self.images, self.regions, self.gt,
                              {**other.tp, **self.tp}, {**other.pred, **self.pred})

    def check_shapes(self) -> None:
        """Every array (n images, R regions, K classes), as the lists say."""
        if self.gt.ndim != 3 or self.gt.shape[:2] != (len(self.images), len(self.regions)):
            raise ValueError(f'gt has shape {self.gt.shape} for {len(self.images)} images '
                             f'and {len(self.regions)} regions')
        if set(self.tp) != set(self.pred) or any(
                array.shape != self.gt.shape for array in [*self.tp.values(),
                                                           *self.pred.values()]):
            raise ValueError('the per-setting counts do not match the labelled pixels')

    def save(self, path: str, run_sha256: Optional[str] = None) -> str:
        """Atomic, compressed ``.npz`` (mostly zeros: classes absent from an image)."""
        keys = self.keys
        shape = (0, ) + self.gt.shape
        buffer = io.BytesIO()
        provenance = {} if run_sha256 is None else dict(run_sha256=np.array(run_sha256))
        np.savez_compressed(
            buffer, **provenance, format=np.array(PER_IMAGE_FORMAT), images=np.array(self.images),
            regions=np.array(self.regions), keys=np.array(keys, dtype=str), gt=self.gt,
            tp=np.stack([self.tp[k] for k in keys]) if keys else np.zeros(shape, np.uint32),
            pred=np.stack([self.pred[k] for k in keys]) if keys else np.zeros(shape, np.uint32))
        return write_bytes_atomic(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str) -> 'PerImageCounts':
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data['format']) != PER_IMAGE_FORMAT:
                    raise ValueError(f'format {str(data["format"])!r}')
                keys = [str(k) for k in data['keys']]
                counts = cls([str(i) for i in data['images']],
                             [str(r) for r in data['regions']], data['gt'],
                             dict(zip(keys, data['tp'])), dict(zip(keys, data['pred'])),
                             str(data['run_sha256']) if 'run_sha256' in data.files else None)
                counts.check_shapes()
                return counts
        # a truncated file is a BadZipFile or an EOFError, a damaged member a zlib.error
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile,
                zlib.error) as error:
            raise ValueError(f'{path!r} is not a posattack per-image counts file ({error}); '
                             'delete it and rerun with --resume to recompute the settings.'
                             ) from error


class PerImageRecorder:
    """Collects one process's per-image counts during a sweep pass, then gathers them."""

    def __init__(self, region_names: Sequence[str]):
        self.all_regions = list(region_names)
        self.regions = [r for r in TEST_REGIONS if r in self.all_regions]
        self._rows = [self.all_regions.index(r) for r in self.regions]
        self.gt: dict[str, np.ndarray] = {}
        self.tp: dict[tuple[str, str], np.ndarray] = {}
        self.pred: dict[tuple[str, str], np.ndarray] = {}

    def add(self, key: str, image: str, conf: np.ndarray) -> None:
        """``conf``: the image's (all regions, K, K) confusion, gt rows x prediction columns."""
        conf = conf[self._rows]
        if image not in self.gt:
            self.gt[image] = conf.sum(axis=2).astype(np.uint32)
        self.tp[key, image] = np.diagonal(conf, axis1=1, axis2=2).astype(np.uint32)
        self.pred[key, image] = conf.sum(axis=1).astype(np.uint32)

    def gather(self, keys: Sequence[str]) -> PerImageCounts:
        """Every process's counts for ``keys``, on every process, images sorted by path."""
        parts = dist.all_gather_object((self.gt, self.tp, self.pred))
        gt, tp, pred = {}, {}, {}
        for part_gt, part_tp, part_pred in parts:
            gt.update(part_gt)
            tp.update(part_tp)
            pred.update(part_pred)
        images = sorted(gt)
        num_classes = next(iter(gt.values())).shape[-1] if gt else 0
        stacked_gt = np.stack([gt[i] for i in images]) if images else np.zeros(
            (0, len(self.regions), num_classes), np.uint32)
        counts = PerImageCounts(images, list(self.regions), stacked_gt)
        for key in keys:
            counts.tp[key] = np.stack([tp[key, i] for i in images]) if images else stacked_gt
            counts.pred[key] = np.stack([pred[key, i] for i in images]) if images else stacked_gt
        return counts


def miou_from_counts(tp: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """mIoU in percent over the last axis (classes); classes with an empty union left out.

    The same rule as mmseg's IoUMetric (and
    :func:`posattack.evaluation.metric.summarize_confusion`): a class absent from both labels
    and prediction is NaN and not averaged; all-NaN is NaN.
    """
    tp = np.asarray(tp, dtype=np.float64)
    union = np.asarray(gt, dtype=np.float64) + np.asarray(pred, dtype=np.float64) - tp
    with np.errstate(divide='ignore', invalid='ignore'):
        iou = np.where(union > 0, tp / union, np.nan)
    present = np.isfinite(iou)
    count = present.sum(axis=-1)
    total = np.where(present, iou, 0.0).sum(axis=-1)
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(count > 0, 100.0 * total / count, np.nan)


def resample_weights(num_images: int, num_resamples: int, seed: int) -> np.ndarray:
    """(B, n) image multiplicities of B bootstrap resamples (each row sums to n), seeded."""
    rng = np.random.Generator(np.random.PCG64(seed))
    picks = rng.integers(0, num_images, size=(num_resamples, num_images))
    rows = np.repeat(np.arange(num_resamples), num_images)
    weights = np.zeros((num_resamples, num_images), dtype=np.float64)
    np.add.at(weights, (rows, picks.ravel()), 1.0)
    return weights


class PairedBootstrap:
    """mIoU of any setting and region: the point estimate and B paired resamples.

    Usage::

        boot = PairedBootstrap(counts, num_resamples=2000, seed=0)
        point, samples = boot.miou('targeted/overall/N=13', 'periphery')   # float, (B,)
    """

    def __init__(self, counts: PerImageCounts, num_resamples: int = 2000, seed: int = 0,
                 weights: Optional[np.ndarray] = None):
        if num_resamples < 1:
            raise ValueError(f'the bootstrap needs >= 1 resample, got {num_resamples}.')
        self.counts = counts
        self.num_resamples = num_resamples
        self.seed = seed
        n = len(counts.images)
        self.weights = weights if weights is not None else resample_weights(n, num_resamples,
                                                                              seed)
        self._gt: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cache: dict[tuple[str, str], tuple[float, np.ndarray]] = {}

    def _region(self, region: str) -> int:
        if region not in self.counts.regions:
            raise KeyError(f'region {region!r} has no per-image counts (kept: '
                           f'{", ".join(self.counts.regions)}).')
        return self.counts.regions.index(region)

    def _sums(self, array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        array = array.astype(np.float64)
        return array.sum(axis=0), self.weights @ array

    def miou(self, key: str, region: str) -> tuple[float, np.ndarray]:
        if (key, region) not in self._cache:
            r = self._region(region)
            if r not in self._gt:
                self._gt[r] = self._sums(self.counts.gt[:, r])
            gt_point, gt_samples = self._gt[r]
            tp_point, tp_samples = self._sums(self.counts.tp[key][:, r])
            pred_point, pred_samples = self._sums(self.counts.pred[key][:, r])
            self._cache[key, region] = (float(miou_from_counts(tp_point, gt_point, pred_point)),
                                        miou_from_counts(tp_samples, gt_samples, pred_samples))
        return self._cache[key, region]


def per_image_path(work_dir: str) -> str:
    return os.path.join(work_dir, 'per_image.npz')
