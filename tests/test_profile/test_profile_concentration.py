"""Concentration of flip-difference scores: top-k share and Gini against hand-computed values
and against the Gini's other definition (mean absolute difference over all pairs)."""
from __future__ import annotations

import numpy as np
import pytest

from posattack.profile.concentration import concentration, gini, share_key, top_share


def gini_by_pairs(values):
    """G = sum_i sum_j |x_i - x_j| / (2 C^2 mean): the textbook definition, by brute force."""
    x = np.asarray(values, dtype=np.float64)
    return np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())


def test_hand_computed_vector():
    # sorted [0, 0, 1, 3]: weights -3, -1, 1, 3 -> (1 + 9) / (4 * 4) = 0.625
    assert gini([0.0, 0.0, 3.0, 1.0]) == pytest.approx(0.625)
    assert top_share([0.0, 0.0, 3.0, 1.0], 0.25) == pytest.approx(0.75)  # 1 channel: 3 of 4
    assert top_share([0.0, 0.0, 3.0, 1.0], 0.5) == pytest.approx(1.0)


def test_extremes_even_and_one_channel():
    assert gini([2.0] * 10) == pytest.approx(0.0)
    assert top_share([2.0] * 10, 0.1) == pytest.approx(0.1)
    assert top_share([2.0] * 10, 0.3) == pytest.approx(0.3)
    one_hot = [0.0, 0.0, 7.0, 0.0, 0.0]
    assert gini(one_hot) == pytest.approx(4 / 5)  # (C - 1) / C
    assert top_share(one_hot, 0.01) == pytest.approx(1.0)


def test_counts_follow_the_attack_rounding():
    # 16 channels: 5% is round(0.8) = 1 channel, 1% would be 0 and is lifted to 1
    scores = np.arange(16, dtype=float)  # total 120, largest 15, then 14
    assert top_share(scores, 0.05) == pytest.approx(15 / 120)
    assert top_share(scores, 0.01) == pytest.approx(15 / 120)
    assert top_share(scores, 0.1) == pytest.approx((15 + 14) / 120)  # round(1.6) = 2


def test_gini_matches_pairwise_definition_and_is_scale_free():
    rng = np.random.default_rng(0)
    for size in (3, 17, 128):
        scores = rng.exponential(size=size) ** 3
        assert gini(scores) == pytest.approx(gini_by_pairs(scores), rel=1e-12)
        assert gini(1000 * scores) == pytest.approx(gini(scores), rel=1e-12)


def test_concentration_keys_and_undefined_total():
    result = concentration([1.0, 3.0], fractions=(0.01, 0.05, 0.1))
    assert list(result) == ['top_1%', 'top_5%', 'top_10%', 'gini']
    assert share_key(0.2) == 'top_20%'
    assert concentration([0.0, 0.0, 0.0]) == {'top_1%': None, 'top_5%': None, 'top_10%': None,
                                              'gini': None}


@pytest.mark.parametrize('scores, message', [
    ([], 'at least one channel'),
    ([1.0, -0.5], 'negative'),
    ([1.0, float('nan')], 'NaN'),
])
def test_bad_scores_are_refused(scores, message):
    with pytest.raises(ValueError, match=message):
        gini(scores)


def test_bad_fraction_is_refused():
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        top_share([1.0, 2.0], 0.0)
