"""Invariants of the statistics, checked on inputs hypothesis draws (where an invariant is
cheaper than an oracle; tests/test_report/test_statistics_constructed.py has the worked answers).

* the image resampler: multinomial over all images, every image equally likely;
* mIoU from summed counts equals mmseg's IoUMetric for any confusion;
* a bootstrap interval of a mean over images contains its estimate;
* the 95% interval of a paired difference lies within what the two statistics' own (99%)
  intervals allow: a resample where A - B exceeds hi(A) - lo(B) needs A above hi(A) or B
  below lo(B), and that happens in at most 1% + 1% of resamples;
* removing no channel leaves any model's output bit-identical.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from mmseg.evaluation.metrics import IoUMetric
from torch import nn

from posattack.channels.ablations import ChannelStatistics
from posattack.channels.removal import ChannelRemoval
from posattack.evaluation.metric import summarize_confusion
from posattack.report.per_image import (PairedBootstrap, PerImageCounts, miou_from_counts,
                                        resample_weights)
from posattack.report.significance import build_statistics
from posattack.report.statistics import percentile_interval

SEEDS = st.integers(0, 2 ** 32 - 1)


# ------------------------------------------------------------------ the resampler
@settings(max_examples=40, deadline=None)
@given(num_images=st.integers(1, 40), num_resamples=st.integers(1, 60), seed=SEEDS)
def test_resample_weights_are_image_multiplicities(num_images, num_resamples, seed):
    weights = resample_weights(num_images, num_resamples, seed)
    assert weights.shape == (num_resamples, num_images)
    assert (weights >= 0).all() and np.array_equal(weights, np.round(weights))
    assert (weights.sum(axis=1) == num_images).all()


@settings(max_examples=25, deadline=None)
@given(num_images=st.integers(1, 12), seed=SEEDS)
def test_resample_weights_draw_every_image_equally_often(num_images, seed):
    # B * n draws, each image with probability 1/n: each image's total count is
    # Binomial(B n, 1/n), mean B, sd sqrt(B (1 - 1/n)); 6 sd is a one-in-10^8 miss
    num_resamples = 3000
    totals = resample_weights(num_images, num_resamples, seed).sum(axis=0)
    sd = math.sqrt(num_resamples * (1 - 1 / num_images))
    assert np.all(np.abs(totals - num_resamples) <= 6 * sd + 1e-9)
    assert (totals > 0).all()                    # the last image too


@settings(max_examples=20, deadline=None)
@given(num_images=st.integers(2, 8), seed=SEEDS)
def test_resample_weights_are_multinomial_per_resample(num_images, seed):
    # one image's multiplicity in a resample is Binomial(n, 1/n): P(0) = (1 - 1/n)^n
    num_resamples = 4000
    weights = resample_weights(num_images, num_resamples, seed)
    share_absent = (weights == 0).mean()
    p = (1 - 1 / num_images) ** num_images
    assert abs(share_absent - p) <= 6 * math.sqrt(p * (1 - p) / num_resamples)
    assert weights.max() <= num_images


# ------------------------------------------------------------------ mIoU from counts
CONFUSIONS = st.integers(2, 6).flatmap(lambda k: hnp.arrays(
    np.int64, (k, k), elements=st.integers(0, 1000)))


@settings(max_examples=80, deadline=None)
@given(conf=CONFUSIONS, absent=st.integers(0, 5))
def test_miou_from_counts_equals_mmseg_for_any_confusion(conf, absent):
    if absent < conf.shape[0]:       # a class absent from labels and predictions
        conf[absent, :] = 0
        conf[:, absent] = 0
    assume(conf.sum() > 0)
    tp, gt, pred = np.diag(conf), conf.sum(axis=1), conf.sum(axis=0)
    metrics = IoUMetric.total_area_to_metrics(
        *(torch.as_tensor(a, dtype=torch.float64) for a in (tp, gt + pred - tp, pred, gt)),
        ['mIoU'])
    expected = 100 * np.nanmean(np.asarray(metrics['IoU'], dtype=np.float64))
    assert miou_from_counts(tp, gt, pred) == pytest.approx(expected, rel=1e-12)
    classes = [f'c{i}' for i in range(conf.shape[0])]
    flat, _ = summarize_confusion(conf[None], ['full'], classes, decimals=None)
    assert flat['mIoU'] == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------------ intervals
def _linear_counts(clean_wrong, setting_wrong, pixels=100):
    """One region, class 0 labelled everywhere, wrong pixels predicted as class 1 (>= 1 per
    image): mIoU = 50 - 50 * wrong / pixels summed over the resample, linear in it."""
    n = len(clean_wrong)
    gt = np.zeros((n, 1, 2), np.uint32)
    gt[:, 0, 0] = pixels
    tp, pred = {}, {}
    for key, wrong in (('clean', clean_wrong), ('targeted/overall/N=1', setting_wrong)):
        wrong = np.asarray(wrong, np.uint32)
        tp[key] = np.zeros((n, 1, 2), np.uint32)
        tp[key][:, 0, 0] = pixels - wrong
        pred[key] = np.stack([pixels - wrong, wrong], axis=1)[:, None, :].astype(np.uint32)
    settings_ = [dict(key='clean', mode='clean', num_channels=0, attack_region=None),
                 dict(key='targeted/overall/N=1', mode='targeted', num_channels=1,
                      attack_region='overall')]
    return PerImageCounts([f'i{j}' for j in range(n)], ['full'], gt, tp, pred), settings_


# 5 images at least: fewer get no interval (significance.MIN_IMAGES_FOR_INTERVAL)
WRONG = st.lists(st.tuples(st.integers(1, 60), st.integers(0, 39)), min_size=5, max_size=15)


@settings(max_examples=40, deadline=None)
@given(wrong=WRONG, seed=SEEDS)
def test_a_drop_interval_contains_its_estimate(wrong, seed):
    clean = [c for c, _ in wrong]
    attacked = [c + extra for c, extra in wrong]
    counts, settings_ = _linear_counts(clean, attacked)
    statistics, _ = build_statistics(settings_, counts, num_resamples=500, seed=seed % 1000)
    for entry in statistics['settings']['targeted/overall/N=1']['full'].values():
        low, high = entry['ci95']
        assert low - 1e-9 <= entry['estimate'] <= high + 1e-9
    # and the drop lies between the smallest and the largest per-image drop (0.5 per pixel)
    drop = statistics['settings']['targeted/overall/N=1']['full']['drop']
    extras = [0.5 * extra for _, extra in wrong]
    assert min(extras) - 1e-9 <= drop['ci95'][0] <= drop['ci95'][1] <= max(extras) + 1e-9


@settings(max_examples=40, deadline=None)
@given(num_images=st.integers(2, 10), seed=SEEDS, data=st.data())
def test_a_paired_difference_interval_is_bounded_by_the_two_intervals(num_images, seed, data):
    classes = 3
    rows = hnp.arrays(np.int64, (num_images, classes), elements=st.integers(0, 30))
    gt = data.draw(rows)
    keys = ('clean', 'other')
    tp, pred = {}, {}
    for key in keys:
        correct = np.minimum(gt, data.draw(rows))
        tp[key], pred[key] = correct, correct + data.draw(rows)
    as_counts = lambda a: a[:, None, :].astype(np.uint32)  # noqa: E731
    counts = PerImageCounts([f'i{j}' for j in range(num_images)], ['full'], as_counts(gt),
                            {k: as_counts(v) for k, v in tp.items()},
                            {k: as_counts(v) for k, v in pred.items()})
    boot = PairedBootstrap(counts, num_resamples=1000, seed=seed % 1000)
    (_, a), (_, b) = boot.miou('clean', 'full'), boot.miou('other', 'full')
    difference = percentile_interval(a - b)
    a99, b99 = percentile_interval(a, level=0.99), percentile_interval(b, level=0.99)
    assume(difference is not None and a99 is not None and b99 is not None)
    assert a99[0] - b99[1] - 1e-9 <= difference[0] <= difference[1] <= a99[1] - b99[0] + 1e-9


@settings(max_examples=60, deadline=None)
@given(samples=hnp.arrays(np.float64, st.integers(1, 300),
                          elements=st.floats(-1e6, 1e6) | st.just(np.nan) | st.just(np.inf)),
       level=st.sampled_from([0.5, 0.9, 0.95, 0.99]))
def test_a_percentile_interval_is_ordered_and_inside_the_finite_samples(samples, level):
    interval = percentile_interval(samples, level)
    finite = samples[np.isfinite(samples)]
    if len(finite) < 0.9 * len(samples) or len(finite) == 0:
        assert interval is None
        return
    low, high = interval
    assert finite.min() <= low <= high <= finite.max()
    # the share of finite samples below low (above high) is at most the tail, plus one
    tail = (1 - level) / 2
    assert np.count_nonzero(finite < low) <= tail * len(finite) + 1
    assert np.count_nonzero(finite > high) <= tail * len(finite) + 1


# ------------------------------------------------------------------ removing nothing
@settings(max_examples=20, deadline=None)
@given(channels=st.integers(1, 6), size=st.integers(3, 8), ablation=st.sampled_from(
    ['zero', 'mean', 'gaussian_noise']), seed=SEEDS)
def test_removing_no_channel_is_bit_identical(channels, size, ablation, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels),
                          nn.ReLU(), nn.Conv2d(channels, 4, 3, padding=2, dilation=2)).eval()
    inputs = torch.randn(2, 3, size, size)
    statistics = ChannelStatistics(mean=torch.randn(channels), std=torch.rand(channels))
    with torch.no_grad():
        expected = model(inputs)
        with ChannelRemoval(model, '2', [], ablation=ablation,
                            mean_values=statistics if ablation != 'zero' else None):
            got = model(inputs)
    assert torch.equal(got, expected)
