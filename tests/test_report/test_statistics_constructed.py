"""The paired bootstrap on images with planted, different per-image effects: known answers.

The construction makes every mIoU linear in the resample's image multiplicities, so each
interval can be worked out with a few lines of numpy, without the code under test:

* every labelled pixel is class 0 (P per image and region); a wrong pixel is predicted 1;
* image i of setting s gets ``errors[s][i, region]`` wrong pixels (always >= 1, so class 1
  is predicted in every resample and its IoU, 0, is always averaged in);
* so for a resample with multiplicities w (sum n): IoU_0 = 1 - (w @ e) / (n P), IoU_1 = 0,
  mIoU = 50 - 50 (w @ e) / (n P), and the drop of s from clean is
  ``50 / (n P) * w @ (e_s - e_clean)``: the bootstrap mean of the per-image effects.

Clean errors differ wildly between images (1 to 90 of 100 pixels) while the effects are a
few pixels: the paired interval (clean and setting on the same resample) is narrow, the
unpaired one (clean point minus setting resamples) is many times wider, and the code must
give the paired one.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from posattack.report.per_image import PerImageCounts, resample_weights
from posattack.report.pooling import pool_drops
from posattack.report.significance import build_statistics
from posattack.report.statistics import percentile_interval

P = 100                                 # labelled pixels per image in center and periphery
REGION_PIXELS = dict(full=2 * P, center=P, periphery=P)
NUM_RESAMPLES, SEED = 2000, 7
CLEAN = np.array([2, 90, 5, 70, 10, 60, 3, 80, 20, 40, 1, 50])      # wrong pixels, clean
N = len(CLEAN)
# extra wrong pixels per image: (center, periphery); different for every image
EFFECTS = {
    'targeted/overall/N=2': (np.array([0, 1, 0, 2, 1, 0, 0, 1, 2, 0, 1, 0]),
                             np.array([4, 9, 2, 8, 3, 6, 3, 7, 5, 6, 2, 8])),
    'random/N=2/seed=0': (np.array([1, 0, 0, 1, 0, 2, 1, 0, 0, 1, 0, 1]),
                          np.array([0, 1, 1, 0, 2, 0, 1, 1, 0, 0, 1, 2])),
    'random/N=2/seed=1': (np.array([0, 2, 1, 0, 0, 1, 0, 3, 1, 0, 0, 0]),
                          np.array([2, 0, 0, 1, 0, 1, 3, 0, 0, 2, 0, 1])),
    'random/N=2/seed=2': (np.array([3, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1, 0]),
                          np.array([1, 1, 0, 0, 1, 0, 0, 2, 1, 0, 3, 0])),
}
RANDOM_KEYS = [k for k in EFFECTS if k.startswith('random')]
TARGETED = 'targeted/overall/N=2'


def _errors(key):
    """(n, 3) wrong pixels per image in full, center, periphery."""
    center, periphery = (CLEAN, CLEAN) if key == 'clean' else (
        CLEAN + EFFECTS[key][0], CLEAN + EFFECTS[key][1])
    return np.stack([center + periphery, center, periphery], axis=1)


def constructed_counts():
    regions = ['full', 'center', 'periphery']
    pixels = np.array([REGION_PIXELS[r] for r in regions])
    gt = np.zeros((N, 3, 2), np.uint32)
    gt[:, :, 0] = pixels
    tp, pred = {}, {}
    for key in ['clean'] + list(EFFECTS):
        wrong = _errors(key)
        tp[key] = np.zeros((N, 3, 2), np.uint32)
        tp[key][:, :, 0] = pixels - wrong
        pred[key] = np.stack([pixels - wrong, wrong], axis=2).astype(np.uint32)
    settings = [dict(key='clean', mode='clean', num_channels=0, attack_region=None),
                dict(key=TARGETED, mode='targeted', num_channels=2, attack_region='overall')]
    settings += [dict(key=k, mode='random', num_channels=2, attack_region=None, seed=s)
                 for s, k in enumerate(RANDOM_KEYS)]
    return PerImageCounts([f'img{i:02d}' for i in range(N)], regions, gt, tp, pred), settings


# ------------------------------------------------------------------ expectations by hand
WEIGHTS = resample_weights(N, NUM_RESAMPLES, SEED)   # what build_statistics resamples with
ALL_ONES = np.ones(N)


def miou(key, region, w):
    """mIoU (percent) of ``key`` on resample ``w`` (or all images): the formula above."""
    wrong = _errors(key)[:, ['full', 'center', 'periphery'].index(region)]
    return 50 - 50 * (w @ wrong) / (N * REGION_PIXELS[region])


def effect(keys, region):
    """Per image, the drop (mIoU points) of the mean over ``keys``, as a bootstrap mean."""
    column = ['full', 'center', 'periphery'].index(region)
    extra = np.mean([_errors(k)[:, column] - _errors('clean')[:, column] for k in keys], axis=0)
    return 50 * extra / REGION_PIXELS[region]          # drop on w = (w @ effect) / n


def interval(samples):
    return list(np.percentile(samples, [2.5, 97.5]))


def paired_drop(keys, region):
    return (WEIGHTS @ effect(keys, region)) / N


def unpaired_drop(keys, region):
    """The bug to rule out: the clean point instead of clean resamples."""
    setting = np.mean([miou(k, region, WEIGHTS) for k in keys], axis=0)
    return miou('clean', region, ALL_ONES) - setting


# Function scope although it is the same every time (15 ms): mutmut credits what a fixture
# calls to the test that first built it, so a module fixture hides every later test's checks.
@pytest.fixture
def built():
    counts, settings = constructed_counts()
    return build_statistics(settings, counts, num_resamples=NUM_RESAMPLES, seed=SEED)


def test_construction_is_what_the_docstring_says():
    # hand check of one number: image-sum of clean errors 431 of 12 * 100 center pixels
    assert CLEAN.sum() == 431
    assert miou('clean', 'center', ALL_ONES) == pytest.approx(50 - 50 * 431 / 1200)
    # and paired vs unpaired differ a lot: the test below can tell them apart
    paired = interval(paired_drop([TARGETED], 'periphery'))
    unpaired = interval(unpaired_drop([TARGETED], 'periphery'))
    assert unpaired[1] - unpaired[0] > 8 * (paired[1] - paired[0]) > 0


@pytest.mark.parametrize('region', ['full', 'center', 'periphery'])
def test_targeted_drop_interval_is_the_paired_one(built, region):
    statistics, _ = built
    drop = statistics['settings'][TARGETED][region]['drop']
    assert drop['estimate'] == pytest.approx(effect([TARGETED], region).mean())
    assert drop['ci95'] == pytest.approx(interval(paired_drop([TARGETED], region)), abs=1e-9)
    # without any resample: a bootstrap mean lies between the smallest and largest effect
    low, high = drop['ci95']
    assert effect([TARGETED], region).min() <= low <= high <= effect([TARGETED], region).max()


@pytest.mark.parametrize('region', ['full', 'center', 'periphery'])
def test_random_group_drop_interval_is_the_paired_one(built, region):
    statistics, _ = built
    group = statistics['random_groups']['2'][region]
    assert group['drop']['estimate'] == pytest.approx(effect(RANDOM_KEYS, region).mean())
    assert group['drop']['ci95'] == pytest.approx(interval(paired_drop(RANDOM_KEYS, region)),
                                                  abs=1e-9)
    low, high = group['drop']['ci95']
    assert effect(RANDOM_KEYS, region).min() <= low <= high <= effect(RANDOM_KEYS, region).max()
    # the group's mIoU: mean over draws of each draw's mIoU, on the same resample
    expected = np.mean([miou(k, region, WEIGHTS) for k in RANDOM_KEYS], axis=0)
    assert group['miou']['ci95'] == pytest.approx(interval(expected), abs=1e-9)


def _test(entries, kind, mode):
    return next(t for t in entries if t['kind'] == kind and t['mode'] == mode)


def test_targeted_minus_random_interval_is_the_paired_one(built):
    _, tests = built
    # the rank test of claim 1 carries the gap's image-bootstrap interval as its effect size
    gap = _test(tests, 'targeted_vs_random_draws', 'targeted')
    per_image = effect([TARGETED], 'full') - effect(RANDOM_KEYS, 'full')
    assert gap['estimate'] == pytest.approx(per_image.mean())
    assert gap['ci95'] == pytest.approx(interval(WEIGHTS @ per_image / N), abs=1e-9)
    assert per_image.min() <= gap['ci95'][0] <= gap['ci95'][1] <= per_image.max()


@pytest.mark.parametrize('mode, keys', [('targeted', [TARGETED]), ('random', RANDOM_KEYS)])
def test_periphery_minus_center_interval_is_the_paired_one(built, mode, keys):
    statistics, _ = built
    pc = _test(statistics['effects'], 'periphery_minus_center', mode)
    per_image = effect(keys, 'periphery') - effect(keys, 'center')
    assert pc['estimate'] == pytest.approx(per_image.mean())
    assert pc['ci95'] == pytest.approx(interval(WEIGHTS @ per_image / N), abs=1e-9)
    assert per_image.min() <= pc['ci95'][0] <= pc['ci95'][1] <= per_image.max()


def test_periphery_minus_center_estimates_by_hand(built):
    """The point estimates of the differences: periphery drop minus center drop."""
    statistics, tests = built
    for mode, keys in (('targeted', [TARGETED]), ('random', RANDOM_KEYS)):
        pc = _test(statistics['effects'], 'periphery_minus_center', mode)
        expected = (effect(keys, 'periphery') - effect(keys, 'center')).mean()
        assert expected > 0 and pc['estimate'] == pytest.approx(expected)
    did = _test(tests, 'periphery_minus_center_vs_random_draws', 'targeted')
    per_image = (effect([TARGETED], 'periphery') - effect([TARGETED], 'center')) - (
        effect(RANDOM_KEYS, 'periphery') - effect(RANDOM_KEYS, 'center'))
    assert did['estimate'] == pytest.approx(per_image.mean())


def test_claim_2_ranks_the_targeted_difference_among_each_draws_own(built):
    """The difference in differences: the targeted (periphery - center) drop against every
    random draw's own (periphery - center) drop, not against zero."""
    _, tests = built
    did = _test(tests, 'periphery_minus_center_vs_random_draws', 'targeted')
    targeted = (effect([TARGETED], 'periphery') - effect([TARGETED], 'center')).mean()
    draws = [(effect([k], 'periphery') - effect([k], 'center')).mean() for k in RANDOM_KEYS]
    assert did['targeted_value'] == pytest.approx(targeted)
    assert did['random_mean'] == pytest.approx(np.mean(draws))
    exceed = sum(d >= targeted for d in draws)
    assert did['p_value'] == pytest.approx((exceed + 1) / (len(draws) + 1))
    # the interval of the DiD: targeted minus the draws' mean, per image, paired
    per_image = (effect([TARGETED], 'periphery') - effect([TARGETED], 'center')) - (
        effect(RANDOM_KEYS, 'periphery') - effect(RANDOM_KEYS, 'center'))
    assert did['ci95'] == pytest.approx(interval(WEIGHTS @ per_image / N), abs=1e-9)


# ------------------------------------------------------------------ percentile interval
def test_percentile_interval_by_hand_leaves_out_non_finite_resamples():
    # 1..100: the 2.5% point sits at rank 0.025 * 99 = 2.475 -> 1 + 2.475; 97.5%: 97.525
    finite = np.arange(1.0, 101.0)
    assert percentile_interval(finite) == pytest.approx([3.475, 97.525])
    assert percentile_interval(finite, level=0.9) == pytest.approx([5.95, 95.05])
    # 10 non-finite of 110 (9%): left out, the same interval
    mixed = np.concatenate([finite, [np.nan] * 5, [np.inf] * 3, [-np.inf] * 2])
    np.random.default_rng(0).shuffle(mixed)
    assert percentile_interval(mixed) == pytest.approx([3.475, 97.525])
    low, high = percentile_interval(mixed)
    assert low < high


@pytest.mark.parametrize('num_samples', [10, 100, 2000])
def test_percentile_interval_needs_90_percent_finite(num_samples):
    # exactly 90% finite: computed; one fewer: refused
    enough = np.arange(num_samples, dtype=float)
    enough[:num_samples // 10] = np.nan
    assert percentile_interval(enough) is not None
    too_few = enough.copy()
    too_few[num_samples // 10] = np.inf
    assert percentile_interval(too_few) is None
    assert percentile_interval(np.array([])) is None


# ------------------------------------------------------------------ across models
def _model_results(targeted_drop, random_drop):
    settings = [dict(key='clean', mode='clean', num_channels=0, attack_region=None),
                dict(key=TARGETED, mode='targeted', num_channels=2, attack_region='overall')]
    random_groups = {} if random_drop is None else {'2': {'full': dict(drop=dict(
        estimate=random_drop, ci95=None))}}
    return dict(settings=settings, statistics=dict(
        settings={TARGETED: {'full': dict(drop=dict(estimate=targeted_drop, ci95=None))}},
        random_groups=random_groups))


def test_pooled_drops_have_the_sample_sd_over_models():
    models = [('a', _model_results(1.0, 3.0)), ('b', _model_results(2.0, 5.0)),
              ('c', _model_results(4.0, None)), ('d', _model_results(None, None))]
    rows = {(r['mode'], r['eval_region']): r for r in pool_drops(models)}
    targeted = rows['targeted', 'full']
    # 1, 2, 4: mean 7/3, squared deviations 16/9 + 1/9 + 25/9 = 42/9, over n - 1 = 2
    assert targeted['num_models'] == 3 and targeted['mean'] == pytest.approx(7 / 3)
    assert targeted['std'] == pytest.approx(math.sqrt(7 / 3))
    assert targeted['per_model'] == dict(a=1.0, b=2.0, c=4.0, d=None)
    random = rows['random', 'full']
    # 3, 5: mean 4, sd sqrt((1 + 1) / 1)
    assert random['num_models'] == 2 and random['mean'] == pytest.approx(4.0)
    assert random['std'] == pytest.approx(math.sqrt(2))
    one = {(r['mode'], r['eval_region']): r for r in pool_drops(models[:1])}
    assert one['targeted', 'full']['std'] is None       # one model: no spread
