"""The false-positive rate of every verdict-giving test, measured on a finished run.

Each random draw at a count N is passed off as the targeted set and tested against the other
draws of N exactly as the real targeted set is. Under the null the verdict tests must say
"holds" for at most alpha of these placebos. For comparison the table also applies the test
posattack used before the rank tests (an image-bootstrap interval of the stand-in's drop
minus the other draws' mean drop, "holds" when it lies above 0): it leaves the spread between
random channel sets out of its interval, which is why it was not calibrated.

Usage::

    rows = placebo_rows(results, PerImageCounts.load('per_image.npz'))
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import numpy as np

from ..channels.modes import RANDOM
from .per_image import PairedBootstrap, PerImageCounts
from .rank_tests import binomial_rate, placebo_rate
from .statistics import percentile_interval
from .test_design import TestDesign

STATISTICS = (('claim 1: full-image drop', 'full', None),
              ('claim 2: periphery - center drop (DiD)', 'periphery', 'center'))


def _draw_keys(results: Mapping) -> dict[int, list[str]]:
    draws: dict[int, list[tuple[int, str]]] = {}
    for s in results['settings']:
        if s['mode'] == RANDOM:
            draws.setdefault(int(s['num_channels']), []).append((int(s['seed']), s['key']))
    return {n: [k for _, k in sorted(pairs)] for n, pairs in sorted(draws.items())}


def _drop(boot: PairedBootstrap, key: str, region: str, minus: Optional[str]
          ) -> tuple[float, np.ndarray]:
    clean_point, clean_samples = boot.miou('clean', region)
    point, samples = boot.miou(key, region)
    drop = (clean_point - point, clean_samples - samples)
    if minus is None:
        return drop
    other = _drop(boot, key, minus, None)
    return drop[0] - other[0], drop[1] - other[1]


def _old_bootstrap_rate(points: np.ndarray, samples: np.ndarray) -> dict:
    """The pre-rank-test verdict on each stand-in: bootstrap CI of own minus others' mean."""
    n = len(points)
    total = samples.sum(axis=0)
    significant = 0
    for i in range(n):
        others = (total - samples[i]) / (n - 1)
        interval = percentile_interval(samples[i] - others)
        significant += int(interval is not None and interval[0] > 0)
    return binomial_rate(significant, n)


def placebo_rows(results: Mapping, counts: PerImageCounts, design: Optional[TestDesign] = None,
                 num_resamples: int = 2000, seed: int = 0) -> list[dict]:
    """Per N and statistic: placebos, rank-test false positives, and the old test's."""
    design = design or TestDesign()
    primary_n = design.primary_num_channels(int(results['num_channels_total']))
    boot = PairedBootstrap(counts, num_resamples=num_resamples, seed=seed)
    rows = []
    for n, keys in _draw_keys(results).items():
        if len(keys) < 2:
            continue
        for name, region, minus in STATISTICS:
            if region not in counts.regions or (minus and minus not in counts.regions):
                continue
            pairs = [_drop(boot, k, region, minus) for k in keys]
            points = np.array([p for p, _ in pairs])
            primary = n == primary_n
            rank = placebo_rate(points, design.exceedances if primary else None,
                                design.max_draws if primary else None, design.alpha)
            rank.pop('p_values', None)
            rows.append(dict(num_channels=n, statistic=name, primary=primary,
                             num_draws=len(keys), rank_test=rank,
                             old_bootstrap_test=_old_bootstrap_rate(
                                 points, np.stack([s for _, s in pairs]))))
    return rows


def placebo_markdown(rows: list[dict], alpha: float = 0.05) -> list[str]:
    def rate(entry):
        if not entry['num_placebos']:
            return 'n/a'
        low, high = entry['ci95']
        return (f'{entry["num_significant"]}/{entry["num_placebos"]} = '
                f'{100 * entry["rate"]:.1f}% [{100 * low:.1f}, {100 * high:.1f}]')

    lines = ['| N | statistic | test | draws | rank test: placebos called "holds" [95% CI] | '
             'old image-bootstrap test [95% CI] | rank test within nominal |',
             '|---|---|---|---|---|---|---|']
    for r in rows:
        rank = r['rank_test']
        within = 'n/a' if rank['ci95'] is None else ('yes' if rank['rate'] <= alpha else 'no')
        lines.append(f'| {r["num_channels"]} | {r["statistic"]} | '
                     f'{"primary (sequential)" if r["primary"] else "exploratory"} | '
                     f'{r["num_draws"]} | {rate(rank)} | {rate(r["old_bootstrap_test"])} | '
                     f'{within} |')
    return lines
