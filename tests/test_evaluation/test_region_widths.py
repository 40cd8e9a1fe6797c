"""The paper's regions at every kind of width, written out by hand.

The authors' geometry (README, shared reference): on a W-wide image left = columns
[0, W/2), right = [W/2, W), center = [W/4, 3W/4), periphery = the rest, with integer
division (center of W = 2048 is 512..1535). Widths of every remainder mod 4, odd and even,
are spelled out column by column below, so a bound that rounds the other way at one of them
shows.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posattack.evaluation.regions import build_region_masks

# width: (center columns, left columns), counted by hand from W // 4, (3 * W) // 4, W // 2
BY_HAND = {
    2: ([0], [0]),
    3: ([0, 1], [0]),
    4: ([1, 2], [0, 1]),
    5: ([1, 2], [0, 1]),
    6: ([1, 2, 3], [0, 1, 2]),
    7: ([1, 2, 3, 4], [0, 1, 2]),
    8: ([2, 3, 4, 5], [0, 1, 2, 3]),
    9: ([2, 3, 4, 5], [0, 1, 2, 3]),
    11: ([2, 3, 4, 5, 6, 7], [0, 1, 2, 3, 4]),
    12: ([3, 4, 5, 6, 7, 8], [0, 1, 2, 3, 4, 5]),
    13: ([3, 4, 5, 6, 7, 8], [0, 1, 2, 3, 4, 5]),
    2047: (list(range(511, 1535)), list(range(1023))),
    1024: (list(range(256, 768)), list(range(512))),
}


def _columns(names, masks, name):
    mask = masks[names.index(name)]
    assert (mask == mask[:1]).all()          # whole columns
    return np.flatnonzero(mask[0]).tolist()


@pytest.mark.parametrize('width', sorted(BY_HAND))
def test_paper_regions_by_hand(width):
    center, left = BY_HAND[width]
    names, masks = build_region_masks('paper', 3, width)
    assert _columns(names, masks, 'center') == center
    assert _columns(names, masks, 'left') == left
    everything = list(range(width))
    assert _columns(names, masks, 'right') == [x for x in everything if x not in left]
    assert _columns(names, masks, 'periphery') == [x for x in everything if x not in center]
    assert _columns(names, masks, 'full') == everything


@pytest.mark.parametrize('height, top', [(2, [0]), (5, [0, 1]), (7, [0, 1, 2])])
def test_halves_by_hand(height, top):
    names, masks = build_region_masks('halves', height, 5)
    rows = np.flatnonzero(masks[names.index('top')][:, 0]).tolist()
    assert rows == top
    bottom = np.flatnonzero(masks[names.index('bottom')][:, 0]).tolist()
    assert bottom == [y for y in range(height) if y not in top]


@settings(max_examples=50, deadline=None)
@given(height=st.integers(1, 6), width=st.integers(4, 300))
def test_paper_regions_cut_the_image_as_the_authors_did(height, width):
    """Left/right and center/periphery partition the image; the center is one block of
    columns holding the middle half (within a column), and as many columns lie left of it
    as right of it, give or take one."""
    names, masks = build_region_masks('paper', height, width)
    get = dict(zip(names, masks))
    assert not (get['left'] & get['right']).any() and (get['left'] | get['right']).all()
    assert not (get['center'] & get['periphery']).any()
    assert (get['center'] | get['periphery']).all()
    center = np.flatnonzero(get['center'][0])
    assert np.array_equal(center, np.arange(center[0], center[-1] + 1))
    assert abs(len(center) - width / 2) <= 1
    outside_left, outside_right = center[0], width - 1 - center[-1]
    assert abs(outside_left - outside_right) <= 1
    assert abs(np.count_nonzero(get['left'][0]) - width / 2) <= 0.5
