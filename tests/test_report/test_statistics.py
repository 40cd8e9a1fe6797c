"""Every statistic behind a verdict, against an independent computation.

Hand-worked values (counted or computed on paper), scipy, and mmseg's own IoU code on the
same confusions: never the function under test run a second way.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mmseg.evaluation.metrics import IoUMetric
from scipy import stats as scipy_stats

from posattack.evaluation.metric import region_confusion
from posattack.report.per_image import (PairedBootstrap, PerImageCounts, PerImageRecorder,
                                        miou_from_counts, resample_weights)
from posattack.report.pooling import (build_summary, headline, paper_claims, pool_drops, pool_tests,
                                      single_model_evidence)
from posattack.report.rank_tests import detectable_gap, placebo_rate
from posattack.report.significance import (_empty_region_reason, _Intervals, build_statistics,
                                           finish_verdicts, rank_test)
from posattack.report.statistics import (bootstrap_p_value, compare_with_draws, empirical_p_value,
                                         interval_with_estimate, one_sample_t, percentile_interval,
                                         prediction_interval)
from posattack.report.test_design import TestDesign


# ------------------------------------------------------------------ random draws
def test_empirical_p_value_counts_draws_at_or_above_the_targeted_drop():
    # draws >= 5.0: 6.0 and 5.0 -> (1 + 2) / (1 + 5)
    assert empirical_p_value(5.0, [1.0, 2.0, 6.0, 0.5, 5.0]) == pytest.approx(3 / 6)
    # none above: the floor 1 / (1 + 19) with 19 draws
    assert empirical_p_value(100.0, list(range(19))) == pytest.approx(1 / 20)
    # one draw is no distribution
    assert empirical_p_value(3.0, [1.0]) is None


def test_prediction_interval_by_hand():
    # draws 1, 2, 3, 4: mean 2.5, sd sqrt(5/3); t(0.975, 3) = 3.182446305284263
    low, high = prediction_interval([1.0, 2.0, 3.0, 4.0])
    half = 3.182446305284263 * math.sqrt(5 / 3) * math.sqrt(1 + 1 / 4)
    assert (low, high) == pytest.approx((2.5 - half, 2.5 + half))
    assert prediction_interval([1.0]) is None


def test_compare_with_draws_gap_z_and_verdict_inputs():
    out = compare_with_draws(10.0, [1.0, 2.0, 3.0, 4.0])
    assert out['gap'] == pytest.approx(7.5)
    assert out['z'] == pytest.approx(7.5 / math.sqrt(5 / 3))
    assert out['p_value'] == pytest.approx(1 / 5) and out['p_value_floor'] == pytest.approx(0.2)
    assert out['beyond_prediction_interval'] is True   # 10 > 2.5 + 6.40
    single = compare_with_draws(10.0, [1.0])
    assert single['gap'] == 9.0 and single['p_value'] is None and single['z'] is None


# ------------------------------------------------------------------ images
def test_miou_from_counts_equals_mmseg_iou_metric():
    rng = np.random.default_rng(3)
    num_classes = 5
    conf = rng.integers(0, 50, size=(num_classes, num_classes))
    conf[3, :] = 0   # class 3 absent from labels ...
    conf[:, 3] = 0   # ... and predictions: left out of the mean
    tp, gt, pred = np.diag(conf), conf.sum(axis=1), conf.sum(axis=0)
    union = gt + pred - tp
    metrics = IoUMetric.total_area_to_metrics(
        *(torch.as_tensor(a, dtype=torch.float64) for a in (tp, union, pred, gt)), ['mIoU'])
    expected = 100 * np.nanmean(metrics['IoU'])
    assert miou_from_counts(tp, gt, pred) == pytest.approx(expected)


def _counts(gt, tp, pred):
    """PerImageCounts of one region ('full') from per-image lists of class vectors."""
    as_array = lambda rows: np.asarray(rows, dtype=np.uint32)[:, None, :]  # noqa: E731
    return PerImageCounts([f'img{i}' for i in range(len(gt))], ['full'], as_array(gt),
                          {k: as_array(v) for k, v in tp.items()},
                          {k: as_array(v) for k, v in pred.items()})


def test_paired_bootstrap_with_a_fixed_resample_by_hand():
    # 3 images, 2 classes; resample A = images (0, 0, 1), resample B = images (2, 2, 2)
    counts = _counts(gt=[[10, 0], [0, 10], [5, 5]],
                     tp={'clean': [[10, 0], [0, 8], [5, 5]]},
                     pred={'clean': [[12, 0], [0, 8], [5, 5]]})
    weights = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    boot = PairedBootstrap(counts, num_resamples=2, weights=weights)
    point, samples = boot.miou('clean', 'full')
    # all images: class 0 tp 15 / (15 + 17 - 15) = 15/17; class 1: 13 / (15 + 13 - 13) = 13/15
    assert point == pytest.approx(100 * (15 / 17 + 13 / 15) / 2)
    # A: class 0 tp 20 / (20 + 24 - 20) = 20/24; class 1: 8 / (10 + 8 - 8) = 0.8
    # B: every class perfect
    assert samples == pytest.approx([100 * (20 / 24 + 0.8) / 2, 100.0])


def test_resample_weights_are_seeded_multiplicities():
    a, b = resample_weights(7, 50, seed=4), resample_weights(7, 50, seed=4)
    assert np.array_equal(a, b) and (a.sum(axis=1) == 7).all()
    assert not np.array_equal(a, resample_weights(7, 50, seed=5))


def test_recorder_keeps_what_the_summed_confusion_has():
    rng = np.random.default_rng(0)
    masks = np.zeros((2, 4, 6), dtype=bool)
    masks[0] = True             # full
    masks[1, :, :3] = True      # left
    recorder = PerImageRecorder(['full', 'left'])
    total = np.zeros((2, 3, 3), dtype=np.int64)
    for image in ('b.png', 'a.png'):
        gt, pred = rng.integers(0, 3, (4, 6)), rng.integers(0, 3, (4, 6))
        conf = region_confusion(pred, gt, masks, 3, 255)
        recorder.add('clean', image, conf)
        total += conf
    counts = recorder.gather(['clean'])
    assert counts.images == ['a.png', 'b.png']     # sorted, whatever the order seen
    assert np.array_equal(counts.tp['clean'].sum(axis=0), np.diagonal(total, axis1=1, axis2=2))
    assert np.array_equal(counts.gt.sum(axis=0), total.sum(axis=2))
    assert np.array_equal(counts.pred['clean'].sum(axis=0), total.sum(axis=1))


def test_per_image_counts_round_trip(tmp_path):
    counts = _counts(gt=[[1, 2]], tp={'clean': [[1, 1]], 'random/N=1/seed=0': [[0, 2]]},
                     pred={'clean': [[1, 2]], 'random/N=1/seed=0': [[1, 2]]})
    loaded = PerImageCounts.load(counts.save(str(tmp_path / 'per_image.npz')))
    assert loaded.images == counts.images and loaded.keys == counts.keys
    assert all(np.array_equal(loaded.tp[k], counts.tp[k]) for k in counts.keys)
    (tmp_path / 'junk.npz').write_bytes(b'not a zip')
    with pytest.raises(ValueError, match='junk.npz.*delete it and rerun'):
        PerImageCounts.load(str(tmp_path / 'junk.npz'))


def test_percentile_interval_and_bootstrap_p():
    samples = np.arange(1, 1001, dtype=float)      # 1..1000
    assert percentile_interval(samples) == pytest.approx(
        list(np.percentile(samples, [2.5, 97.5])))
    assert bootstrap_p_value(samples) == 1 / 1000    # never 0: at most 1/B
    assert bootstrap_p_value(np.array([-1.0, 1.0, 2.0, 3.0])) == pytest.approx(0.5)
    assert percentile_interval(np.full(10, np.nan)) is None


# ------------------------------------------------------------------ one model's tests
def _two_region_counts(num_images=8):
    """Per image: 2 classes, regions full/center/periphery. Targeted loses half the
    periphery's class-1 pixels; random draws lose a little everywhere."""
    regions = ['full', 'center', 'periphery']
    gt = np.zeros((num_images, 3, 2), np.uint32)
    gt[:, 1] = [50, 50]
    gt[:, 2] = [50, 50]
    gt[:, 0] = gt[:, 1] + gt[:, 2]

    def setting(center_lost, periphery_lost):
        tp = gt.copy()
        tp[:, 1, 1] -= center_lost
        tp[:, 2, 1] -= periphery_lost
        tp[:, 0] = tp[:, 1] + tp[:, 2]
        pred = gt.astype(np.int64)    # lost class-1 pixels are predicted as class 0
        pred[:, 1, 0] += center_lost
        pred[:, 1, 1] -= center_lost
        pred[:, 2, 0] += periphery_lost
        pred[:, 2, 1] -= periphery_lost
        pred[:, 0] = pred[:, 1] + pred[:, 2]
        return tp, pred.astype(np.uint32)

    tp, pred = {}, {}
    for key, lost in (('clean', (0, 0)), ('targeted/overall/N=2', (0, 25)),
                      ('random/N=2/seed=0', (1, 1)), ('random/N=2/seed=1', (2, 1)),
                      ('random/N=2/seed=2', (1, 2))):
        tp[key], pred[key] = setting(*lost)
    images = [f'img{i:02d}' for i in range(num_images)]
    settings = [dict(key='clean', mode='clean', num_channels=0, attack_region=None),
                dict(key='targeted/overall/N=2', mode='targeted', num_channels=2,
                     attack_region='overall')]
    settings += [dict(key=f'random/N=2/seed={s}', mode='random', num_channels=2,
                      attack_region=None, seed=s) for s in range(3)]
    return PerImageCounts(images, regions, gt, tp, pred), settings


def test_build_statistics_on_a_constructed_attack():
    counts, settings = _two_region_counts()
    statistics, tests = build_statistics(settings, counts, num_resamples=200, seed=0,
                                         num_channels_total=40)
    by_kind = {t['kind']: t for t in tests}
    # N=2 is 5% of 40: the primary count, so both claims' tests are primary
    assert statistics['primary'] == dict(num_channels=2, attack_region='overall')
    # periphery, class 0: tp 50, gt 50, pred 75 -> 50/75; class 1: 25/50 -> mIoU 58.33
    periphery_drop = 100 - 100 * (50 / 75 + 25 / 50) / 2
    did = by_kind['periphery_minus_center_vs_random_draws']
    assert did['targeted_value'] == pytest.approx(periphery_drop)   # the center does not drop
    assert did['primary'] and did['num_draws'] == 3
    # 3 draws can give p >= 1/4 only: never a verdict of "holds"
    assert did['p_value'] == pytest.approx(1 / 4) and did['verdict'] == 'inconclusive'
    assert 'cannot give p < 0.05' in did['reason']
    draws = by_kind['targeted_vs_random_draws']
    full_drop = statistics['settings']['targeted/overall/N=2']['full']['drop']['estimate']
    random_drop = statistics['random_groups']['2']['full']['drop']['estimate']
    assert draws['estimate'] == pytest.approx(full_drop - random_drop)
    assert draws['p_value'] == pytest.approx(1 / 4) and draws['verdict'] == 'inconclusive'
    # every image is alike: every resample gives the same value, a zero-width interval
    assert draws['ci95'] == pytest.approx([full_drop - random_drop] * 2)
    effect = next(e for e in statistics['effects'] if e['kind'] == 'periphery_minus_center'
                  and e['mode'] == 'targeted')
    assert effect['estimate'] == pytest.approx(periphery_drop) and 'verdict' not in effect


def test_a_targeted_drop_above_19_draws_holds_and_its_placebos_do_not():
    counts, settings = _two_region_counts()
    # 19 more draws, each losing 1..3 class-1 pixels in the center and periphery alike
    for seed in range(3, 22):
        key = f'random/N=2/seed={seed}'
        counts.tp[key] = counts.tp['random/N=2/seed=0'].copy()
        counts.pred[key] = counts.pred['random/N=2/seed=0'].copy()
        settings.append(dict(key=key, mode='random', num_channels=2, attack_region=None,
                             seed=seed))
    _, tests = build_statistics(settings, counts, num_resamples=200, seed=0,
                                num_channels_total=40)
    claim_1 = next(t for t in tests if t['kind'] == 'targeted_vs_random_draws')
    # 22 draws, none reaches the targeted drop: p = 1/23, sequential rule never stopped
    assert claim_1['p_value'] == pytest.approx(1 / 23) and claim_1['verdict'] == 'holds'
    assert claim_1['placebo']['num_placebos'] == 22
    # most draws tie (20 identical): a tied stand-in is never significant
    assert claim_1['placebo']['num_significant'] == 0


def test_zero_spread_draws_never_hold():
    counts, settings = _two_region_counts()
    for seed in (1, 2):   # every draw now identical to draw 0
        counts.tp[f'random/N=2/seed={seed}'] = counts.tp['random/N=2/seed=0']
        counts.pred[f'random/N=2/seed={seed}'] = counts.pred['random/N=2/seed=0']
    _, tests = build_statistics(settings, counts, num_resamples=200, seed=0)
    assert all(t['verdict'] == 'not computed' and 'zero spread' in t['reason'] for t in tests)


def test_too_few_images_or_resamples_give_no_interval():
    counts, settings = _two_region_counts(num_images=4)
    statistics, tests = build_statistics(settings, counts, num_resamples=200, seed=0)
    assert all(t['ci95'] is None and 'at least 5' in t['ci95_reason'] for t in tests)
    counts, settings = _two_region_counts()
    _, tests = build_statistics(settings, counts, num_resamples=20, seed=0)
    assert all(t['ci95'] is None and 'at least 200' in t['ci95_reason'] for t in tests)


def test_effect_on_an_empty_region_is_not_computed():
    counts, settings = _two_region_counts()
    counts.gt[:, 1] = 0
    for key in counts.keys:
        counts.tp[key][:, 1] = 0
        counts.pred[key][:, 1] = 0
    statistics, tests = build_statistics(settings, counts, num_resamples=200, seed=0)
    effect = next(e for e in statistics['effects'] if e['kind'] == 'periphery_minus_center'
                  and e['mode'] == 'targeted')
    assert effect['ci95'] is None and 'no labelled pixel' in effect['reason']
    did = next(t for t in tests if t['kind'] == 'periphery_minus_center_vs_random_draws')
    assert did['verdict'] == 'not computed'


def test_bootstrap_intervals_are_seeded():
    counts, settings = _two_region_counts()
    # images now differ, each by its own amount
    counts.tp['targeted/overall/N=2'][:, 2, 1] -= np.arange(8, dtype=np.uint32) * 2
    first = build_statistics(settings, counts, num_resamples=200, seed=1)[1]
    again = build_statistics(settings, counts, num_resamples=200, seed=1)[1]
    other = build_statistics(settings, counts, num_resamples=200, seed=2)[1]
    assert first == again and first != other


# ------------------------------------------------------------------ across models
def test_one_sample_t_against_scipy_and_by_hand():
    values = [2.42 - 1.01, 3.48 - 1.87, 3.75 - 0.96]
    out = one_sample_t(values)
    expected = scipy_stats.ttest_1samp(values, 0.0)
    assert out['t'] == pytest.approx(expected.statistic)
    assert out['p_value'] == pytest.approx(expected.pvalue)
    mean, sd = np.mean(values), np.std(values, ddof=1)
    half = 4.302652729911275 * sd / math.sqrt(3)     # t(0.975, 2)
    assert out['ci95'] == pytest.approx([mean - half, mean + half])
    assert one_sample_t([1.0])['ci95'] is None
    assert one_sample_t([1.0, 1.0])['t'] is None    # no spread: undefined


def _model(gap, pc, p_gap, p_pc, total=40):
    def test(kind, region, estimate, p):
        return dict(kind=kind, mode='targeted', num_channels=2, attack_region='overall',
                    eval_region=region, estimate=estimate, ci95=[estimate - 1, estimate + 1],
                    p_value=p, primary=True, verdict='holds' if p <= 0.05 else 'inconclusive',
                    placebo=dict(p_values=[0.5, 0.02, 0.9]))
    tests = [test('targeted_vs_random_draws', 'full', gap, p_gap),
             test('periphery_minus_center_vs_random_draws', 'periphery-center', pc, p_pc)]
    settings = [dict(key='targeted/overall/N=2', mode='targeted', num_channels=2,
                     attack_region='overall', metrics={})]
    return dict(tests=tests, settings=settings, num_channels_total=total,
                statistics=dict(primary=dict(num_channels=2, attack_region='overall')))


def test_pooled_claims_combine_the_models_rank_p_values():  # Fisher
    models = [('a', _model(3.0, 0.5, 0.04, 0.5)), ('b', _model(4.0, -0.5, 0.03, 0.7)),
              ('c', _model(5.0, 0.2, 0.2, 0.4))]
    pooled = {t['kind']: t for t in pool_tests(models)}
    gap = pooled['targeted_vs_random_draws']
    assert gap['num_models_holding'] == 2
    chi2 = -2 * np.log([0.04, 0.03, 0.2]).sum()
    assert gap['p_value'] == pytest.approx(scipy_stats.chi2.sf(chi2, 6))
    assert gap['p_value_t'] == pytest.approx(scipy_stats.ttest_1samp([3.0, 4.0, 5.0], 0).pvalue)
    # the placebos combine as the real tests do: stand-in 1 of every model has p = 0.02
    assert gap['placebo']['num_placebos'] == 3 and gap['placebo']['num_significant'] == 1
    claims = paper_claims(models)
    assert [c['verdict'] for c in claims] == ['holds', 'inconclusive']
    assert 'N=2 of 40 channels' in claims[0]['claim']


def test_bootstrap_p_value_by_hand():
    # ties at 0 count in both tails: 2 of 10 at or below 0 -> p = 2 * 0.2
    assert bootstrap_p_value(np.array([0, 0, 1, 2, 3, 4, 5, 6, 7, 8])) == pytest.approx(0.4)
    assert bootstrap_p_value(np.array([-8, -7, -6, -5, -4, -3, -2, -1, 0, 0])) == \
        pytest.approx(0.4)
    # both tails hold 2 of 3: 2 * 2/3 is capped at 1
    assert bootstrap_p_value(np.array([-1.0, 0.0, 1.0])) == 1.0
    # no resample at or below 0 (or at or above): reported as 1/B, not 0
    assert bootstrap_p_value(np.arange(1.0, 11.0)) == pytest.approx(0.1)
    assert bootstrap_p_value(np.array([0.5, 0.25, 0.75, 0.5])) == pytest.approx(0.25)
    assert bootstrap_p_value(np.array([3.0])) == 1.0               # one resample: 1/1
    assert bootstrap_p_value(np.array([np.nan, np.inf])) is None


def test_one_sample_t_fields_for_few_values():
    empty = dict(n=0, mean=None, std=None, t=None, df=None, p_value=None, ci95=None)
    assert one_sample_t([]) == empty
    assert one_sample_t([1.5, None, float('nan')]) == dict(empty, n=1, mean=1.5)
    assert one_sample_t([1.0, 1.0]) == dict(empty, n=2, mean=1.0, std=0.0, df=1)
    # two values, 1 and 3: mean 2, sd sqrt(2), t = 2 / (sqrt(2) / sqrt(2)) = 2 on 1 df
    two = one_sample_t([1.0, 3.0])
    half = scipy_stats.t.ppf(0.975, 1)
    assert two['ci95'] == pytest.approx([2 - half, 2 + half])
    assert dict(two, ci95=None) == pytest.approx(dict(n=2, mean=2.0, std=math.sqrt(2), t=2.0,
                                                      df=1, ci95=None,
                                                      p_value=2 * scipy_stats.t.sf(2.0, 1)))


# ------------------------------------------------------------------ one rank test, every field
# 21 draws 1..21 (a None and a NaN among them are dropped), in that order: mean 11, sample
# variance n (n + 1) / 12 = 38.5. The targeted value 30 is above them all.
DRAWS = [1.0, None, 2.0, float('nan')] + [float(k) for k in range(3, 22)]
VALUES = np.arange(1.0, 22.0)
DESIGN = TestDesign(exceedances=5, max_draws=19, alpha=0.05)
EFFECT = dict(ci95=[1.0, 2.0], num_resamples_dropped=3, reason='why')


def test_a_primary_rank_test_field_by_field():
    test = rank_test('targeted_vs_random_draws', 2, 'overall', 'full', 30.0, DRAWS, True,
                     DESIGN, EFFECT)
    # the first 19 draws (the cap) are used, none reaches 30: p = 1 / 20 = alpha, which holds
    assert test == dict(
        kind='targeted_vs_random_draws', mode='targeted', num_channels=2,
        attack_region='overall', eval_region='full', primary=True, estimate=19.0,
        ci95=[1.0, 2.0], targeted_value=30.0, random_mean=11.0,
        random_std=pytest.approx(math.sqrt(38.5)), num_draws=21, p_value=0.05,
        p_value_holm=None, verdict='holds',
        sequential=dict(p_value=0.05, draws_used=19, exceedances=0, stopped_early=False,
                        complete=True, max_draws=19, exceedance_target=5,
                        p_value_floor=0.05),
        # the placebos: each draw against the 20 others, cut at 18 (one fewer than the cap)
        placebo=placebo_rate(VALUES, 5, 19, 0.05),
        # at most 0 of 19 draws may reach it: the 0.95 quantile of 1..21 is 20, 9 over 11
        detectable=dict(gap=9.0, threshold=20.0, quantile=0.95, num_draws=21, max_draws=19),
        method='sequential rank test among random draws (Besag & Clifford 1991: stop once 5 '
               'draws reach the targeted value, at most 19 draws); one-sided, alpha 0.05',
        ci95_reason='why', num_resamples_dropped=3)
    # the placebo settings matter here: another cap or no stopping rule counts otherwise
    assert test['placebo'] != placebo_rate(VALUES, None, 19, 0.05)
    assert test['placebo'] != placebo_rate(VALUES, 5, None, 0.05)
    assert test['placebo']['p_values'][20] == pytest.approx(1 / 19)   # 21 among 18 draws


def test_an_exploratory_rank_test_uses_every_draw_and_waits_for_holm():
    test = rank_test('own_half_vs_random_draws', 2, 'left', 'left-right', 30.0, DRAWS, False,
                     DESIGN, dict(ci95=None))
    assert test['sequential'] == dict(p_value=1 / 22, draws_used=21, exceedances=0,
                                      stopped_early=False, complete=True, max_draws=21,
                                      exceedance_target=None, p_value_floor=1 / 22)
    assert test['p_value'] == 1 / 22 and test['verdict'] == 'not computed'
    assert test['placebo'] == placebo_rate(VALUES, None, 21, 0.05)
    assert test['detectable'] == detectable_gap(VALUES, 21, 0.05)
    assert test['method'] == ('rank test among 21 random draws, one-sided, Holm-adjusted over '
                              'the exploratory tests')
    assert test['num_resamples_dropped'] == 0 and 'ci95_reason' not in test
    assert 'reason' not in test
    finish_verdicts([test], 0.05)
    assert test['p_value_holm'] == 1 / 22 and test['verdict'] == 'holds'


def test_rank_tests_that_cannot_be_computed_say_why():
    two = rank_test('targeted_vs_random_draws', 2, 'overall', 'full', 1.5, [1.0, 2.0], True,
                    DESIGN)
    # 2 draws (1 reaches 1.5): p = (1 + 1) / 3, and the floor 1/3 says why it cannot hold
    assert two['p_value'] == pytest.approx(2 / 3) and two['verdict'] == 'inconclusive'
    assert two['random_std'] == pytest.approx(math.sqrt(0.5))
    assert two['reason'] == ('2 random draws cannot give p < 0.05: the floor is 0.333; allow 19 '
                             'or more (--max-draws).')
    assert 'num_resamples_dropped' not in two and 'ci95_reason' not in two
    zero_spread = 'not computed: the random draws have zero spread (or fewer than 2); no rank ' \
                  'test can separate a set from them.'
    for draws in ([2.0, 2.0, 2.0], [2.0]):
        flat = rank_test('targeted_vs_random_draws', 2, 'overall', 'full', 3.0, draws, True,
                         DESIGN)
        assert flat['p_value'] is None and flat['reason'] == zero_spread
        assert flat['verdict'] == 'not computed'
    assert rank_test('k', 2, 'overall', 'full', 3.0, [2.0], True, DESIGN)['random_std'] is None
    for targeted, draws in ((None, [1.0, 2.0]), (3.0, [])):
        none = rank_test('k', 2, 'overall', 'full', targeted, draws, True, DESIGN)
        assert none['reason'] == 'not computed: no random draw or no targeted value to rank.'
        assert none['estimate'] is None and none['verdict'] == 'not computed'
    assert rank_test('k', 2, 'overall', 'full', 3.0, [], True, DESIGN)['random_mean'] is None


def test_a_primary_test_just_above_alpha_is_inconclusive():
    # 39 draws 1..39 under a cap of 39 and a targeted 39.5 reached by none: p = 1/40 holds;
    # reached by 2 (targeted 38): p = 3/40 = 0.075 does not
    design = TestDesign(exceedances=5, max_draws=39)
    draws = [float(k) for k in range(1, 40)]
    assert rank_test('k', 2, 'o', 'full', 39.5, draws, True, design)['verdict'] == 'holds'
    above = rank_test('k', 2, 'o', 'full', 38.0, draws, True, design)
    assert above['p_value'] == pytest.approx(3 / 40) and above['verdict'] == 'inconclusive'
    assert 'reason' not in above        # the floor 1/40 is below alpha


def test_single_model_claims_read_the_models_own_rank_tests():
    verdicts = [c['verdict'] for c in paper_claims([('m', _model(3.0, 2.0, 0.2, 0.01))])]
    assert verdicts == ['inconclusive', 'holds']


def test_resamples_with_an_undefined_miou_are_counted_not_skipped():
    """The center holds labelled pixels in image 0 only: every resample that leaves image 0
    out has no center mIoU. They are counted, and with more than 10% of them undefined the
    interval is not computed (the reason says so)."""
    counts, settings = _two_region_counts()
    counts.gt[1:, 1] = 0
    for key in counts.keys:
        counts.tp[key][1:, 1] = 0
        counts.pred[key][1:, 1] = 0
    statistics, _ = build_statistics(settings, counts, num_resamples=200, seed=0)
    entry = statistics['settings']['clean']['center']['miou']
    without_image_0 = int((resample_weights(8, 200, 0)[:, 0] == 0).sum())   # about 34%
    assert entry['num_resamples_dropped'] == without_image_0 > 20
    assert entry['ci95'] is None and 'too few finite resamples' in entry['reason']


# ------------------------------------------------------------------ summary.json by hand
# Two constructed models: the pooled tests, the pooled drops, the per-model rows and the
# paper's claims (the exact evidence sentences a reader sees) of build_summary. Fisher's
# p-values are worked from the chi-squared formula, Holm by hand, the t interval from scipy's
# t quantile.
CLAIM_1, CLAIM_2 = 'targeted_vs_random_draws', 'periphery_minus_center_vs_random_draws'
OWN_HALF = 'own_half_vs_random_draws'


def _test(kind, num_channels, attack_region, eval_region, estimate, p_value, primary,
          placebo_p=(0.5, 0.02, 0.9), **extra):
    test = dict(kind=kind, mode='targeted', num_channels=num_channels,
                attack_region=attack_region, eval_region=eval_region, estimate=estimate,
                ci95=[estimate - 1, estimate + 1], p_value=p_value, primary=primary,
                verdict='holds' if p_value is not None and p_value <= 0.05 else 'inconclusive',
                num_draws=19, placebo=dict(p_values=list(placebo_p), num_significant=1,
                                           num_placebos=3, ci95=[0.01, 0.9]))
    test.update(extra)
    return test


def _results(tests, clean_miou, drops):
    settings = [dict(key='clean', mode='clean', num_channels=0, attack_region=None,
                     metrics=dict(mIoU=clean_miou)),
                dict(key='t2', mode='targeted', num_channels=2, attack_region='overall',
                     metrics={})]
    return dict(checkpoint=f'ckpt_{clean_miou}.pth', tests=tests, settings=settings,
                num_channels_total=40,
                statistics=dict(primary=dict(num_channels=2, attack_region='overall'),
                                settings={'clean': {'full': dict(drop=dict(estimate=0.0))},
                                          't2': {'full': dict(drop=dict(estimate=drops[0]))}},
                                random_groups={'2': {'full': dict(drop=dict(
                                    estimate=drops[1]))}}))


# Model a: claim 1 p = 0.04, claim 2 p = 0.5, two exploratory tests (p 0.01 and 0.30).
MODEL_A = _results([
    _test(CLAIM_1, 2, 'overall', 'full', 3.0, 0.04, True, placebo_p=(0.5, 0.02, 0.9, 0.3)),
    _test(CLAIM_2, 2, 'overall', 'periphery-center', 0.5, 0.5, True),
    _test(OWN_HALF, 2, 'left', 'left-right', 1.0, 0.01, False),
    _test(CLAIM_1, 4, 'overall', 'full', 2.0, 0.30, False)], 70.0, (3.0, 1.0))
# Model b: claim 1 p = 0.03, claim 2 p = 0.7, the own-half test only; no N=4 test.
MODEL_B = _results([
    _test(CLAIM_1, 2, 'overall', 'full', 5.0, 0.03, True, placebo_p=(0.01, 0.02, 0.9)),
    _test(CLAIM_2, 2, 'overall', 'periphery-center', -0.5, 0.7, True),
    _test(OWN_HALF, 2, 'left', 'left-right', 2.0, 0.02, False)], 60.0, (5.0, 2.0))
MODELS = [('a', MODEL_A), ('b', MODEL_B)]


def _fisher(*p_values):
    chi2 = -2 * sum(math.log(p) for p in p_values)
    return chi2, scipy_stats.chi2.sf(chi2, 2 * len(p_values))


def test_pooled_tests_by_hand():
    pooled = pool_tests(MODELS)
    assert [(p['kind'], p['num_channels'], p['attack_region']) for p in pooled] == [
        (CLAIM_1, 2, 'overall'), (CLAIM_2, 2, 'overall'), (OWN_HALF, 2, 'left'),
        (CLAIM_1, 4, 'overall')]                        # in the order first seen
    claim1, claim2, own, n4 = pooled
    assert (claim1['mode'], claim1['eval_region']) == ('targeted', 'full')
    # claim 1: Fisher of 0.04 and 0.03; mean gap 4, sd sqrt(2), t CI 4 +- t(0.975, 1) * 1
    chi2, p = _fisher(0.04, 0.03)
    assert claim1['chi2'] == pytest.approx(chi2) and claim1['p_value'] == pytest.approx(p)
    assert claim1['verdict'] == 'holds' and claim1['p_value_holm'] is None
    assert claim1['primary'] is True and claim1['num_models'] == 2
    assert claim1['num_models_holding'] == 2
    assert claim1['mean'] == pytest.approx(4.0) and claim1['std'] == pytest.approx(math.sqrt(2))
    half = scipy_stats.t.ppf(0.975, 1) * math.sqrt(2) / math.sqrt(2)
    assert claim1['ci95'] == pytest.approx([4 - half, 4 + half])
    assert claim1['t'] == pytest.approx(4 / 1.0) and claim1['df'] == 1
    assert claim1['p_value_t'] == pytest.approx(2 * scipy_stats.t.sf(4.0, 1))
    assert claim1['per_model'] == [dict(model='a', estimate=3.0, p_value=0.04, verdict='holds'),
                                   dict(model='b', estimate=5.0, p_value=0.03, verdict='holds')]
    # its placebos: stand-in i of both models combined, as many as the shorter list (3);
    # stand-ins 0 (0.5, 0.01) and 1 (0.02, 0.02) reach 0.05, stand-in 2 (0.9, 0.9) does not
    assert _fisher(0.5, 0.01)[1] < 0.05 and _fisher(0.02, 0.02)[1] < 0.05
    assert claim1['placebo']['num_placebos'] == 3
    assert claim1['placebo']['num_significant'] == 2
    assert claim2['verdict'] == 'inconclusive'
    assert claim2['p_value'] == pytest.approx(_fisher(0.5, 0.7)[1])
    assert claim2['num_models_holding'] == 0
    # exploratory: Holm over (own-half, N=4); own-half Fisher(0.01, 0.02), N=4 a's 0.30 alone
    own_p, n4_p = _fisher(0.01, 0.02)[1], 0.30
    assert own['p_value'] == pytest.approx(own_p) and n4['p_value'] == pytest.approx(n4_p)
    assert n4['chi2'] == pytest.approx(-2 * math.log(0.30))
    assert own['p_value_holm'] == pytest.approx(2 * own_p)       # the smaller, times 2
    assert n4['p_value_holm'] == pytest.approx(max(2 * own_p, n4_p))
    assert own['verdict'] == 'holds' and n4['verdict'] == 'inconclusive'
    assert own['primary'] is False and n4['primary'] is False
    # the model without the N=4 test counts as not computed, and not in the t-test
    assert n4['per_model'][1] == dict(model='b', estimate=None, p_value=None,
                                      verdict='not computed')
    assert n4['num_models'] == 1 and n4['std'] is None and n4['ci95'] is None
    assert n4['placebo']['num_placebos'] == 0 and n4['placebo']['rate'] is None


def test_a_pooled_test_is_held_at_alpha_itself():
    """p <= alpha holds (the level is inclusive, as each model's test is)."""
    one = [('a', _results([_test(CLAIM_1, 2, 'overall', 'full', 3.0, 0.05, True),
                           _test(OWN_HALF, 2, 'left', 'left-right', 1.0, 0.05, False)],
                          70.0, (3.0, 1.0)))]
    pooled = pool_tests(one)
    assert [p['verdict'] for p in pooled] == ['holds', 'holds']
    assert pooled[1]['p_value_holm'] == pytest.approx(0.05)


def test_pooled_placebo_needs_every_model_to_have_placebos():
    tests = [_test(CLAIM_1, 2, 'overall', 'full', 3.0, 0.04, True, placebo_p=())]
    pooled = pool_tests([('a', _results(tests, 70.0, (3.0, 1.0))), ('b', MODEL_B)])
    assert pooled[0]['placebo'] == dict(num_placebos=0, num_significant=0, rate=None,
                                        ci95=None)


def test_summary_rows_drops_and_claims():
    summary = build_summary(MODELS, 'cfg.py')
    assert summary['format'] == 'posattack.summary/2' and summary['config'] == 'cfg.py'
    assert summary['models'] == [
        dict(model='a', checkpoint='ckpt_70.0.pth', clean_mIoU=70.0, num_channels=2,
             attack_region='overall',
             gap=dict(estimate=3.0, ci95=[2.0, 4.0], verdict='holds', p_value=0.04,
                      num_draws=19),
             periphery_minus_center=dict(estimate=0.5, ci95=[-0.5, 1.5],
                                         verdict='inconclusive', p_value=0.5, num_draws=19)),
        dict(model='b', checkpoint='ckpt_60.0.pth', clean_mIoU=60.0, num_channels=2,
             attack_region='overall',
             gap=dict(estimate=5.0, ci95=[4.0, 6.0], verdict='holds', p_value=0.03,
                      num_draws=19),
             periphery_minus_center=dict(estimate=-0.5, ci95=[-1.5, 0.5],
                                         verdict='inconclusive', p_value=0.7, num_draws=19))]
    assert [p['kind'] for p in summary['pooled_tests']] == [CLAIM_1, CLAIM_2, OWN_HALF, CLAIM_1]
    drops = {(d['mode'], d['num_channels'], d['attack_region'], d['eval_region']): d
             for d in summary['pooled_drops']}
    assert set(drops) == {('targeted', 2, 'overall', 'full'), ('random', 2, None, 'full')}
    assert drops['targeted', 2, 'overall', 'full']['per_model'] == dict(a=3.0, b=5.0)
    assert drops['targeted', 2, 'overall', 'full']['mean'] == pytest.approx(4.0)
    assert drops['random', 2, None, 'full']['std'] == pytest.approx(math.sqrt(0.5))
    claims = summary['claims']
    assert [c['verdict'] for c in claims] == ['holds', 'inconclusive']
    assert claims[0]['claim'] == ('Targeted removal hurts more than random removal (N=2 of 40 '
                                  'channels (5%), ranking order overall, full image)')
    assert claims[1]['claim'] == (
        'Targeted removal hurts the periphery more than the center, beyond what random '
        'removal does (N=2 of 40 channels (5%), ranking order overall, difference in '
        'differences)')
    p1 = _fisher(0.04, 0.03)[1]
    half = scipy_stats.t.ppf(0.975, 1)
    assert claims[0]['evidence'] == (
        f'Fisher over 2 models p = {p1:.3g}; 2 of 2 models hold on their own; placebo '
        'false-positive rate 2/3 (95% CI '
        f'{scipy_stats.binomtest(2, 3).proportion_ci(0.95, "exact").low:.2f}-'
        f'{scipy_stats.binomtest(2, 3).proportion_ci(0.95, "exact").high:.2f}); mean gap '
        f'over models +4.00, t 95% CI [{4 - half:+.2f}, {4 + half:+.2f}] (effect size over '
        'training seeds)')
    assert claims[0]['num_models'] == 2 and claims[0]['p_value'] == pytest.approx(p1)
    assert claims[0]['placebo']['num_significant'] == 2
    assert claims[1]['p_value'] == pytest.approx(_fisher(0.5, 0.7)[1])


def test_claims_of_one_model_read_its_own_tests():
    claims = paper_claims([('a', MODEL_A)])
    assert [c['verdict'] for c in claims] == ['holds', 'inconclusive']
    assert claims[0]['num_models'] == 1 and claims[0]['p_value'] == 0.04
    assert claims[0]['placebo'] == MODEL_A['tests'][0]['placebo']
    assert claims[0]['evidence'] == single_model_evidence(MODEL_A['tests'][0])
    # a model without the claim-2 test: not computed, with the reason
    only_claim_1 = dict(MODEL_A, tests=MODEL_A['tests'][:1])
    claims = paper_claims([('a', only_claim_1)])
    assert claims[1]['verdict'] == 'not computed' and claims[1]['num_models'] == 1
    assert claims[1]['evidence'].startswith('no random draws')
    # two models, neither with the claim-2 test
    claims = paper_claims([('a', only_claim_1), ('b', only_claim_1)])
    assert claims[1]['verdict'] == 'not computed' and claims[1]['num_models'] == 2
    assert claims[1]['evidence'] == 'no model gives this test'


def test_no_claims_without_models_or_primary_count():
    assert paper_claims([]) == []
    no_primary = dict(MODEL_A, statistics=dict(primary=None))
    assert headline(no_primary) == (None, None) and headline({}) == (None, None)
    assert paper_claims([('a', no_primary)]) == []
    assert headline(MODEL_A) == (2, 'overall')
    row = build_summary([('a', no_primary)], 'c')['models'][0]
    assert row['gap'] is None and row['periphery_minus_center'] is None


def test_single_model_evidence_in_words():
    test = _test(CLAIM_1, 2, 'overall', 'full', 3.0, 0.04, True, targeted_value=5.0,
                 random_mean=2.0, random_std=1.5,
                 sequential=dict(draws_used=19, exceedances=0, stopped_early=False),
                 detectable=dict(gap=2.5, max_draws=99), ranking_on_scored_images=True,
                 reason='a reason')
    assert single_model_evidence(test) == (
        'targeted +5.00 vs random mean +2.00 (sd 1.50); gap +3.00, image bootstrap 95% CI '
        '[+2.00, +4.00]; rank p = 0.040 (19 draws); placebo false-positive rate 1/3 (95% CI '
        '0.01-0.90); smallest detectable gap about +2.50 (99 draws); ranking selected on the '
        'scored images; a reason')
    stopped = dict(test, sequential=dict(draws_used=7, exceedances=5, stopped_early=True),
                   ci95=None, placebo=None, detectable={}, ranking_on_scored_images=False,
                   random_std=None)
    stopped.pop('reason')
    assert single_model_evidence(stopped) == (
        'gap +3.00, image bootstrap 95% CI n/a; rank p = 0.040 (stopped after 7 draws (5 '
        'reached it)); placebo check not computed')
    no_ci = dict(stopped, placebo=dict(num_significant=0, num_placebos=0, ci95=None))
    assert single_model_evidence(no_ci).endswith('placebo check not computed')
    assert single_model_evidence(dict(test, p_value=None)) == 'a reason'
    assert single_model_evidence(dict(stopped, p_value=None)) == 'not computed'


def test_fisher_of_the_placebos_is_what_scipy_combines():
    """The hand formula used above is scipy's Fisher method (a check on the expectation)."""
    assert _fisher(0.04, 0.03)[1] == pytest.approx(
        scipy_stats.combine_pvalues(np.array([0.04, 0.03]), method='fisher').pvalue)


def test_interval_with_estimate_by_hand():
    samples = np.arange(101.0)           # the 25th and 75th percentiles are 25 and 75
    assert interval_with_estimate(samples, 50.0, level=0.5) == [25.0, 75.0]
    assert interval_with_estimate(samples, 200.0, level=0.5) == [25.0, 200.0]   # widened
    assert interval_with_estimate(samples, -1.0, level=0.5) == [-1.0, 75.0]
    assert interval_with_estimate(samples, float('nan'), level=0.5) == [25.0, 75.0]


def test_interval_entries_and_their_reasons():
    assert _Intervals(4, 2000).reason == ('not computed: 4 image(s); an image bootstrap needs '
                                          'at least 5 (evaluate more images).')
    assert _Intervals(5, 100).reason == (
        'not computed: 100 bootstrap resamples; a 95% percentile interval needs at least 200 '
        '(--bootstrap 2000 is the default).')
    intervals = _Intervals(5, 200)
    assert intervals.reason is None
    samples = np.array([np.nan] * 50 + list(np.arange(150.0)))
    assert intervals.entry(float('nan'), samples) == dict(
        estimate=None, ci95=None, num_resamples_dropped=50,
        reason='not computed: the statistic is undefined.')
    assert intervals.entry(1.0, samples) == dict(
        estimate=1.0, ci95=None, num_resamples_dropped=50,
        reason='not computed: too few finite resamples.')           # 75% finite, under 90%
    assert intervals.entry(1.0, samples, 'mine')['reason'] == 'mine'
    assert _empty_region_reason('center') == (
        'not computed: the center region has no labelled pixel in (most) resamples, so its '
        'mIoU is undefined; evaluate more images or another region.')


def test_the_design_level_reaches_the_placebo_and_detectable_gap():
    design = TestDesign(exceedances=5, max_draws=19, alpha=0.1)
    test = rank_test('k', 2, 'overall', 'full', 30.0, DRAWS, True, design)
    assert test['placebo'] == placebo_rate(VALUES, 5, 19, 0.1) and test['placebo']['alpha'] == 0.1
    assert test['detectable'] == detectable_gap(VALUES, 19, 0.1)


def test_bootstrap_method_in_words():
    counts, settings = _two_region_counts()
    statistics, _ = build_statistics(settings, counts, num_resamples=200, seed=3)
    assert statistics['method'] == ('paired bootstrap over 8 images (200 resamples, seed 3, '
                                    'percentile 95% interval)')
    statistics, _ = build_statistics(settings, counts, num_resamples=200, seed=3,
                                     groups=['a', 'a', 'b', 'b', 'c', 'c', 'd', 'd'])
    assert statistics['method'] == ('paired bootstrap over 4 groups of images (cluster '
                                    'bootstrap) (200 resamples, seed 3, percentile 95% interval)')


def test_pooled_placebo_counts_alpha_itself():
    one = [('a', _results([_test(CLAIM_1, 2, 'overall', 'full', 3.0, 0.04, True,
                                 placebo_p=(0.05, 0.5))], 70.0, (3.0, 1.0)))]
    assert pool_tests(one)[0]['placebo']['num_significant'] == 1


def test_pooled_fields_in_words_and_not_computed_keys():
    pooled = pool_tests(MODELS)[0]
    assert pooled['method'] == ("Fisher's combination of the models' one-sided rank p-values "
                                '(scipy.stats.combine_pvalues)')
    assert pooled['effect_method'] == ('mean of the per-model gaps over training seeds, '
                                       'one-sample t 95% interval (scipy.stats.ttest_1samp)')
    # an exploratory key no model could compute: not computed, not Holm-adjusted
    both = [('a', MODEL_A)]
    both.append(('b', dict(MODEL_B, tests=[_test(OWN_HALF, 2, 'top', 'top-bottom', 1.0, None,
                                                 False)])))
    keyed = {(p['kind'], p['attack_region']): p for p in pool_tests(both)}
    top = keyed[OWN_HALF, 'top']
    assert top['verdict'] == 'not computed' and top['p_value_holm'] is None
    assert top['p_value'] is None


def test_models_without_tests_or_clean_setting():
    bare = dict(MODEL_A, settings=MODEL_A['settings'][1:])      # no clean setting
    bare.pop('tests')
    summary = build_summary([('a', bare), ('b', MODEL_B)], 'c')
    assert summary['models'][0]['clean_mIoU'] is None and summary['models'][0]['gap'] is None
    assert [p['num_models'] for p in summary['pooled_tests']][:1] == [1]
    claims = paper_claims([('a', bare)])
    assert claims[0]['verdict'] == 'not computed'


def test_claims_texts_when_not_computed():
    claim_1 = ('Targeted removal hurts more than random removal (N=2 of 40 channels (5%), '
               'ranking order overall, full image)')
    claim_2 = ('Targeted removal hurts the periphery more than the center, beyond what random '
               'removal does (N=2 of 40 channels (5%), ranking order overall, difference in '
               'differences)')
    only_claim_2 = dict(MODEL_A, tests=MODEL_A['tests'][1:2])
    one = paper_claims([('a', only_claim_2)])
    assert one[0] == dict(claim=claim_1, verdict='not computed', num_models=1,
                          evidence='no random draws, or center and periphery not both '
                                   'evaluated, at the primary count')
    assert one[1]['claim'] == claim_2 and one[1]['verdict'] == 'inconclusive'
    # two models: claim 1 missing does not stop claim 2
    two = paper_claims([('a', only_claim_2), ('b', only_claim_2)])
    assert two[0] == dict(claim=claim_1, verdict='not computed', num_models=2,
                          evidence='no model gives this test')
    assert two[1]['claim'] == claim_2 and two[1]['p_value'] == pytest.approx(
        _fisher(0.5, 0.5)[1])
    # one estimate among the two models: no t interval in the evidence
    no_estimate = dict(MODEL_B, tests=[dict(MODEL_B['tests'][0], estimate=None)])
    evidence = paper_claims([('a', MODEL_A), ('b', no_estimate)])[0]['evidence']
    assert evidence.endswith('mean gap over models +3.00')


def test_pooled_drops_of_no_estimate():
    none = _results([], 70.0, (None, None))
    rows = pool_drops([('a', none)])
    assert {(r['mode'], r['mean'], r['std'], r['num_models']) for r in rows} == {
        ('targeted', None, None, 0), ('random', None, None, 0)}


def test_single_model_evidence_without_a_draw_count():
    test = _test(CLAIM_1, 2, 'overall', 'full', 3.0, 0.04, True, placebo=None)
    test.pop('num_draws')
    assert '(? draws)' in single_model_evidence(test)
