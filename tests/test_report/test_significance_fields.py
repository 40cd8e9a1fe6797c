"""build_statistics' every field, on constructed counts whose answers are worked out by hand.

The construction (as in test_statistics_constructed.py, now in all seven regions): every
labelled pixel is class 0 (P per image and region) and a wrong pixel is predicted 1, with at
least one wrong pixel per image and region, so on a resample with image multiplicities w

    mIoU = 50 - 50 * (w @ e) / (sum(w) * P)         (IoU_0 = 1 - wrong / pixels, IoU_1 = 0)

with ``e`` the per-image wrong pixels of a setting in a region. Every region, image and
setting gets its own numbers, so a field read from the wrong region, setting, draw or
resample differs from the expectation below, which uses numpy and this formula only. The
resample multiplicities are bootstrap_weights' (tested on its own in test_bootstrap_groups.py),
so the intervals are the ones the formula gives on the very resamples the code draws.

Where a field is words (methods, reasons), the expectation is the words, written out.
"""
from __future__ import annotations

import numpy as np
import pytest

from posattack.report.bootstrap_groups import bootstrap_weights
from posattack.report.per_image import PerImageCounts, resample_weights
from posattack.report.significance import build_statistics, finish_verdicts
from posattack.report.test_design import TestDesign as Design

P = 100
N = 10
# the order the counts keep the regions in; build_statistics reports them in its own order
STORED_REGIONS = ['left', 'full', 'right', 'center', 'top', 'periphery', 'bottom']
REPORTED_REGIONS = ['full', 'center', 'periphery', 'left', 'right', 'top', 'bottom']
GROUPS = ['a', 'a', 'b', 'c', 'b', 'c', 'a', 'c', 'b', 'a']      # 3 groups (cities)
NUM_RESAMPLES, SEED = 2000, 7
T_OVERALL, T_LEFT, T_TOP4 = 'targeted/overall/N=2', 'targeted/left/N=2', 'targeted/top/N=4'
# random draws per N, in seed order; their keys sort the other way round (and the settings
# list them shuffled), so only the seeds can put them in order
SEEDS = {2: [0, 1, 2, 10, 11, 30], 1: [4, 7]}
RANDOM = {n: [f'random/N={n}/draw-{"fedcba"[i]}' for i in range(len(seeds))]
          for n, seeds in SEEDS.items()}
_rng = np.random.default_rng(2035)   # a seed whose draws all differ (a tie hides order)
CLEAN = _rng.integers(1, 40, size=(N, len(STORED_REGIONS)))       # wrong pixels, clean
EXTRA = {key: _rng.integers(0, 9, size=(N, len(STORED_REGIONS)))
         for key in [T_OVERALL, T_LEFT, T_TOP4] + RANDOM[2] + RANDOM[1]}
# the targeted sets hurt more where it matters: T_LEFT the left half, T_OVERALL the periphery
EXTRA[T_LEFT][:, STORED_REGIONS.index('left')] += 20
EXTRA[T_OVERALL][:, STORED_REGIONS.index('periphery')] += 15
EXTRA[T_OVERALL][:, STORED_REGIONS.index('full')] += 10
# and every random draw hurts the periphery and the left half more too, so that the random
# differences are far from 0: a targeted-minus-random gap taken as a sum would show
for _key in RANDOM[2] + RANDOM[1]:
    EXTRA[_key][:, [STORED_REGIONS.index('periphery'), STORED_REGIONS.index('left')]] += 6


def _errors(key):
    return CLEAN if key == 'clean' else CLEAN + EXTRA[key]


def _settings():
    settings = [dict(key='clean', mode='clean', num_channels=0, attack_region=None),
                dict(key=T_OVERALL, mode='targeted', num_channels=2, attack_region='overall'),
                dict(key=T_LEFT, mode='targeted', num_channels=2, attack_region='left'),
                dict(key=T_TOP4, mode='targeted', num_channels=4, attack_region='top')]
    for n, keys in RANDOM.items():
        settings += [dict(key=k, mode='random', num_channels=n, attack_region=None, seed=s)
                     for s, k in sorted(zip(SEEDS[n], keys), key=lambda sk: sk[0] % 3)]
    return settings


def _counts(keep=None, only_first_image=False):
    """PerImageCounts of the construction, in the regions ``keep`` (default all)."""
    regions = keep or STORED_REGIONS
    columns = [STORED_REGIONS.index(r) for r in regions]
    present = np.zeros(N, bool)
    present[0 if only_first_image else slice(None)] = True
    gt = np.zeros((N, len(regions), 2), np.uint32)
    gt[present, :, 0] = P
    tp, pred = {}, {}
    for key in ['clean'] + list(EXTRA):
        wrong = np.where(present[:, None], _errors(key)[:, columns], 0)
        tp[key] = np.zeros((N, len(regions), 2), np.uint32)
        tp[key][:, :, 0] = gt[:, :, 0] - wrong
        pred[key] = np.stack([gt[:, :, 0] - wrong, wrong], axis=2).astype(np.uint32)
    return PerImageCounts([f'img{i}' for i in range(N)], regions, gt, tp, pred)


# ------------------------------------------------------------------ expectations by hand
WEIGHTS = bootstrap_weights(N, NUM_RESAMPLES, SEED, GROUPS)
ALL = np.ones((1, N))


def miou(keys, region, w):
    """Mean over ``keys`` of their mIoU on the resamples ``w`` (rows): the formula above."""
    column = STORED_REGIONS.index(region)
    return np.mean([50 - 50 * (w @ _errors(k)[:, column]) / (w.sum(axis=1) * P)
                    for k in keys], axis=0)


def drop(keys, region, w):
    return miou(['clean'], region, w) - miou(keys, region, w)


def difference(keys, region_a, region_b, w):
    return drop(keys, region_a, w) - drop(keys, region_b, w)


def entry(statistic, *args):
    """(estimate, widened percentile interval) of ``statistic(*args, w)``."""
    point = float(statistic(*args, ALL)[0])
    low, high = np.percentile(statistic(*args, WEIGHTS), [2.5, 97.5])
    return point, [min(low, point), max(high, point)]


def rank_p(targeted, draws):
    """Fixed-size rank p-value: (1 + draws at or above) / (1 + draws)."""
    return (1 + sum(d >= targeted for d in draws)) / (1 + len(draws))


def holm(p_values):
    order = sorted(range(len(p_values)), key=p_values.__getitem__)
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def assert_fields(actual: dict, expected: dict):
    """Every expected field equal (numbers approximately); no field missing."""
    assert set(expected) <= set(actual), set(expected) - set(actual)
    for name, value in expected.items():
        if isinstance(value, (float, list)):
            assert actual[name] == pytest.approx(value, abs=1e-9), name
        else:
            assert actual[name] == value, name


def _built(**kwargs):
    kwargs = dict(dict(num_resamples=NUM_RESAMPLES, seed=SEED, num_channels_total=40,
                       groups=GROUPS, ranking_on_scored_images=True), **kwargs)
    return build_statistics(_settings(), _counts(), **kwargs)


# ------------------------------------------------------------------ the tests
def test_the_header_fields():
    statistics, _ = _built(design=Design(exceedances=3, max_draws=6))
    assert_fields(statistics, dict(
        format='posattack.statistics/2',
        method='paired bootstrap over 3 groups of images (cluster bootstrap) (2000 resamples, '
               'seed 7, percentile 95% interval)',
        num_resamples=2000, seed=7, num_images=N, bootstrap_groups=3,
        regions=REPORTED_REGIONS,
        design=dict(primary_fraction=0.05, exceedances=3, max_draws=6, alpha=0.05),
        primary=dict(num_channels=2, attack_region='overall'), ranking_on_scored_images=True))
    assert set(statistics) == {'format', 'method', 'num_resamples', 'seed', 'num_images',
                               'bootstrap_groups', 'regions', 'design', 'primary',
                               'ranking_on_scored_images', 'settings', 'random_groups',
                               'effects'}


def test_the_defaults_iid_images_2000_resamples_seed_0():
    statistics, tests = build_statistics(_settings(), _counts())
    assert_fields(statistics, dict(
        method=f'paired bootstrap over {N} images (2000 resamples, seed 0, percentile 95% '
               'interval)', num_resamples=2000, seed=0, bootstrap_groups=None,
        ranking_on_scored_images=False, primary=dict(num_channels=None, attack_region=None),
        design=dict(primary_fraction=0.05, exceedances=5, max_draws=99, alpha=0.05)))
    assert tests and all(t['ranking_on_scored_images'] is False for t in tests)
    assert all(not t['primary'] for t in tests)     # no total count: nothing is primary
    iid = resample_weights(N, 2000, 0)
    drop_entry = statistics['settings'][T_LEFT]['left']['drop']
    samples = drop([T_LEFT], 'left', iid)
    point = float(drop([T_LEFT], 'left', ALL)[0])
    assert drop_entry['estimate'] == pytest.approx(point)
    assert drop_entry['ci95'] == pytest.approx(list(np.percentile(samples, [2.5, 97.5])))


def test_every_setting_and_random_group_on_the_cluster_resamples():
    statistics, _ = _built()
    assert list(statistics['settings']) == [s['key'] for s in _settings()]
    for key in statistics['settings']:
        keys = [key]
        assert list(statistics['settings'][key]) == REPORTED_REGIONS
        for region in REPORTED_REGIONS:
            got = statistics['settings'][key][region]
            for name, statistic in (('miou', miou), ('drop', drop)):
                estimate, ci95 = entry(statistic, keys, region)
                assert_fields(got[name], dict(estimate=estimate, ci95=ci95,
                                              num_resamples_dropped=0))
    assert sorted(statistics['random_groups']) == ['1', '2']
    for n, keys in RANDOM.items():
        for region in REPORTED_REGIONS:
            got = statistics['random_groups'][str(n)][region]
            for name, statistic in (('miou', miou), ('drop', drop)):
                estimate, ci95 = entry(statistic, keys, region)
                assert_fields(got[name], dict(estimate=estimate, ci95=ci95))


def _expected_tests():
    """Every rank test by hand: (kind, order) -> fields."""
    out = {}
    for key, order in ((T_OVERALL, 'overall'), (T_LEFT, 'left')):
        draws = RANDOM[2]
        for kind, region, targeted, per_draw, effect in (
                ('targeted_vs_random_draws', 'full',
                 drop([key], 'full', ALL)[0], [drop([k], 'full', ALL)[0] for k in draws],
                 lambda w, key=key: drop([key], 'full', w) - drop(draws, 'full', w)),
                ('periphery_minus_center_vs_random_draws', 'periphery-center',
                 difference([key], 'periphery', 'center', ALL)[0],
                 [difference([k], 'periphery', 'center', ALL)[0] for k in draws],
                 lambda w, key=key: (difference([key], 'periphery', 'center', w)
                                     - difference(draws, 'periphery', 'center', w))),
                ('own_half_vs_random_draws', 'left-right',
                 difference([key], 'left', 'right', ALL)[0],
                 [difference([k], 'left', 'right', ALL)[0] for k in draws],
                 lambda w, key=key: (difference([key], 'left', 'right', w)
                                     - difference(draws, 'left', 'right', w)))):
            if kind == 'own_half_vs_random_draws' and order != 'left':
                continue
            estimate, ci95 = entry(lambda w, f=effect: f(w))
            out[kind, order] = dict(
                kind=kind, mode='targeted', num_channels=2, attack_region=order,
                eval_region=region, primary=order == 'overall',
                targeted_value=float(targeted), random_mean=float(np.mean(per_draw)),
                random_std=float(np.std(per_draw, ddof=1)), num_draws=6,
                estimate=float(targeted - np.mean(per_draw)), ci95=ci95,
                p_value=rank_p(targeted, per_draw), num_resamples_dropped=0,
                ranking_on_scored_images=True, verdict='inconclusive')
            # each draw as a stand-in target against the 5 others, in seed order
            out[kind, order]['placebo_p_values'] = [
                rank_p(d, per_draw[:i] + per_draw[i + 1:]) for i, d in enumerate(per_draw)]
    return out


def test_every_rank_test_by_hand():
    _, tests = _built()
    expected = _expected_tests()
    # T_TOP4 has no random draws of its N: no test; T_OVERALL no half of its own
    assert [(t['kind'], t['attack_region']) for t in tests] == [
        ('targeted_vs_random_draws', 'overall'),
        ('periphery_minus_center_vs_random_draws', 'overall'),
        ('targeted_vs_random_draws', 'left'),
        ('periphery_minus_center_vs_random_draws', 'left'),
        ('own_half_vs_random_draws', 'left')]
    for test in tests:
        want = dict(expected[test['kind'], test['attack_region']])
        placebo = want.pop('placebo_p_values')
        assert_fields(test, want)
        assert 'ci95_reason' not in test
        assert len(set(placebo)) == len(placebo)          # distinct: their order shows
        assert test['placebo']['p_values'] == pytest.approx(placebo)
    # the construction can tell a gap from a sum: targeted plus random mean lies outside
    # the interval of targeted minus random
    for test in tests:
        low, high = test['ci95']
        assert not low <= test['targeted_value'] + test['random_mean'] <= high
    # the tests at N=2 of order 'overall' are primary (5% of 40 channels); the rest are
    # exploratory, Holm-adjusted together
    exploratory = [t for t in tests if t['attack_region'] == 'left']
    assert all(t['primary'] is False for t in exploratory)
    assert [t['p_value_holm'] for t in exploratory] == pytest.approx(
        holm([t['p_value'] for t in exploratory]))
    assert all(t['p_value_holm'] is None for t in tests if t['primary'] is True)
    # the primary design: at most 99 draws, stop at 5 exceedances
    assert all(t['sequential']['max_draws'] == (99 if t['primary'] else 6) for t in tests)


def test_every_effect_by_hand():
    statistics, _ = _built()
    expected = []
    for key, n, order in ((T_OVERALL, 2, 'overall'), (T_LEFT, 2, 'left'), (T_TOP4, 4, 'top')):
        estimate, ci95 = entry(difference, [key], 'periphery', 'center')
        expected.append(dict(kind='periphery_minus_center', mode='targeted', num_channels=n,
                             attack_region=order, eval_region='periphery-center',
                             estimate=estimate, ci95=ci95, num_resamples_dropped=0))
        if order != 'overall':
            other = dict(left='right', top='bottom')[order]
            estimate, ci95 = entry(difference, [key], order, other)
            expected.append(dict(kind='own_half_minus_other_half', mode='targeted',
                                 num_channels=n, attack_region=order,
                                 eval_region=f'{order}-{other}', estimate=estimate, ci95=ci95,
                                 num_resamples_dropped=0))
    for n in (1, 2):
        estimate, ci95 = entry(difference, RANDOM[n], 'periphery', 'center')
        expected.append(dict(kind='periphery_minus_center', mode='random', num_channels=n,
                             attack_region=None, eval_region='periphery-center',
                             estimate=estimate, ci95=ci95, num_resamples_dropped=0))
    assert len(statistics['effects']) == len(expected)
    for got, want in zip(statistics['effects'], expected):
        assert set(got) == set(want)
        assert_fields(got, want)


def _reason(regions):
    return (f'not computed: the {regions} region has no labelled pixel in (most) resamples, '
            'so its mIoU is undefined; evaluate more images or another region.')


def test_regions_labelled_in_one_image_only_give_reasons_not_intervals():
    counts = _counts(only_first_image=True)
    statistics, tests = build_statistics(_settings(), counts, num_resamples=NUM_RESAMPLES,
                                         seed=SEED)
    # every resample without image 0 has no labelled pixel: an undefined mIoU
    dropped = int(np.count_nonzero(resample_weights(N, NUM_RESAMPLES, SEED)[:, 0] == 0))
    assert 0.1 * NUM_RESAMPLES < dropped < NUM_RESAMPLES
    reasons = {('targeted_vs_random_draws', 'full'): _reason('full'),
               ('periphery_minus_center_vs_random_draws', 'periphery-center'):
                   _reason('center or periphery'),
               ('own_half_vs_random_draws', 'left-right'): _reason('left or right')}
    assert len(tests) == 5
    for test in tests:
        assert test['ci95'] is None and test['num_resamples_dropped'] == dropped
        assert test['ci95_reason'] == reasons[test['kind'], test['eval_region']]
    effect_reasons = {'periphery-center': _reason('center or periphery'),
                      'left-right': _reason('left or right'),
                      'top-bottom': _reason('top or bottom')}
    assert len(statistics['effects']) == 7
    for effect in statistics['effects']:
        assert effect['ci95'] is None and effect['num_resamples_dropped'] == dropped
        assert effect['reason'] == effect_reasons[effect['eval_region']]
    setting = statistics['settings'][T_LEFT]['left']['drop']
    assert setting['reason'] == 'not computed: too few finite resamples.'


def test_without_both_halves_or_both_rings_no_difference_is_taken():
    # center without periphery, right without left, top without bottom: no difference of
    # two regions can be formed, and none is attempted (each would need a missing region)
    counts = _counts(keep=['top', 'full', 'center', 'right'])
    statistics, tests = build_statistics(_settings(), counts, num_resamples=NUM_RESAMPLES,
                                         seed=SEED, num_channels_total=40)
    assert statistics['regions'] == ['full', 'center', 'right', 'top']
    assert statistics['effects'] == []
    assert [(t['kind'], t['attack_region']) for t in tests] == [
        ('targeted_vs_random_draws', 'overall'), ('targeted_vs_random_draws', 'left')]


def test_a_setting_without_counts_is_named():
    settings = _settings() + [dict(key='targeted/overall/N=8', mode='targeted',
                                   num_channels=8, attack_region='overall')]
    with pytest.raises(ValueError, match=r"settings \['targeted/overall/N=8'\]: rerun"):
        build_statistics(settings, _counts(), num_resamples=NUM_RESAMPLES, seed=SEED)


def test_exploratory_verdicts_from_holm_adjusted_p_values_at_or_below_alpha():
    tests = [dict(primary=False, p_value=0.025), dict(primary=False, p_value=0.5),
             dict(primary=False, p_value=None, verdict='not computed'),
             dict(primary=True, p_value=0.01, verdict='holds')]
    finish_verdicts(tests, 0.05)
    # two p-values: 2 * 0.025 = 0.05 (at alpha: holds), then max(0.05, 1 * 0.5) = 0.5
    assert [t.get('p_value_holm') for t in tests] == [0.05, 0.5, None, None]
    assert [t['verdict'] for t in tests] == ['holds', 'inconclusive', 'not computed', 'holds']
