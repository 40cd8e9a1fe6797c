"""The comparisons a reviewer asks for, computed for one attacked model.

From the sweep's settings and the per-image counts (:mod:`posattack.report.per_image`) this builds

* ``statistics``: per setting, and per random group (mean over draws), the mIoU and the drop
  from clean in every test region, each with a paired-bootstrap 95% interval;
* ``tests``: the verdict-giving rank tests (:mod:`posattack.report.rank_tests`), one per
  question, each with ``kind``, ``num_channels``, ``attack_region``, ``eval_region``,
  ``estimate`` (targeted minus the random mean) with its image-bootstrap ``ci95`` (an effect
  size, no verdict of its own), ``p_value`` (rank among the random draws), ``primary``,
  ``p_value_holm`` (exploratory tests), ``verdict``, ``placebo`` (the same test on each
  random draw as a stand-in target) and ``detectable`` (the smallest gap it could call):

  - ``targeted_vs_random_draws``: the targeted full-image drop among random drops (claim 1);
  - ``periphery_minus_center_vs_random_draws``: the targeted (periphery - center) drop
    among the random draws' own (claim 2, a difference in differences);
  - ``own_half_vs_random_draws``: for a left/right/top/bottom order, its own half's drop
    minus the other half's, among the random draws' same difference.

* ``effects``: descriptive image-bootstrap intervals with no verdict (the targeted and random
  periphery-minus-center, own half minus other half).

The primary tests are fixed in :mod:`posattack.report.test_design`; the rest are exploratory,
Holm-adjusted together. A rank test is exact when the ranking did not see the scored images;
when it did, every test carries ``ranking_on_scored_images``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Optional

import numpy as np

from ..channels.modes import RANDOM, TARGETED
from .bootstrap_groups import bootstrap_weights
from .per_image import PairedBootstrap, PerImageCounts
from .rank_tests import detectable_gap, holm_adjust, placebo_rate, sequential_p_value
from .statistics import HOLDS, INCONCLUSIVE, NOT_COMPUTED, interval_with_estimate
from .test_design import TestDesign, primary_setting

OPPOSITE_HALF = {'left': 'right', 'right': 'left', 'top': 'bottom', 'bottom': 'top'}
DROP_REGIONS = ('full', 'center', 'periphery', 'left', 'right', 'top', 'bottom')
STATISTICS_FORMAT = 'posattack.statistics/2'
# Below these an interval means nothing: a percentile interval of 5 images or 100 resamples.
MIN_IMAGES_FOR_INTERVAL = 5
MIN_RESAMPLES_FOR_INTERVAL = 200


def _bootstrap_method(boot: PairedBootstrap, groups: Optional[Sequence[str]]) -> str:
    unit = (f'{len(set(groups))} groups of images (cluster bootstrap)' if groups is not None
            else f'{len(boot.counts.images)} images')
    return (f'paired bootstrap over {unit} ({boot.num_resamples} resamples, seed {boot.seed}, '
            'percentile 95% interval)')


class _Drops:
    """Drop samples (clean minus setting) per (keys, region), on one shared resample.

    Every method takes a list of setting keys and averages over them: one key for a
    targeted setting, a random group's keys for the mean over draws.
    """

    def __init__(self, boot: PairedBootstrap):
        self.boot = boot

    def mean_of(self, keys: Sequence[str], region: str) -> tuple[float, np.ndarray]:
        clean_point, clean_samples = self.boot.miou('clean', region)
        pairs = [self.boot.miou(k, region) for k in keys]
        return (clean_point - float(np.mean([p for p, _ in pairs])),
                clean_samples - np.mean(np.stack([s for _, s in pairs]), axis=0))

    def of(self, key: str, region: str) -> tuple[float, np.ndarray]:
        return self.mean_of([key], region)

    def difference(self, keys: Sequence[str], region_a: str, region_b: str
                   ) -> tuple[float, np.ndarray]:
        """Drop in ``region_a`` minus drop in ``region_b`` (e.g. periphery minus center)."""
        a_point, a_samples = self.mean_of(keys, region_a)
        b_point, b_samples = self.mean_of(keys, region_b)
        return a_point - b_point, a_samples - b_samples


class _Intervals:
    """Percentile intervals, or the reason there is none (too few images or resamples)."""

    def __init__(self, num_images: int, num_resamples: int):
        self.reason = None
        if num_images < MIN_IMAGES_FOR_INTERVAL:
            self.reason = (f'not computed: {num_images} image(s); an image bootstrap needs at '
                           f'least {MIN_IMAGES_FOR_INTERVAL} (evaluate more images).')
        elif num_resamples < MIN_RESAMPLES_FOR_INTERVAL:
            self.reason = (f'not computed: {num_resamples} bootstrap resamples; a 95% '
                           f'percentile interval needs at least {MIN_RESAMPLES_FOR_INTERVAL} '
                           '(--bootstrap 2000 is the default).')

    def entry(self, point: float, samples: np.ndarray, empty_reason: str = '') -> dict:
        finite = bool(np.isfinite(point))
        out = dict(estimate=float(point) if finite else None, ci95=None,
                   num_resamples_dropped=int(np.count_nonzero(~np.isfinite(samples))))
        if self.reason is not None:
            out['reason'] = self.reason
        elif finite:
            out['ci95'] = interval_with_estimate(samples, float(point))
            if out['ci95'] is None:
                out['reason'] = empty_reason or 'not computed: too few finite resamples.'
        else:
            out['reason'] = empty_reason or 'not computed: the statistic is undefined.'
        return out


def _empty_region_reason(region: str) -> str:
    return (f'not computed: the {region} region has no labelled pixel in (most) resamples, '
            'so its mIoU is undefined; evaluate more images or another region.')


def _groups(settings: Sequence[Mapping]) -> tuple[list[Mapping], dict[int, list[str]]]:
    """Targeted settings, and per N the random keys in seed order (the sequential order)."""
    targeted = [s for s in settings if s['mode'] == TARGETED]
    randoms: dict[int, list[tuple[int, str]]] = {}
    for s in settings:
        if s['mode'] == RANDOM:
            randoms.setdefault(int(s['num_channels']), []).append((int(s.get('seed') or 0),
                                                                   s['key']))
    return targeted, {n: [k for _, k in sorted(pairs)] for n, pairs in randoms.items()}


def rank_test(kind: str, num_channels: int, attack_region: Optional[str], eval_region: str,
              targeted: Optional[float], draws: Sequence[float], primary: bool,
              design: TestDesign, effect: Optional[dict] = None) -> dict:
    """One verdict-giving test: the rank of ``targeted`` among ``draws`` (in seed order).

    Primary tests are sequential (Besag-Clifford, ``design.exceedances`` and
    ``design.max_draws``); exploratory ones use every draw made (fixed size), and their
    verdict is set later from the Holm-adjusted p-value (:func:`finish_verdicts`).
    """
    values = np.asarray([v for v in draws if v is not None and np.isfinite(v)], dtype=float)
    exceedances = design.exceedances if primary else None
    max_draws = design.max_draws if primary else len(values)
    sequence = sequential_p_value(targeted, values, exceedances, max_draws)
    mean = float(values.mean()) if len(values) else None
    std = float(values.std(ddof=1)) if len(values) >= 2 else None
    estimate = None if targeted is None or mean is None else float(targeted - mean)
    test = dict(kind=kind, mode='targeted', num_channels=num_channels,
                attack_region=attack_region, eval_region=eval_region, primary=primary,
                estimate=estimate, ci95=(effect or {}).get('ci95'),
                targeted_value=targeted, random_mean=mean, random_std=std,
                num_draws=len(values), p_value=sequence['p_value'], p_value_holm=None,
                sequential=sequence, verdict=NOT_COMPUTED,
                placebo=placebo_rate(values, exceedances, max_draws, design.alpha),
                detectable=detectable_gap(values, max_draws, design.alpha),
                method=('sequential rank test among random draws (Besag & Clifford 1991: stop '
                        f'once {exceedances} draws reach the targeted value, at most '
                        f'{max_draws} draws); one-sided, alpha {design.alpha}' if primary else
                        f'rank test among {len(values)} random draws, one-sided, '
                        'Holm-adjusted over the exploratory tests'))
    if effect and effect.get('reason'):
        test['ci95_reason'] = effect['reason']
    if effect:
        test['num_resamples_dropped'] = effect.get('num_resamples_dropped', 0)
    if sequence['p_value'] is None:
        test['reason'] = 'not computed: no random draw or no targeted value to rank.'
    elif len(values) < 2 or not std:
        # Draws that all give the same value are no distribution to rank against.
        test.update(p_value=None, reason='not computed: the random draws have zero spread '
                    '(or fewer than 2); no rank test can separate a set from them.')
    elif primary:
        test['verdict'] = HOLDS if sequence['p_value'] <= design.alpha else INCONCLUSIVE
        if sequence['p_value_floor'] > design.alpha:
            test['reason'] = (f'{sequence["draws_used"]} random draws cannot give p < '
                              f'{design.alpha}: the floor is {sequence["p_value_floor"]:.3f}; '
                              'allow 19 or more (--max-draws).')
    return test


def finish_verdicts(tests: list[dict], alpha: float) -> None:
    """Holm-adjust the exploratory tests' p-values together and set their verdicts."""
    exploratory = [t for t in tests if not t['primary'] and t['p_value'] is not None]
    for test, adjusted in zip(exploratory, holm_adjust([t['p_value'] for t in exploratory])):
        test['p_value_holm'] = adjusted
        test['verdict'] = HOLDS if adjusted <= alpha else INCONCLUSIVE


def build_statistics(settings: Sequence[Mapping], counts: PerImageCounts,
                     num_resamples: int = 2000, seed: int = 0,
                     num_channels_total: Optional[int] = None,
                     design: Optional[TestDesign] = None,
                     groups: Optional[Sequence[str]] = None,
                     ranking_on_scored_images: bool = False) -> tuple[dict, list[dict]]:
    """``(statistics, tests)`` for one model; see the module docstring.

    ``settings`` are results.json's setting dicts (each with ``key``, ``mode``,
    ``num_channels``, ``attack_region``, ``seed``); every key must be in ``counts``.
    ``groups`` (one label per image of ``counts``) makes the bootstrap resample groups.
    """
    design = design or TestDesign()
    missing = [s['key'] for s in settings if s['key'] not in counts.tp]
    if missing:
        raise ValueError(f'no per-image counts for settings {missing[:3]}: rerun with --resume '
                         'to evaluate them again.')
    if 'clean' not in counts.tp:
        raise ValueError('the statistics need the clean setting; it is missing from the run.')
    weights = bootstrap_weights(len(counts.images), num_resamples, seed, groups)
    boot = PairedBootstrap(counts, num_resamples=num_resamples, seed=seed, weights=weights)
    drops = _Drops(boot)
    intervals = _Intervals(len(counts.images), num_resamples)
    regions = [r for r in DROP_REGIONS if r in counts.regions]

    per_setting = {}
    for s in settings:
        per_setting[s['key']] = {}
        for region in regions:
            per_setting[s['key']][region] = dict(
                miou=intervals.entry(*boot.miou(s['key'], region)),
                drop=intervals.entry(*drops.of(s['key'], region)))

    targeted, randoms = _groups(settings)
    random_groups = {}
    for n, keys in sorted(randoms.items()):
        random_groups[str(n)] = {}
        for region in regions:
            pairs = [boot.miou(k, region) for k in keys]
            random_groups[str(n)][region] = dict(
                miou=intervals.entry(float(np.mean([p for p, _ in pairs])),
                                     np.mean(np.stack([s for _, s in pairs]), axis=0)),
                drop=intervals.entry(*drops.mean_of(keys, region)))

    if num_channels_total is None:
        primary_n, primary_order = None, None
    else:
        primary_n, primary_order = primary_setting(settings, num_channels_total, design)
    tests: list[dict] = []
    effects: list[dict] = []
    has_pc = 'center' in regions and 'periphery' in regions
    for s in targeted:
        n, order, key = int(s['num_channels']), s['attack_region'], s['key']
        keys = randoms.get(n, [])
        primary = n == primary_n and order == primary_order
        if 'full' in regions and keys:
            t_point, t_samples = drops.of(key, 'full')
            r_point, r_samples = drops.mean_of(keys, 'full')
            effect = intervals.entry(t_point - r_point, t_samples - r_samples,
                                     _empty_region_reason('full'))
            tests.append(rank_test('targeted_vs_random_draws', n, order, 'full', t_point,
                                   [drops.of(k, 'full')[0] for k in keys], primary, design,
                                   effect))
        if has_pc and keys:
            t_point, t_samples = drops.difference([key], 'periphery', 'center')
            r_point, r_samples = drops.difference(keys, 'periphery', 'center')
            effect = intervals.entry(t_point - r_point, t_samples - r_samples,
                                     _empty_region_reason('center or periphery'))
            tests.append(rank_test(
                'periphery_minus_center_vs_random_draws', n, order, 'periphery-center', t_point,
                [drops.difference([k], 'periphery', 'center')[0] for k in keys], primary,
                design, effect))
        if has_pc:
            effects.append(dict(kind='periphery_minus_center', mode='targeted', num_channels=n,
                                attack_region=order, eval_region='periphery-center',
                                **intervals.entry(*drops.difference([key], 'periphery',
                                                                    'center'),
                                                  _empty_region_reason('center or periphery'))))
        other = OPPOSITE_HALF.get(order)
        if other is not None and order in regions and other in regions:
            t_point, t_samples = drops.difference([key], order, other)
            effects.append(dict(kind='own_half_minus_other_half', mode='targeted',
                                num_channels=n, attack_region=order,
                                eval_region=f'{order}-{other}',
                                **intervals.entry(t_point, t_samples,
                                                  _empty_region_reason(f'{order} or {other}'))))
            if keys:
                r_point, r_samples = drops.difference(keys, order, other)
                effect = intervals.entry(t_point - r_point, t_samples - r_samples,
                                         _empty_region_reason(f'{order} or {other}'))
                tests.append(rank_test(
                    'own_half_vs_random_draws', n, order, f'{order}-{other}', t_point,
                    [drops.difference([k], order, other)[0] for k in keys], False, design,
                    effect))
    if has_pc:
        for n, keys in sorted(randoms.items()):
            effects.append(dict(kind='periphery_minus_center', mode='random', num_channels=n,
                                attack_region=None, eval_region='periphery-center',
                                **intervals.entry(*drops.difference(keys, 'periphery', 'center'),
                                                  _empty_region_reason('center or periphery'))))
    finish_verdicts(tests, design.alpha)
    for test in tests:
        test['ranking_on_scored_images'] = bool(ranking_on_scored_images)
    statistics = dict(format=STATISTICS_FORMAT, method=_bootstrap_method(boot, groups),
                      num_resamples=num_resamples, seed=seed, num_images=len(counts.images),
                      bootstrap_groups=None if groups is None else len(set(groups)),
                      regions=regions, design=design.to_dict(),
                      primary=dict(num_channels=primary_n, attack_region=primary_order),
                      ranking_on_scored_images=bool(ranking_on_scored_images),
                      settings=per_setting, random_groups=random_groups, effects=effects)
    return statistics, tests
