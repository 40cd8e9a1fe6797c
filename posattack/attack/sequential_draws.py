"""How many random draws the primary tests need: drawn in rounds, stopped by Besag-Clifford.

The primary tests (:mod:`posattack.report.test_design`) rank the targeted statistic among
random draws at the primary count. Each round adds draws (seeds in order) up to the next size
of :func:`posattack.report.rank_tests.draw_round_sizes`, one more pass over the test images;
after a round, :func:`more_draws_needed` asks whether either primary test would draw again
(fewer than ``exceedances`` draws have reached its targeted value, and fewer than
``max_draws`` were made). A clear null stops after the first round; a significant result
goes to ``max_draws``. The p-values themselves are computed on the exact seed-order prefix
(:func:`posattack.report.rank_tests.sequential_p_value`), so rounds change cost, not answers.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from ..channels.modes import RANDOM
from ..report.per_image import PerImageCounts, miou_from_counts
from ..report.rank_tests import needs_more_draws
from ..report.test_design import TestDesign
from .settings import AttackSetting

FIRST_ROUND = 19   # the fewest draws that can give p < 0.05


def _point_miou(counts: PerImageCounts, key: str, region: str) -> float:
    r = counts.regions.index(region)
    return float(miou_from_counts(counts.tp[key][:, r].sum(0), counts.gt[:, r].sum(0),
                                  counts.pred[key][:, r].sum(0)))


def primary_statistics(counts: PerImageCounts, targeted_key: str, random_keys: Sequence[str]
                       ) -> list[tuple[Optional[float], list[float]]]:
    """(targeted value, draw values) of claim 1 (full drop) and claim 2 (periphery drop
    minus center drop), on all scored images."""
    def drop(key, region):
        return _point_miou(counts, 'clean', region) - _point_miou(counts, key, region)

    out = []
    if 'full' in counts.regions:
        out.append((drop(targeted_key, 'full'), [drop(k, 'full') for k in random_keys]))
    if 'center' in counts.regions and 'periphery' in counts.regions:
        def did(key):
            return drop(key, 'periphery') - drop(key, 'center')
        out.append((did(targeted_key), [did(k) for k in random_keys]))
    return [(t if np.isfinite(t) else None, d) for t, d in out]


def more_draws_needed(counts: PerImageCounts, targeted_key: str, random_keys: Sequence[str],
                      design: TestDesign) -> bool:
    """Would either primary test draw again after the draws made so far?"""
    return any(needs_more_draws(t, draws, design.exceedances, design.max_draws)
               for t, draws in primary_statistics(counts, targeted_key, random_keys))


def primary_draws(settings: Sequence[AttackSetting], num_channels: int, up_to: int
                  ) -> list[AttackSetting]:
    """Random settings at ``num_channels`` for seeds 0..up_to-1 not yet in ``settings``."""
    have = {s.seed for s in settings if s.mode == RANDOM and s.num_channels == num_channels}
    fraction = next((s.fraction for s in settings if s.num_channels == num_channels), None)
    return [AttackSetting(RANDOM, num_channels, fraction, seed=seed)
            for seed in range(up_to) if seed not in have]


def first_round_size(seeds: int, design: TestDesign) -> int:
    """Draws at the primary count before the first check: at least the 19 that can reach
    p < 0.05 (or all ``max_draws`` when fewer), at least ``--seeds``."""
    return max(seeds, min(FIRST_ROUND, design.max_draws))


def primary_order(attack_regions: Sequence[str]) -> str:
    return 'overall' if 'overall' in attack_regions else attack_regions[0]


def primary_random_keys(finished: Sequence[dict], num_channels: int) -> list[str]:
    draws = sorted((int(s['seed']), s['key']) for s in finished
                   if s['mode'] == RANDOM and int(s['num_channels']) == num_channels)
    return [key for _, key in draws]
