"""The comparisons a reviewer asks for, computed for one attacked model.

From the sweep's settings and the per-image counts (:mod:`posattack.report.per_image`) this builds

* ``statistics``: per setting, and per random group (mean over draws), the mIoU and the drop
  from clean in every test region, each with a paired-bootstrap 95% interval;
* ``tests``: one entry per comparison, each with ``kind``, ``mode``, ``num_channels``,
  ``attack_region``, ``eval_region``, ``estimate``, ``ci95``, ``p_value``, ``method`` and
  ``verdict`` (:mod:`posattack.report.statistics` says how verdicts read an interval):

  - ``targeted_vs_random_draws``: the targeted drop against the distribution of random drops
    of the same N (empirical p, t prediction interval, z); images fixed;
  - ``targeted_minus_random``: targeted drop minus mean random drop, bootstrap over images;
  - ``periphery_minus_center``: periphery drop minus center drop, for the targeted setting
    and for the random group, bootstrap over images;
  - ``own_half_minus_other_half``: for a left/right/top/bottom order, the drop in its own half
    minus the drop in the opposite half, bootstrap over images.

Every random-group statistic is the mean over draws of the per-draw statistic, computed on
the same resample, so a test's interval carries the image noise of all its settings at once.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Optional

import numpy as np

from ..channels.modes import RANDOM, TARGETED
from .per_image import PairedBootstrap, PerImageCounts
from .statistics import (NOT_COMPUTED, bootstrap_p_value, compare_with_draws, percentile_interval,
                         verdict_from_interval)

OPPOSITE_HALF = {'left': 'right', 'right': 'left', 'top': 'bottom', 'bottom': 'top'}
DROP_REGIONS = ('full', 'center', 'periphery', 'left', 'right', 'top', 'bottom')
STATISTICS_FORMAT = 'posattack.statistics/1'


def _bootstrap_method(boot: PairedBootstrap) -> str:
    return (f'paired bootstrap over {len(boot.counts.images)} images '
            f'({boot.num_resamples} resamples, seed {boot.seed}, percentile 95% interval)')


def _interval_entry(point: float, samples: np.ndarray) -> dict:
    interval = percentile_interval(samples) if np.isfinite(point) else None
    return dict(estimate=float(point) if np.isfinite(point) else None, ci95=interval)


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


def _groups(settings: Sequence[Mapping]) -> tuple[list[Mapping], dict[int, list[str]]]:
    targeted = [s for s in settings if s['mode'] == TARGETED]
    randoms: dict[int, list[str]] = {}
    for s in settings:
        if s['mode'] == RANDOM:
            randoms.setdefault(int(s['num_channels']), []).append(s['key'])
    return targeted, randoms


def _test(kind: str, mode: str, num_channels: int, attack_region: Optional[str],
          eval_region: str, estimate: Optional[float], ci95, p_value, method: str,
          verdict: str, **extra) -> dict:
    return dict(kind=kind, mode=mode, num_channels=num_channels, attack_region=attack_region,
                eval_region=eval_region, estimate=estimate, ci95=ci95, p_value=p_value,
                method=method, verdict=verdict, **extra)


def _bootstrap_test(kind, mode, num_channels, attack_region, eval_region, point, samples,
                    method, why_missing: str) -> dict:
    entry = _interval_entry(point, samples)
    extra = {}
    if entry['ci95'] is None:
        extra['reason'] = why_missing
    return _test(kind, mode, num_channels, attack_region, eval_region, entry['estimate'],
                 entry['ci95'], bootstrap_p_value(samples) if entry['ci95'] else None, method,
                 verdict_from_interval(entry['ci95']), **extra)


def _empty_region_reason(region: str) -> str:
    return (f'not computed: the {region} region has no labelled pixel in (most) resamples, '
            'so its mIoU is undefined; evaluate more images or another region.')


def draws_test(num_channels: int, attack_region: str, targeted_drop: Optional[float],
               random_drops: Sequence[float], eval_region: str = 'full') -> dict:
    """The targeted drop against the random draws' distribution (images held fixed)."""
    stats = compare_with_draws(targeted_drop, random_drops)
    n = stats['num_draws']
    method = (f'rank of the targeted drop among {n} random draws (empirical p = '
              '(1 + #draws with drop >= targeted) / (1 + draws)); t-based 95% prediction '
              'interval of one more draw')
    extra = dict(z=stats['z'], prediction_interval=stats['prediction_interval'],
                 random_mean=stats['random_mean'], random_std=stats['random_std'],
                 num_draws=n, p_value_floor=stats['p_value_floor'],
                 targeted_drop=targeted_drop)
    if stats['prediction_interval'] is None:
        extra['reason'] = ('not computed: one random draw is no distribution (no p-value, no '
                           'interval); rerun with --seeds 2 or more (19 or more for p < 0.05 '
                           'to be reachable).' if n == 1 else
                           'not computed: no random draw or no targeted value to compare.')
        verdict = NOT_COMPUTED
    else:
        low, high = stats['prediction_interval']
        verdict = ('holds' if targeted_drop > high else
                   'does not hold' if targeted_drop < low else 'inconclusive')
    return _test('targeted_vs_random_draws', 'targeted', num_channels, attack_region,
                 eval_region, stats['gap'], None, stats['p_value'], method, verdict, **extra)


def build_statistics(settings: Sequence[Mapping], counts: PerImageCounts,
                     num_resamples: int = 2000, seed: int = 0) -> tuple[dict, list[dict]]:
    """``(statistics, tests)`` for one model; see the module docstring.

    ``settings`` are results.json's setting dicts (each with ``key``, ``mode``,
    ``num_channels``, ``attack_region``, ``seed``); every key must be in ``counts``.
    """
    missing = [s['key'] for s in settings if s['key'] not in counts.tp]
    if missing:
        raise ValueError(f'no per-image counts for settings {missing[:3]}: rerun with --resume '
                         'to evaluate them again.')
    if 'clean' not in counts.tp:
        raise ValueError('the statistics need the clean setting; it is missing from the run.')
    boot = PairedBootstrap(counts, num_resamples=num_resamples, seed=seed)
    drops = _Drops(boot)
    method = _bootstrap_method(boot)
    regions = [r for r in DROP_REGIONS if r in counts.regions]

    per_setting = {}
    for s in settings:
        per_setting[s['key']] = {}
        for region in regions:
            miou_point, miou_samples = boot.miou(s['key'], region)
            drop_point, drop_samples = drops.of(s['key'], region)
            per_setting[s['key']][region] = dict(
                miou=_interval_entry(miou_point, miou_samples),
                drop=_interval_entry(drop_point, drop_samples))

    targeted, randoms = _groups(settings)
    random_groups = {}
    for n, keys in sorted(randoms.items()):
        random_groups[str(n)] = {}
        for region in regions:
            pairs = [boot.miou(k, region) for k in keys]
            miou_point = float(np.mean([p for p, _ in pairs]))
            miou_samples = np.mean(np.stack([s for _, s in pairs]), axis=0)
            random_groups[str(n)][region] = dict(
                miou=_interval_entry(miou_point, miou_samples),
                drop=_interval_entry(*drops.mean_of(keys, region)))

    tests: list[dict] = []
    has_pc = 'center' in regions and 'periphery' in regions
    for s in targeted:
        n, region_order, key = int(s['num_channels']), s['attack_region'], s['key']
        keys = randoms.get(n, [])
        if 'full' in regions and keys:
            targeted_drop = drops.of(key, 'full')[0]
            tests.append(draws_test(n, region_order, targeted_drop,
                                    [drops.of(k, 'full')[0] for k in keys]))
            t_point, t_samples = drops.of(key, 'full')
            r_point, r_samples = drops.mean_of(keys, 'full')
            tests.append(_bootstrap_test(
                'targeted_minus_random', 'targeted', n, region_order, 'full',
                t_point - r_point, t_samples - r_samples, method, _empty_region_reason('full')))
        if has_pc:
            tests.append(_bootstrap_test(
                'periphery_minus_center', 'targeted', n, region_order, 'periphery-center',
                *drops.difference([key], 'periphery', 'center'), method,
                _empty_region_reason('center or periphery')))
        other = OPPOSITE_HALF.get(region_order)
        if other is not None and region_order in regions and other in regions:
            tests.append(_bootstrap_test(
                'own_half_minus_other_half', 'targeted', n, region_order,
                f'{region_order}-{other}', *drops.difference([key], region_order, other),
                method, _empty_region_reason(f'{region_order} or {other}')))
    if has_pc:
        for n, keys in sorted(randoms.items()):
            tests.append(_bootstrap_test(
                'periphery_minus_center', 'random', n, None, 'periphery-center',
                *drops.difference(keys, 'periphery', 'center'), method,
                _empty_region_reason('center or periphery')))
    statistics = dict(format=STATISTICS_FORMAT, method=method, num_resamples=num_resamples,
                      seed=seed, num_images=len(counts.images), regions=regions,
                      settings=per_setting, random_groups=random_groups)
    return statistics, tests
