"""How well a predicted map matches its target: Spearman correlation (SPC) and mean absolute
error (MAE), per image, and their means with a bootstrap interval over images.

SPC is Spearman's rho over the pixels of one image, as ``scipy.stats.spearmanr(pred.ravel(),
target.ravel())`` computes it (Pearson correlation of average ranks, ties shared), the
authors' metric. The target's ranks are computed once per map (``TargetRanks``), the
prediction's per image. One convention where scipy answers NaN: a prediction that does not
vary (range below ``CONSTANT_RANGE``: every pixel the same up to float32 rounding) orders no
pixel and gets SPC 0, as the ICLR paper reports for PosENet on black and white images; such
images are counted (``constant``) so a reader sees how many.

MAE is mean |pred - target| with both in [0, 1] (the read-out ends in a sigmoid).

Usage::

    ranks = TargetRanks(target)                       # target (H, W)
    scores = image_scores(predictions, ranks)         # predictions (N, H, W) -> spc, mae (N,)
    summary = summarize(scores, num_resamples=2000, seed=0)
    summary['spc']['estimate'], summary['spc']['ci95']
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from scipy.stats import rankdata

from ..report.statistics import percentile_interval

__all__ = ['CONSTANT_RANGE', 'TargetRanks', 'image_scores', 'mean_with_interval', 'spearman',
           'summarize']

CONSTANT_RANGE = 1e-6   # sigmoid outputs: float32 resolution near 0.5 is 6e-8


class TargetRanks:
    """The average ranks of a target map, centred and scaled once for every prediction."""

    def __init__(self, target: torch.Tensor):
        values = np.asarray(target, dtype=np.float64).ravel()
        ranks = rankdata(values)
        centred = ranks - ranks.mean()
        norm = np.sqrt((centred ** 2).sum())
        if norm == 0:
            raise ValueError('a constant target map has no ranks to correlate with.')
        self.values = values
        self.unit = centred / norm
        self.shape = tuple(target.shape)


def spearman(prediction: np.ndarray, ranks: TargetRanks) -> tuple[float, bool]:
    """(SPC, whether the prediction is constant) of one predicted map against ``ranks``."""
    values = np.asarray(prediction, dtype=np.float64).ravel()
    if values.size != ranks.unit.size:
        raise ValueError(f'prediction of {values.size} pixels vs a target of {ranks.unit.size}.')
    if not np.all(np.isfinite(values)):
        raise ValueError('the read-out predicted NaN or inf; lower --lr or check the features.')
    if values.max() - values.min() <= CONSTANT_RANGE:
        return 0.0, True
    own = rankdata(values)
    centred = own - own.mean()
    return float(np.dot(centred, ranks.unit) / np.sqrt((centred ** 2).sum())), False


def image_scores(predictions: torch.Tensor, ranks: TargetRanks) -> dict[str, np.ndarray]:
    """Per image: ``spc``, ``mae`` (float arrays) and ``constant`` (bool array)."""
    predictions = predictions.detach().double().cpu().numpy().reshape(len(predictions), -1)
    pairs = [spearman(p, ranks) for p in predictions]
    spc = [value for value, _ in pairs]
    constant = [flat for _, flat in pairs]
    mae = np.abs(predictions - ranks.values[None]).mean(axis=1)
    return dict(spc=np.asarray(spc, dtype=np.float64), mae=np.asarray(mae, dtype=np.float64),
                constant=np.asarray(constant, dtype=bool))


def mean_with_interval(values: np.ndarray, num_resamples: int, seed: int) -> dict:
    """Mean of ``values`` and its percentile bootstrap 95% interval over the images (None for
    a single image: one black image has no spread to resample)."""
    values = np.asarray(values, dtype=np.float64)
    out: dict = dict(estimate=float(values.mean()) if len(values) else None, ci95=None,
                     num_images=int(len(values)))
    if len(values) > 1 and num_resamples > 0:
        rng = np.random.default_rng(seed)
        index = rng.integers(0, len(values), size=(num_resamples, len(values)))
        out['ci95'] = percentile_interval(values[index].mean(axis=1))
    return out


def summarize(scores: dict[str, np.ndarray], num_resamples: int = 2000,
              seed: int = 0) -> dict[str, Optional[dict]]:
    """SPC and MAE means with intervals (one resampling of images for both), and the count of
    constant predictions."""
    return dict(spc=mean_with_interval(scores['spc'], num_resamples, seed),
                mae=mean_with_interval(scores['mae'], num_resamples, seed),
                constant=int(np.sum(scores['constant'])))
