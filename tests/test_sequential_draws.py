"""How far each round of primary draws goes (posattack.attack.sequential_draws).

One image, one class, the full-image region only (claim 1 alone): gt = 100 pixels and
pred = tp, so the IoU is tp / 100 and a setting's drop from the clean tp = 100 is
100 - tp percent points: the drops below are set by hand.
"""
from __future__ import annotations

import numpy as np
import pytest

from posattack.attack.sequential_draws import MIN_ROUND_STEP, draws_to_stop, next_round_size
from posattack.report.per_image import PerImageCounts
from posattack.report.test_design import TestDesign


def _counts(targeted_drop: float, draw_drops: list[float]) -> tuple[PerImageCounts, list[str]]:
    drops = {'clean': 0.0, 'targeted': targeted_drop,
             **{f'random{i}': d for i, d in enumerate(draw_drops)}}
    tp = {key: np.array([[[100.0 - drop]]]) for key, drop in drops.items()}
    counts = PerImageCounts(images=['a.png'], regions=['full'], gt=np.array([[[100.0]]]),
                            tp=tp, pred={key: value.copy() for key, value in tp.items()})
    return counts, [f'random{i}' for i in range(len(draw_drops))]


@pytest.mark.parametrize('reached, expected', [
    (3, 32),    # 5 * 19 / 3 = 31.7: the 5th exceedance expected near draw 32
    (1, 95),    # 5 * 19 / 1
    (0, 99),    # none reached yet: possibly significant, every draw may be needed
    (5, None),  # stopped: 5 draws reached the targeted value
])
def test_a_round_goes_to_where_the_test_is_expected_to_stop(reached, expected):
    design = TestDesign(exceedances=5, max_draws=99)
    counts, keys = _counts(50.0, [60.0] * reached + [10.0] * (19 - reached))
    assert next_round_size(counts, 'targeted', keys, design) == expected
    assert draws_to_stop(50.0, [60.0] * reached + [10.0] * (19 - reached), 5, 99) == expected


def test_a_round_adds_at_least_the_minimum_step_and_never_passes_the_cap():
    # 4 of 19 reached: the 5th expected near draw 5 * 19 / 4 = 23.75 -> 24, below 19 + 10
    counts, keys = _counts(50.0, [60.0] * 4 + [10.0] * 15)
    assert next_round_size(counts, 'targeted', keys, TestDesign(exceedances=5, max_draws=99)) \
        == 19 + MIN_ROUND_STEP
    assert next_round_size(counts, 'targeted', keys, TestDesign(exceedances=5, max_draws=25)) \
        == 25
    # at the cap nothing is drawn again, whatever the draws
    counts, keys = _counts(50.0, [10.0] * 25)
    assert next_round_size(counts, 'targeted', keys, TestDesign(exceedances=5, max_draws=25)) \
        is None


def test_a_tie_counts_as_reaching_and_a_missing_targeted_value_draws_nothing():
    assert draws_to_stop(50.0, [50.0] * 2 + [10.0] * 17, 5, 99) == 48   # 5 * 19 / 2 = 47.5
    assert draws_to_stop(None, [10.0] * 19, 5, 99) is None
    assert draws_to_stop(50.0, [10.0] * 19, None, 99) == 99   # fixed size: all draws
