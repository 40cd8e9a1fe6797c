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
from posattack.report.statistics import (compare_with_draws, empirical_p_value, percentile_interval,
                                         prediction_interval)

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


# ------------------------------------------------------------------ the draws' statistics
T_975_1DF = 12.706204736174694        # scipy.stats.t.ppf(0.975, 1), from a t table: 12.706


def test_two_draws_are_enough_for_a_p_value_and_a_prediction_interval():
    # draws 1, 3: mean 2, sd sqrt(2); the p of 10 is (1 + 0) / (1 + 2)
    assert empirical_p_value(10.0, [1.0, 3.0]) == pytest.approx(1 / 3)
    half = T_975_1DF * math.sqrt(2) * math.sqrt(1 + 1 / 2)
    assert prediction_interval([1.0, 3.0]) == pytest.approx((2 - half, 2 + half))
    # an undefined targeted value has no p-value, whatever the draws
    assert empirical_p_value(float('nan'), [1.0, 2.0, 3.0]) is None
    assert empirical_p_value(None, [1.0, 2.0, 3.0]) is None


def test_compare_with_draws_every_field_by_hand():
    # draws 1, 2, 3, 4: mean 2.5, sd sqrt(5/3); t(0.975, 3) = 3.182446305284263
    half = 3.182446305284263 * math.sqrt(5 / 3) * math.sqrt(1 + 1 / 4)
    out = compare_with_draws(10.0, [4.0, 1.0, None, 3.0, 2.0])    # None: not a draw
    assert set(out) == {'targeted', 'num_draws', 'random_mean', 'random_std', 'gap', 'z',
                        'prediction_interval', 'p_value', 'p_value_floor',
                        'beyond_prediction_interval'}
    assert out['targeted'] == 10.0 and out['num_draws'] == 4
    assert out['random_mean'] == pytest.approx(2.5)
    assert out['random_std'] == pytest.approx(math.sqrt(5 / 3))
    assert out['gap'] == pytest.approx(7.5) and out['z'] == pytest.approx(7.5 / math.sqrt(5 / 3))
    assert out['prediction_interval'] == pytest.approx([2.5 - half, 2.5 + half])
    assert out['p_value'] == pytest.approx(1 / 5) and out['p_value_floor'] == pytest.approx(1 / 5)
    assert out['beyond_prediction_interval'] is True


def test_compare_with_two_draws_and_a_spread_under_one():
    # draws 1, 3: sd sqrt(2), gap 8
    two = compare_with_draws(10.0, [1.0, 3.0])
    assert two['random_std'] == pytest.approx(math.sqrt(2))
    assert two['z'] == pytest.approx(8 / math.sqrt(2)) and two['p_value'] == pytest.approx(1 / 3)
    # draws 1, 1.5, 2: sd 0.5, gap 1.5: z = 3 (a spread below 1 is still a spread)
    narrow = compare_with_draws(3.0, [1.0, 1.5, 2.0])
    assert narrow['random_std'] == pytest.approx(0.5) and narrow['z'] == pytest.approx(3.0)
    # draws that all agree have no spread: no z
    flat = compare_with_draws(3.0, [2.0, 2.0, 2.0])
    assert flat['random_std'] == 0.0 and flat['z'] is None and flat['gap'] == pytest.approx(1.0)


def test_compare_with_draws_without_draws_or_targeted_value():
    none = compare_with_draws(5.0, [])
    assert none == dict(targeted=5.0, num_draws=0, random_mean=None, random_std=None, gap=None,
                        z=None, prediction_interval=None, p_value=None, p_value_floor=None,
                        beyond_prediction_interval=None)
    for targeted in (None, float('nan')):
        out = compare_with_draws(targeted, [1.0, 2.0, 3.0])
        assert out['num_draws'] == 3 and out['p_value_floor'] == pytest.approx(1 / 4)
        assert all(out[k] is None for k in ('random_mean', 'random_std', 'gap', 'z',
                                            'prediction_interval', 'p_value',
                                            'beyond_prediction_interval'))


def test_a_targeted_value_at_the_prediction_interval_end_is_not_beyond_it():
    draws = [1.0, 2.0, 3.0, 4.0]
    upper = prediction_interval(draws)[1]
    assert compare_with_draws(upper, draws)['beyond_prediction_interval'] is False
    assert compare_with_draws(upper + 1e-9, draws)['beyond_prediction_interval'] is True
