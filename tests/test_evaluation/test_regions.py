"""Region masks: hand-checked geometry per type, partitions, caching, clear errors."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from PIL import Image

from posattack.evaluation.region_registry import NAMES_FUNCS, split_bounds
from posattack.evaluation.region_types import frame_regions, load_mask_image
from posattack.evaluation.regions import (REGIONS, build_region_layout, build_region_masks,
                                          layout_of_masks, register_region, validate_region_specs)


def region(specs, height, width, name):
    names, masks = build_region_masks(specs, height, width)
    return masks[names.index(name)]


def columns(height, width, *column_indices):
    mask = np.zeros((height, width), bool)
    mask[:, list(column_indices)] = True
    return mask


# ------------------------------------------------------------------------ geometry
def test_paper_regions_match_the_authors_columns():
    names, masks = build_region_masks('paper', 2, 8)
    assert names == ['full', 'left', 'right', 'center', 'periphery']
    expected = {
        'full': np.ones((2, 8), bool),
        'left': columns(2, 8, 0, 1, 2, 3),
        'right': columns(2, 8, 4, 5, 6, 7),
        'center': columns(2, 8, 2, 3, 4, 5),
        'periphery': columns(2, 8, 0, 1, 6, 7),
    }
    for name, mask in zip(names, masks):
        np.testing.assert_array_equal(mask, expected[name], err_msg=name)


def test_paper_center_at_cityscapes_width_and_odd_width():
    center = region('paper', 1, 2048, 'center')[0]
    assert np.flatnonzero(center).tolist() == list(range(512, 1536))
    # W = 10: W//4 = 2, (3*W)//4 = 7; left = [0, 5)
    assert np.flatnonzero(region('paper', 1, 10, 'center')[0]).tolist() == [2, 3, 4, 5, 6]
    assert np.flatnonzero(region('paper', 1, 10, 'left')[0]).tolist() == [0, 1, 2, 3, 4]


def test_halves():
    names, masks = build_region_masks('halves', 4, 6)
    assert names == ['top', 'bottom', 'left', 'right']
    top = np.zeros((4, 6), bool)
    top[:2] = True
    np.testing.assert_array_equal(masks[0], top)
    np.testing.assert_array_equal(masks[1], ~top)
    np.testing.assert_array_equal(masks[2], columns(4, 6, 0, 1, 2))
    np.testing.assert_array_equal(masks[3], columns(4, 6, 3, 4, 5))


def test_border_bands_by_hand():
    # 5x5: distances 0 (outer ring), 1 (inner ring), 2 (center); max_d = 2, K = 3:
    # band = min(floor(d * 3 / 2), 2) -> 0, 1, 2
    names, masks = build_region_masks(dict(type='border', bands=3), 5, 5)
    assert names == ['band_0', 'band_1', 'band_2']
    expected_band = np.array([[0, 0, 0, 0, 0],
                              [0, 1, 1, 1, 0],
                              [0, 1, 2, 1, 0],
                              [0, 1, 1, 1, 0],
                              [0, 0, 0, 0, 0]])
    for k in range(3):
        np.testing.assert_array_equal(masks[k], expected_band == k)
    # 7x9, K = 2: max_d = 3; d = 0, 1 -> band 0 (0, 2/3); d = 2, 3 -> band 1 (4/3, 2 -> 1)
    _, masks = build_region_masks(dict(type='border', bands=2), 7, 9)
    ring_depth = np.minimum.outer(np.minimum(np.arange(7), 6 - np.arange(7)),
                                  np.minimum(np.arange(9), 8 - np.arange(9)))
    np.testing.assert_array_equal(masks[0], ring_depth <= 1)
    np.testing.assert_array_equal(masks[1], ring_depth >= 2)


def test_border_bands_partition_and_go_inwards():
    _, masks = build_region_masks(dict(type='border', bands=4), 64, 128)
    np.testing.assert_array_equal(masks.sum(0), 1)
    assert all(mask.any() for mask in masks)
    rows = np.arange(64)[:, None]
    cols = np.arange(128)[None, :]
    distance = np.minimum(np.minimum(rows, 63 - rows), np.minimum(cols, 127 - cols))
    band_of_pixel = masks.argmax(0)
    order = np.argsort(distance, axis=None, kind='stable')
    assert np.all(np.diff(band_of_pixel.ravel()[order]) >= 0)
    assert band_of_pixel[0, 0] == 0 and band_of_pixel[31, 64] == 3


def test_frame_pixels_and_fraction():
    names, masks = build_region_masks(dict(type='frame', thickness=1), 4, 5)
    assert names == ['frame', 'interior']
    interior = np.zeros((4, 5), bool)
    interior[1:3, 1:4] = True
    np.testing.assert_array_equal(masks[1], interior)
    np.testing.assert_array_equal(masks[0], ~interior)
    # fraction of the shorter side: round(0.34 * 6) = 2 pixels
    _, masks = build_region_masks(dict(type='frame', thickness=0.34), 6, 8)
    interior = np.zeros((6, 8), bool)
    interior[2:4, 2:6] = True
    np.testing.assert_array_equal(masks[1], interior)
    np.testing.assert_array_equal(masks[0] ^ masks[1], True)


def test_grid_cells_by_hand():
    names, masks = build_region_masks(dict(type='grid', rows=2, cols=3), 5, 6)
    assert names == [f'cell_{r}_{c}' for r in range(2) for c in range(3)]
    # rows split at 5 // 2 = 2, columns at 2 and 4
    expected = np.zeros((5, 6), bool)
    expected[2:5, 4:6] = True
    np.testing.assert_array_equal(masks[names.index('cell_1_2')], expected)
    np.testing.assert_array_equal(masks.sum(0), 1)


def test_mask_image_nonzero_and_values(tmp_path):
    label = np.zeros((4, 6), np.uint8)
    label[0, :2] = 3
    label[3, 5] = 7
    path = str(tmp_path / 'roi.png')
    cv2.imwrite(path, label)
    names, masks = build_region_masks(dict(type='mask', path=path, name='roi'), 4, 6)
    assert names == ['roi']
    np.testing.assert_array_equal(masks[0], label != 0)
    names, masks = build_region_masks(
        dict(type='mask', path=path, name='lab', mode='values'), 4, 6)
    assert names == ['lab_0', 'lab_3', 'lab_7']
    for name, value in zip(names, (0, 3, 7)):
        np.testing.assert_array_equal(masks[names.index(name)], label == value)


def test_mask_image_palette_png_keeps_indices(tmp_path):
    label = np.array([[0, 1, 1], [2, 2, 0]], np.uint8)
    image = Image.fromarray(label, mode='P')
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    path = str(tmp_path / 'palette.png')
    image.save(path)
    names, masks = build_region_masks(dict(type='mask', path=path, name='p', mode='values'), 2, 3)
    assert names == ['p_0', 'p_1', 'p_2']
    np.testing.assert_array_equal(masks[2], label == 2)


def test_user_region_function_and_prefix():
    @register_region('test_diagonal', force=True)
    def diagonal(height, width, upper=True):
        above = np.arange(height)[:, None] < np.arange(width)[None, :]
        return {'upper' if upper else 'lower': above if upper else ~above}

    try:
        specs = [dict(type='test_diagonal'), dict(type='test_diagonal', upper=False, prefix='d_')]
        assert validate_region_specs(specs) == ['upper', 'd_lower']
        names, masks = build_region_masks(specs, 3, 3)
        np.testing.assert_array_equal(masks[0], np.triu(np.ones((3, 3), bool), 1))
        np.testing.assert_array_equal(masks[0] ^ masks[1], True)
    finally:
        REGIONS.module_dict.pop('test_diagonal')


def test_masks_are_cached_and_read_only():
    specs = ['paper', dict(type='grid', rows=3, cols=3)]
    names_a, masks_a = build_region_masks(specs, 16, 32)
    names_b, masks_b = build_region_masks([dict(type='paper'), dict(type='grid', cols=3, rows=3)],
                                          16, 32)
    assert masks_a is masks_b and names_a == names_b
    assert not masks_a.flags.writeable
    with pytest.raises(ValueError):
        masks_a[0, 0, 0] = False


@pytest.mark.parametrize('specs', [
    ['paper', dict(type='border', bands=4), dict(type='grid', rows=3, cols=3)],
    # more than 64 regions: the generic (non-uint64) piece path
    ['paper', dict(type='grid', rows=9, cols=9)],
])
def test_layout_pieces_rebuild_every_mask(specs):
    layout = build_region_layout(specs, 32, 48)
    piece_map = layout.piece_map.reshape(32, 48)
    rebuilt = layout.membership[:, piece_map].astype(bool)
    np.testing.assert_array_equal(rebuilt, layout.masks)
    membership_of_pixels = layout.masks.reshape(len(layout.names), -1).T
    assert layout.num_pieces == len({tuple(column) for column in membership_of_pixels})


# ------------------------------------------------------------------------ bad input
@register_region('test_left_third', names=lambda: ['left'], force=True)
def _left_third(height, width):
    """A region named like the paper's 'left' but drawn differently: a true name clash."""
    mask = np.zeros((height, width), dtype=bool)
    mask[:, :width // 3] = True
    return {'left': mask}


@pytest.mark.parametrize('specs, message', [
    ('nonsense', "Unknown region type 'nonsense'. Known types: border, frame, full, grid"),
    (dict(type='border', bands=0), 'bands" must be a positive integer'),
    (dict(type='border', bands=-2), 'bands" must be a positive integer'),
    (dict(type='border', bands=2.5), 'bands" must be a positive integer'),
    (dict(type='grid', rows=0, cols=3), 'rows" must be a positive integer'),
    (dict(type='grid', rows=3, cols=-1), 'cols" must be a positive integer'),
    (dict(type='frame', thickness=1.5), 'must lie in (0, 1)'),
    (dict(type='frame', thickness=0.0), 'must lie in (0, 1)'),
    (dict(type='frame', thickness=0), 'must be a positive integer'),
    (dict(type='frame', thickness=True), 'must be an int (pixels) or a float'),
    (dict(type='border', band=4), "unexpected keyword argument 'band'"),
    (dict(type='mask', path='/no/such/file.png', name='x'), 'does not exist'),
    (['paper', 'test_left_third'], "Region name 'left' is made twice, with different masks"),
    ([], 'non-empty list'),
    ([42], 'a type name (str) or a dict'),
    (42, 'must be a non-empty list'),
])
def test_bad_specs_fail_before_any_image(specs, message):
    with pytest.raises((ValueError, TypeError, FileNotFoundError)) as error:
        validate_region_specs(specs)
    assert message in str(error.value)


def test_identical_duplicates_are_made_once():
    """The README's --regions paper border=4 grid=3x3 frame=0.1 halves: 'paper' and
    'halves' both make left and right, with the same masks; each is scored once."""
    specs = ['paper', dict(type='border', bands=4), dict(type='grid', rows=3, cols=3),
             dict(type='frame', thickness=0.1), 'halves', 'full']
    names = validate_region_specs(specs)
    assert names == ['full', 'left', 'right', 'center', 'periphery',
                     'band_0', 'band_1', 'band_2', 'band_3'] \
        + [f'cell_{r}_{c}' for r in range(3) for c in range(3)] \
        + ['frame', 'interior', 'top', 'bottom']
    built, masks = build_region_masks(specs, 37, 53)
    assert built == names
    left = np.zeros((37, 53), dtype=bool)
    left[:, :26] = True  # columns [0, W/2) as the README defines 'left'
    np.testing.assert_array_equal(masks[names.index('left')], left)
    np.testing.assert_array_equal(masks[names.index('right')], ~left)
    top = np.zeros((37, 53), dtype=bool)
    top[:18] = True
    np.testing.assert_array_equal(masks[names.index('top')], top)


def test_prefix_resolves_name_clash():
    names = validate_region_specs(['paper', dict(type='halves', prefix='h_')])
    assert names[-4:] == ['h_top', 'h_bottom', 'h_left', 'h_right']


def test_size_dependent_errors_name_the_size(tmp_path):
    with pytest.raises(ValueError, match=r'bands=10 on a 8x8 image'):
        build_region_masks(dict(type='border', bands=10), 8, 8)
    with pytest.raises(ValueError, match=r'grid 5x2 on a 4x4 image'):
        build_region_masks(dict(type='grid', rows=5, cols=2), 4, 4)
    with pytest.raises(ValueError, match=r'leaves no interior on a 6x10 image'):
        build_region_masks(dict(type='frame', thickness=3), 6, 10)
    path = str(tmp_path / 'small.png')
    cv2.imwrite(path, np.ones((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r'is 4x4 but the evaluated image \(ori_shape\) is 8x16'):
        build_region_masks(dict(type='mask', path=path, name='m'), 8, 16)


# ------------------------------------------------------------------------ defaults and helpers
def test_default_arguments_of_border_and_grid():
    assert validate_region_specs('border') == [f'band_{k}' for k in range(4)]
    assert validate_region_specs('grid') == [f'cell_{r}_{c}' for r in range(3) for c in range(3)]
    names, _ = build_region_masks(['border', 'grid'], 12, 12)
    assert names == validate_region_specs(['border', 'grid'])


def test_split_bounds_by_hand():
    # 10 into 3: 0, 10 // 3, 20 // 3, 10
    assert split_bounds(10, 3).tolist() == [0, 3, 6, 10]
    assert split_bounds(4, 4).tolist() == [0, 1, 2, 3, 4]


def test_a_tiny_frame_fraction_is_one_pixel_wide():
    # 0.01 of the shorter side 20 rounds to 0 pixels: at least 1
    frame = region(dict(type='frame', thickness=0.01), 20, 30, 'frame')
    ring = np.ones((20, 30), bool)
    ring[1:-1, 1:-1] = False
    np.testing.assert_array_equal(frame, ring)


def test_a_frame_fraction_of_the_shorter_side_by_hand():
    # 0.25 of the shorter side 20: 5 pixels from every border (the region function itself:
    # build_region_masks' cache would keep a layout made before)
    frame = frame_regions(20, 30, thickness=0.25)['frame']
    ring = np.ones((20, 30), bool)
    ring[5:-5, 5:-5] = False
    np.testing.assert_array_equal(frame, ring)


@pytest.mark.parametrize('at_cap, past_cap, message', [
    (dict(bands=64), dict(bands=65), r'border "bands" must be at most 64, got 65'),
    (dict(rows=16, cols=2), dict(rows=17, cols=2), r'grid "rows" must be at most 16, got 17'),
    (dict(rows=2, cols=16), dict(rows=2, cols=17), r'grid "cols" must be at most 16, got 17'),
])
def test_counts_past_their_cap_are_refused_before_any_mask(at_cap, past_cap, message):
    region_type = 'border' if 'bands' in at_cap else 'grid'
    assert validate_region_specs(dict(type=region_type, **at_cap))
    with pytest.raises(ValueError, match=message):
        validate_region_specs(dict(type=region_type, **past_cap))


@pytest.mark.parametrize('thickness, message', [
    (1.0, r'as a fraction must lie in \(0, 1\), got 1.0'),
    (0.0, r'as a fraction must lie in \(0, 1\), got 0.0'),
    (0, r'frame "thickness" \(pixels\) must be a positive integer, got 0'),
])
def test_frame_thickness_out_of_range_is_named(thickness, message):
    with pytest.raises(ValueError, match=message):
        validate_region_specs(dict(type='frame', thickness=thickness))


def test_a_mask_region_needs_a_name_string(tmp_path):
    path = str(tmp_path / 'm.png')
    cv2.imwrite(path, np.ones((4, 4), np.uint8))
    for name in (5, ''):
        with pytest.raises(ValueError, match=r'mask region needs a "name" \(str\)'):
            validate_region_specs(dict(type='mask', path=path, name=name))


def test_an_edited_mask_image_is_read_again(tmp_path):
    path = tmp_path / 'm.png'
    cv2.imwrite(str(path), np.ones((4, 4), np.uint8))
    assert load_mask_image(str(path)).sum() == 16
    cv2.imwrite(str(path), np.zeros((4, 4), np.uint8))
    os.utime(path, (1_000_000, 1_000_000))      # a different mtime, whatever the clock did
    assert load_mask_image(str(path)).sum() == 0


def test_layout_of_masks_finds_only_the_very_array():
    layout = build_region_layout(['paper', 'halves'], 8, 12)
    names, masks = build_region_masks(['paper', 'halves'], 8, 12)
    assert layout_of_masks(masks) is layout and layout.masks is masks
    assert layout_of_masks(masks.copy()) is None


# ------------------------------------------------------------------------ the registry
def test_registering_a_taken_name_needs_force():
    with pytest.raises(KeyError, match='full'):
        register_region('full')(lambda height, width: {'full': np.ones((height, width), bool)})


def test_reregistering_replaces_the_names_function_or_drops_it():
    def made_b(height, width):
        return {'b': np.ones((height, width), bool)}

    try:
        register_region('test_names', names=lambda: ['a'])(made_b)
        assert validate_region_specs('test_names') == ['a']      # said, not probed
        register_region('test_names', force=True)(made_b)
        assert validate_region_specs('test_names') == ['b']      # probed on a small image
        assert 'test_names' not in NAMES_FUNCS
    finally:
        REGIONS.module_dict.pop('test_names', None)
        NAMES_FUNCS.pop('test_names', None)


def test_a_clash_with_a_region_that_fails_at_a_probe_size_is_refused():
    def even_only(height, width):
        if width % 2:
            raise ValueError('odd width')
        return {'left': columns(height, width, *range(width // 2))}    # paper's left

    try:
        register_region('test_even_only', names=lambda: ['left'])(even_only)
        # the same mask as paper's 'left' on an even size, but no mask at all on an odd one
        np.testing.assert_array_equal(even_only(64, 128)['left'], region('paper', 64, 128, 'left'))
        with pytest.raises(ValueError, match="'left' is made twice"):
            validate_region_specs(['paper', 'test_even_only'])
    finally:
        REGIONS.module_dict.pop('test_even_only', None)
        NAMES_FUNCS.pop('test_even_only', None)
