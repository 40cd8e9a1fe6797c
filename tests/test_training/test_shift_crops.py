"""AugShiftPair's crop bookkeeping: two crops of one packed sample at a known offset.

The source image and labels encode absolute position (image channel 0 = row, channel 1 =
column, label = (row * W + col) % 19), so every check compares a crop with where it says it
came from, independently of the transform's own arithmetic.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from posattack.training.shift_crops import (AugShiftPair, check_max_shift, crop_size_for,
                                            overlap_slices, shift_origins)

H, W = 12, 16
NUM_CLASSES = 19


def _source(height=H, width=W):
    """(3, H, W) uint8 image: row, column, constant; labels (1, H, W) = (row*W + col) % 19."""
    rows = torch.arange(height).view(height, 1).expand(height, width)
    cols = torch.arange(width).view(1, width).expand(height, width)
    image = torch.stack([rows, cols, torch.full_like(rows, 7)]).to(torch.uint8)
    labels = ((rows * width + cols) % NUM_CLASSES).unsqueeze(0).long()
    return image, labels


def _packed(height=H, width=W, gt_shape=None):
    """What PackSegInputs gives: dict(inputs=(3, H, W) uint8, data_samples=SegDataSample)."""
    image, labels = _source(height, width)
    if gt_shape is not None:
        labels = torch.zeros((1, ) + tuple(gt_shape), dtype=torch.long)
    sample = SegDataSample(metainfo=dict(img_path='scene_0.png', img_shape=(height, width),
                                         ori_shape=(height, width), scale_factor=(1.0, 1.0)))
    sample.gt_sem_seg = PixelData(data=labels)
    return dict(inputs=image, data_samples=sample)


def _gt(sample):
    return sample.gt_sem_seg.data[0]


# ----------------------------------------------------------------------------- the pair
def test_pair_layout_and_metainfo():
    np.random.seed(0)
    out = AugShiftPair(max_shift=3)(_packed())
    assert set(out) == {'inputs', 'data_samples'}
    assert len(out['inputs']) == 2 and len(out['data_samples']) == 2
    for member, (crop, sample) in enumerate(zip(out['inputs'], out['data_samples'])):
        assert crop.shape == (3, H - 3, W - 3) and crop.dtype == torch.uint8
        assert _gt(sample).shape == (H - 3, W - 3)
        info = sample.metainfo['shift_crop']
        assert info['max_shift'] == 3 and info['trial'] == 0 and info['member'] == member
        assert tuple(info['source_shape']) == (H, W)
        assert all(0 <= v <= 3 for v in info['origin'])
        # mmseg's post-processing reads these: they must describe the crop, not the source
        for key in ('img_shape', 'ori_shape', 'pad_shape'):
            assert tuple(sample.metainfo[key]) == (H - 3, W - 3)
        assert sample.metainfo['img_path'] == 'scene_0.png'  # the rest of the metainfo stays


def test_crops_come_from_their_origin_and_agree_on_the_overlap():
    """Many draws: each crop is the source at its corner, and a pixel's label is the same
    in both crops (overlap_slices maps the common pixels onto each other)."""
    image, labels = _source()
    transform = AugShiftPair(max_shift=5)
    np.random.seed(1)
    for _ in range(100):
        out = transform(_packed())
        (crop_a, crop_b), (sample_a, sample_b) = out['inputs'], out['data_samples']
        origins = []
        for crop, sample in ((crop_a, sample_a), (crop_b, sample_b)):
            y, x = sample.metainfo['shift_crop']['origin']
            origins.append((y, x))
            assert crop.shape[-2:] == (H - 5, W - 5)
            # the position channels say where the crop's top-left pixel was
            assert (int(crop[0, 0, 0]), int(crop[1, 0, 0])) == (y, x)
            assert torch.equal(crop, image[:, y:y + H - 5, x:x + W - 5])
            assert torch.equal(_gt(sample), labels[0, y:y + H - 5, x:x + W - 5])
        dy, dx = origins[1][0] - origins[0][0], origins[1][1] - origins[0][1]
        assert abs(dy) <= 5 and abs(dx) <= 5
        in_a, in_b, in_src = overlap_slices(origins[0], origins[1], (H - 5, W - 5))
        assert torch.equal(_gt(sample_a)[in_a], _gt(sample_b)[in_b])
        assert torch.equal(_gt(sample_a)[in_a], labels[0][in_src])
        assert torch.equal(crop_a[:, in_a[0], in_a[1]], crop_b[:, in_b[0], in_b[1]])
        # the overlap is (H - s - |dy|) x (W - s - |dx|)
        assert _gt(sample_a)[in_a].shape == (H - 5 - abs(dy), W - 5 - abs(dx))


def test_every_offset_appears_for_a_small_max_shift():
    # s = 2: 5 offsets per axis, each at least 1/9 likely per draw; 300 draws miss one with
    # probability ~1e-15 (and the seed makes it deterministic anyway)
    transform = AugShiftPair(max_shift=2)
    np.random.seed(2)
    offsets_y, offsets_x = set(), set()
    for _ in range(300):
        a, b = (s.metainfo['shift_crop']['origin'] for s in transform(_packed())['data_samples'])
        offsets_y.add(b[0] - a[0])
        offsets_x.add(b[1] - a[1])
    assert offsets_y == offsets_x == {-2, -1, 0, 1, 2}


def test_zero_max_shift_gives_two_identical_whole_images():
    image, labels = _source()
    out = AugShiftPair(max_shift=0)(_packed())
    for crop, sample in zip(out['inputs'], out['data_samples']):
        assert torch.equal(crop, image)
        assert torch.equal(_gt(sample), labels[0])
        assert tuple(sample.metainfo['shift_crop']['origin']) == (0, 0)


# ----------------------------------------------------------------------------- helpers
def test_overlap_slices_hand_worked():
    # the docstring's example: 4x4 crops at (0, 0) and (1, 2) share source rows 1..3, cols 2..3
    in_a, in_b, in_src = overlap_slices((0, 0), (1, 2), (4, 4))
    assert in_a == (slice(1, 4), slice(2, 4))
    assert in_b == (slice(0, 3), slice(0, 2))
    assert in_src == (slice(1, 4), slice(2, 4))
    # B above-right of A: 5x6 crops at (3, 1) and (1, 4) share source rows 3..5, cols 4..6
    in_a, in_b, in_src = overlap_slices((3, 1), (1, 4), (5, 6))
    assert in_a == (slice(0, 3), slice(3, 6))
    assert in_b == (slice(2, 5), slice(0, 3))
    assert in_src == (slice(3, 6), slice(4, 7))


def test_overlap_slices_refuses_disjoint_crops():
    with pytest.raises(ValueError, match='do not overlap'):
        overlap_slices((0, 0), (0, 4), (4, 4))  # side by side: no common column


def test_crop_size_and_max_shift_checks():
    assert crop_size_for((12, 16), 3) == (9, 13)
    assert crop_size_for((12, 16), 0) == (12, 16)
    value = check_max_shift(np.int64(4))
    assert value == 4 and type(value) is int


def test_shift_origins_are_deterministic_and_in_range():
    corners = shift_origins(0, 'scene_0.png', 3, trials=50)
    assert corners.shape == (50, 2, 2)
    assert corners.min() >= 0 and corners.max() <= 3
    assert np.array_equal(corners, shift_origins(0, 'scene_0.png', 3, trials=50))
    assert not np.array_equal(corners, shift_origins(0, 'scene_1.png', 3, trials=50))


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('max_shift', [12, 13, 40])
def test_max_shift_too_large_for_the_image(max_shift):
    with pytest.raises(ValueError, match=f'{H}x{W}'):
        AugShiftPair(max_shift=max_shift)(_packed())


@pytest.mark.parametrize('max_shift', [-1, 1.5, '4', True, None])
def test_max_shift_must_be_a_whole_number(max_shift):
    with pytest.raises(ValueError, match='max_shift'):
        AugShiftPair(max_shift=max_shift)


def test_refuses_unpacked_results():
    # what the pipeline holds before PackSegInputs: numpy arrays under 'img'
    results = dict(img=np.zeros((H, W, 3), np.uint8), gt_seg_map=np.zeros((H, W), np.uint8))
    with pytest.raises(TypeError, match='PackSegInputs'):
        AugShiftPair(max_shift=2)(results)


def test_refuses_labels_of_another_size():
    with pytest.raises(ValueError, match=r'gt_sem_seg is \(11, 16\)'):
        AugShiftPair(max_shift=2)(_packed(gt_shape=(H - 1, W)))
