"""Overlay panels and the top-K selector, checked pixel by pixel on tiny hand-made maps."""
from __future__ import annotations

import itertools
import os

import cv2
import numpy as np
import pytest

from posattack.report.overlay import (BOX_COLOR, CHANGED_OUTLINE, OverlaySelector, changed_fraction,
                                      colorize_labels, panel_geometry, render_panel, save_panel)

PALETTE = [(128, 64, 128), (0, 0, 142), (220, 20, 60)]  # road, car, person (Cityscapes colours)
H, W = 32, 64


def test_selector_keeps_true_top_k_with_bounded_memory():
    rng = np.random.default_rng(0)
    scores = rng.random(500).round(2)  # rounding makes ties certain
    selector = OverlaySelector(k=7)
    for index, score in enumerate(scores):
        selector.offer(score, key=index, payload={'image': index})
        assert len(selector) <= 7
    expected = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:7]
    selected = selector.selected()
    assert [key for _, key, _ in selected] == expected
    assert [score for score, _, _ in selected] == [scores[i] for i in expected]
    assert all(payload == {'image': key} for _, key, payload in selected)


def test_selector_ties_do_not_depend_on_arrival_order():
    items = [(0.5, 'b'), (0.5, 'a'), (0.5, 'c'), (0.2, 'd')]
    for order in itertools.permutations(items):
        selector = OverlaySelector(k=2)
        for score, key in order:
            selector.offer(score, key)
        assert [key for _, key, _ in selector.selected()] == ['a', 'b']


def test_selector_merge_and_edge_cases():
    first, second, union = OverlaySelector(3), OverlaySelector(3), OverlaySelector(3)
    for i, score in enumerate([0.1, 0.9, 0.4, 0.8, 0.3, 0.7]):
        (first if i % 2 else second).offer(score, i)
        union.offer(score, i)
    assert first.merge(second).selected() == union.selected()
    empty = OverlaySelector(0)
    assert empty.offer(1.0, 'x') is False and empty.selected() == []
    with pytest.raises(ValueError, match='k'):
        OverlaySelector(-1)
    with pytest.raises(ValueError, match='NaN'):
        OverlaySelector(2).offer(float('nan'), 'x')


def test_changed_fraction_counts_valid_pixels_only():
    clean = np.array([[0, 1], [2, 2]])
    attacked = np.array([[0, 0], [2, 1]])
    gt = np.array([[0, 255], [1, 1]])
    assert changed_fraction(clean, attacked) == 0.5
    assert changed_fraction(clean, attacked, gt) == pytest.approx(1 / 3)
    assert changed_fraction(clean, attacked, np.full((2, 2), 255)) == 0.0


@pytest.fixture
def scene():
    image = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    gt = np.zeros((H, W), np.int64)
    gt[:, 40:] = 1
    gt[:4, :] = 255  # an ignored strip at the top
    clean = gt.copy()
    clean[:4, :] = 0
    targeted = clean.copy()
    targeted[10:20, 5:25] = 2  # the attack changes a 10x20 block
    random = clean.copy()
    random[30, 60] = 2  # and random removal one pixel
    return image, gt, {'clean': clean, 'targeted N=10': targeted, 'random N=10 seed=0': random}


def tile(panel, geometry, index):
    x = geometry.tile_x[index]
    return panel[geometry.title_height:, x:x + geometry.tile_width]


def test_panel_layout_colours_and_titles(scene):
    image, gt, preds = scene
    panel = render_panel(image, gt, preds, PALETTE)
    geometry = panel_geometry(5, H, W)
    assert panel.dtype == np.uint8 and panel.shape == (geometry.height, geometry.width, 3)
    assert geometry.width == 5 * W + 4 * geometry.gap
    assert geometry.height == geometry.title_height + H
    np.testing.assert_array_equal(tile(panel, geometry, 0), image)
    gt_tile = tile(panel, geometry, 1)
    assert (gt_tile[:4] == 0).all()  # ignore drawn black
    assert tuple(gt_tile[10, 50]) == PALETTE[1] and tuple(gt_tile[10, 10]) == PALETTE[0]
    np.testing.assert_array_equal(tile(panel, geometry, 2),
                                  colorize_labels(preds['clean'], PALETTE))
    for i, x in enumerate(geometry.tile_x):  # every tile has a title drawn above it
        assert (panel[:geometry.title_height, x:x + W] != 255).any(), f'tile {i} has no title'
    gaps = panel[:, geometry.tile_x[0] + W:geometry.tile_x[1]]
    assert gaps.shape[1] == geometry.gap and (gaps == 255).all()


def test_changed_pixels_highlighted_exactly_where_preds_differ(scene):
    image, gt, preds = scene
    panel = render_panel(image, gt, preds, PALETTE)
    geometry = panel_geometry(5, H, W)
    for index, name in ((3, 'targeted N=10'), (4, 'random N=10 seed=0')):
        drawn = tile(panel, geometry, index)
        plain = colorize_labels(preds[name], PALETTE)
        modified = (drawn != plain).any(axis=2)
        np.testing.assert_array_equal(modified, preds[name] != preds['clean'])
    targeted = tile(panel, geometry, 3)
    assert tuple(targeted[10, 5]) == CHANGED_OUTLINE  # the block's border
    tinted = np.round(0.55 * np.array(PALETTE[2]) + 0.45 * 255).astype(np.uint8)
    assert tuple(targeted[15, 15]) == tuple(tinted)  # its inside: person colour toward white
    no_highlight = render_panel(image, gt, preds, PALETTE, changed_from=None)
    np.testing.assert_array_equal(tile(no_highlight, geometry, 3),
                                  colorize_labels(preds['targeted N=10'], PALETTE))


def test_dashed_center_box_on_expected_columns(scene):
    image, gt, preds = scene
    x0, x1 = W // 4, 3 * W // 4
    panel = render_panel(image, gt, preds, PALETTE, periphery=(x0, x1), changed_from=None)
    geometry = panel_geometry(5, H, W)
    for index in range(5):
        drawn = tile(panel, geometry, index)
        is_box = (drawn == BOX_COLOR).all(axis=2)
        for column in (x0, x1 - 1):
            assert is_box[0, column] and is_box[H - 1, column]  # dashes start at the corners
            assert 0 < is_box[:, column].sum() < H  # dashed: drawn with gaps
        # Nothing else changes: columns away from the box edges keep their plain colours.
        away = [c for c in range(W) if abs(c - x0) > 1 and abs(c - (x1 - 1)) > 1]
        assert not is_box[1:H - 1, away].any()
        assert not is_box[:, :x0 - 1].any() and not is_box[:, x1 + 1:].any()


def test_tile_width_resizes_tiles(scene):
    image, gt, preds = scene
    panel = render_panel(image, gt, preds, PALETTE, tile_width=32, periphery=(16, 48))
    geometry = panel_geometry(5, H // 2, 32)
    assert panel.shape == (geometry.height, 5 * 32 + 4 * geometry.gap, 3)
    gt_tile = tile(panel, geometry, 1)
    assert (gt_tile[:2, :7] == 0).all() and not (gt_tile[2:, :7] == 0).all()  # ignore: 2 rows
    is_box = (gt_tile == BOX_COLOR).all(axis=2)
    assert is_box[0, 8] and is_box[0, 23] and not is_box[1:-1, 9:23].any()  # center [8, 24)


def test_bad_input_errors(scene):
    image, gt, preds = scene
    with pytest.raises(ValueError, match="changed_from='baseline'"):
        render_panel(image, gt, preds, PALETTE, changed_from='baseline')
    with pytest.raises(ValueError, match='shape'):
        render_panel(image, gt[:, :10], preds, PALETTE)
    with pytest.raises(ValueError, match=r'label\(s\) \[7\]'):
        render_panel(image, gt, dict(preds, clean=np.full((H, W), 7)), PALETTE)
    with pytest.raises(ValueError, match='periphery'):
        render_panel(image, gt, preds, PALETTE, periphery=(40, 20))
    with pytest.raises(ValueError, match='uint8'):
        render_panel(image.astype(np.float32), gt, preds, PALETTE)


def test_save_panel_round_trip(scene, tmp_path):
    image, gt, preds = scene
    panel = render_panel(image, gt, preds, PALETTE, periphery=(16, 48))
    path = save_panel(str(tmp_path / 'panels' / '000.png'), panel)
    assert os.listdir(tmp_path / 'panels') == ['000.png']
    np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB), panel)
    with pytest.raises(ValueError, match='extension'):
        save_panel(str(tmp_path / 'panel'), panel)


def test_cityscapes_palette_from_mmseg():
    from posattack.report.overlay import cityscapes_palette
    palette = cityscapes_palette()
    assert len(palette) == 19 and palette[0] == (128, 64, 128) and palette[13] == (0, 0, 142)
