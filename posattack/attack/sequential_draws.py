"""How many random draws the primary tests need: drawn in rounds, stopped by Besag-Clifford.

The primary tests (:mod:`posattack.report.test_design`) rank the targeted statistic among
random draws at the primary count. Each round adds draws (seeds in order), one more pass over
the test images; after a round, :func:`next_round_size` asks whether either primary test would
draw again (fewer than ``exceedances`` draws have reached its targeted value, and fewer than
``max_draws`` were made) and, if so, how far to draw: to where the test is expected to stop at
the rate its draws reached the targeted value so far (all the way to ``max_draws`` when none
did), at least :data:`MIN_ROUND_STEP` more. A clear null stops after the first round; a
significant result goes to ``max_draws``.

The p-values are computed on the exact seed-order prefix
(:func:`posattack.report.rank_tests.sequential_p_value`), so the rounds change cost, never
answers: any schedule gives the same p-values. The schedule trades draws made past the
stopping point (each a pass of the head over every image) against extra rounds (each a pass of
the backbone prefix, and a results.json write); fixed rounds of 19, 29, 39, 59, 99 draws,
used before, drew up to 30 draws past the stopping point.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import numpy as np

from ..channels.modes import RANDOM
from ..report.per_image import PerImageCounts, miou_from_counts
from ..report.rank_tests import needs_more_draws
from ..report.test_design import TestDesign
from .settings import AttackSetting

FIRST_ROUND = 19   # the fewest draws that can give p < 0.05
# Fewest draws a later round adds: a round re-runs the backbone prefix on every image, which
# costs a few settings' worth of head passes on the models measured (docs/tables/speed_*).
MIN_ROUND_STEP = 10


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


def draws_to_stop(targeted: Optional[float], draws: Sequence[Optional[float]],
                  exceedances: Optional[int], max_draws: int) -> Optional[int]:
    """How many draws one sequential test is expected to need in all (None once it stopped).

    At the rate its draws have reached the targeted value so far (``reached`` of ``made``),
    the ``exceedances``-th is expected near draw ``exceedances * made / reached``; with none
    reached yet (or no stopping rule) the test may need every draw: ``max_draws``.

    Example::

        draws_to_stop(5.0, [6.0] * 3 + [1.0] * 16, exceedances=5, max_draws=99)   # 32
    """
    if not needs_more_draws(targeted, draws, exceedances, max_draws):
        return None
    values = np.asarray([d for d in draws if d is not None and np.isfinite(d)], dtype=float)
    reached = int(np.count_nonzero(values >= targeted))
    if exceedances is None or reached == 0:
        return max_draws
    return min(max_draws, math.ceil(exceedances * len(values) / reached))


def next_round_size(counts: PerImageCounts, targeted_key: str, random_keys: Sequence[str],
                    design: TestDesign, min_step: int = MIN_ROUND_STEP) -> Optional[int]:
    """The number of draws to have after the next round, or None when no primary test would
    draw again. The draws are shared by both primary tests, so the round goes as far as the
    test expected to need the most (:func:`draws_to_stop`)."""
    made = len(random_keys)
    wanted = [n for n in (draws_to_stop(t, draws, design.exceedances, design.max_draws)
                          for t, draws in primary_statistics(counts, targeted_key, random_keys))
              if n is not None]
    if not wanted:
        return None
    return min(design.max_draws, max(made + min_step, max(wanted)))


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
