"""Two crops of one image at a known offset: the bookkeeping AugShift training and the
shift-consistency measurement share.

Both transforms act on a *packed* sample (append them after mmseg's ``PackSegInputs``), so
every transform before them (resizing, photometric distortion...) acts once on the whole
image and the two crops differ by their position only. A crop of an H x W image with
``max_shift`` s is (H - s) x (W - s); its top-left corner (y, x) lies in [0, s] x [0, s],
so two crops are offset by (dy, dx) = (y_b - y_a, x_b - x_a) with |dy|, |dx| <= s. Shifts
are in pixels of the network input (after the pipeline's Resize).

Each crop's data sample carries ``metainfo['shift_crop']``: ``dict(max_shift, trial, member,
origin=(y, x), source_shape=(H, W))``; :func:`overlap_slices` maps the two crops' common
pixels onto each other and onto the source image.
"""
from __future__ import annotations

import os.path as osp
import zlib
from collections.abc import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import PixelData
from mmseg.registry import TRANSFORMS
from mmseg.structures import SegDataSample

__all__ = ['AugShiftPair', 'ShiftConsistencyPairs', 'crop_packed_sample', 'overlap_slices',
           'shift_origins', 'SHIFT_CROP_KEY']

SHIFT_CROP_KEY = 'shift_crop'
Origin = tuple[int, int]


def check_max_shift(max_shift, what: str = 'max_shift') -> int:
    if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) \
            or max_shift < 0:
        raise ValueError(f'{what} must be a whole number of pixels >= 0, got {max_shift!r}.')
    return int(max_shift)


def crop_size_for(source_shape: Sequence[int], max_shift: int) -> tuple[int, int]:
    """(H - s, W - s), or a ValueError that names the image size when s is too large."""
    height, width = int(source_shape[0]), int(source_shape[1])
    if max_shift >= min(height, width):
        raise ValueError(
            f'max_shift={max_shift} leaves no crop of a {height}x{width} image (a crop is '
            f'(H - s) x (W - s) pixels): use a max shift below {min(height, width)}, or '
            'larger images (the shift is counted after the pipeline\'s Resize).')
    return height - max_shift, width - max_shift


def _check_pairs_overlap(source_shape: Sequence[int], max_shift: int) -> None:
    """Two crops offset by up to s pixels share pixels for every draw only when s < H - s:
    fail on the first image, with the largest shift that works, not on some later pair."""
    shorter = min(int(source_shape[0]), int(source_shape[1]))
    if 2 * max_shift >= shorter:
        raise ValueError(
            f'max shift {max_shift} on a {source_shape[0]}x{source_shape[1]} network input: '
            f'two crops of (H - {max_shift}) x (W - {max_shift}) pixels offset by up to '
            f'{max_shift} need not overlap, and consistency is measured where they do. Use '
            f'--max-shift {(shorter - 1) // 2} or less, or larger images (the shift counts '
            'pixels after the pipeline\'s Resize).')


def overlap_slices(origin_a: Origin, origin_b: Origin, crop_shape: Sequence[int]):
    """Where crops A and B (same size, top-left corners in the source image) overlap.

    Returns ``(in_a, in_b, in_source)``: three (row slice, column slice) pairs that cut the
    common pixels out of crop A, crop B and the source image, in the same order.

    Example: crops of 4 x 4 at (0, 0) and (1, 2) overlap on source rows 1..3, columns 2..3::

        in_a, in_b, in_src = overlap_slices((0, 0), (1, 2), (4, 4))
        in_a == (slice(1, 4), slice(2, 4)); in_b == (slice(0, 3), slice(0, 2))
    """
    slices = []
    for axis in range(2):
        start = max(origin_a[axis], origin_b[axis])
        stop = min(origin_a[axis], origin_b[axis]) + int(crop_shape[axis])
        if stop <= start:
            raise ValueError(f'crops at {origin_a} and {origin_b} of size {tuple(crop_shape)} '
                             'do not overlap.')
        slices.append((start, stop))
    (row_start, row_stop), (col_start, col_stop) = slices
    in_a = (slice(row_start - origin_a[0], row_stop - origin_a[0]),
            slice(col_start - origin_a[1], col_stop - origin_a[1]))
    in_b = (slice(row_start - origin_b[0], row_stop - origin_b[0]),
            slice(col_start - origin_b[1], col_stop - origin_b[1]))
    return in_a, in_b, (slice(row_start, row_stop), slice(col_start, col_stop))


def crop_packed_sample(inputs: torch.Tensor, data_sample: SegDataSample, origin: Origin,
                       crop_shape: Sequence[int], info: dict,
                       keep_pixel_data: bool = True) -> tuple[torch.Tensor, SegDataSample]:
    """Cut one crop out of a packed sample: the image and (optionally) its pixel maps.

    The crop's ``img_shape``, ``pad_shape`` and ``ori_shape`` become the crop size, so
    mmseg's post-processing returns predictions of the crop, not of the whole image.
    """
    top, left = int(origin[0]), int(origin[1])
    height, width = int(crop_shape[0]), int(crop_shape[1])
    rows, cols = slice(top, top + height), slice(left, left + width)
    metainfo = dict(data_sample.metainfo)
    metainfo.update(img_shape=(height, width), pad_shape=(height, width),
                    ori_shape=(height, width))
    metainfo[SHIFT_CROP_KEY] = dict(info, origin=(top, left))
    cropped = SegDataSample(metainfo=metainfo)
    if keep_pixel_data:
        for key in data_sample.keys():
            value = getattr(data_sample, key)
            if isinstance(value, PixelData):
                if tuple(value.shape) != tuple(inputs.shape[-2:]):
                    raise ValueError(
                        f'{key} is {tuple(value.shape)} but the image is '
                        f'{tuple(inputs.shape[-2:])}: shifted crops need both at one size; '
                        'in the train pipeline load annotations before Resize, as mmseg '
                        'configs do.')
                setattr(cropped, key, PixelData(data=value.data[..., rows, cols].clone(),
                                                metainfo=value.metainfo))
    return inputs[..., rows, cols].contiguous(), cropped


def _packed(results: dict, transform: str) -> tuple[torch.Tensor, SegDataSample]:
    inputs, data_sample = results.get('inputs'), results.get('data_samples')
    if not isinstance(inputs, torch.Tensor) or not isinstance(data_sample, SegDataSample):
        raise TypeError(f'{transform} acts on packed samples: put it after PackSegInputs, '
                        f'at the end of the pipeline (got keys {sorted(results)}).')
    return inputs, data_sample


def shift_origins(seed: int, key: str, max_shift: int, trials: int) -> np.ndarray:
    """The crop corners of one image: int array (trials, 2 crops, 2 axes) in [0, max_shift].

    Drawn from numpy's raw PCG64 stream (stable across numpy versions, NEP 19) seeded with
    (seed, CRC32 of `key`, max_shift): an image gets the same corners whatever the batch,
    process count or other max shifts of the run.
    """
    bit_generator = np.random.PCG64([int(seed), zlib.crc32(key.encode()), int(max_shift)])
    raw = bit_generator.random_raw(trials * 4)
    return (raw % np.uint64(max_shift + 1)).astype(np.int64).reshape(trials, 2, 2)


@TRANSFORMS.register_module()
class AugShiftPair(BaseTransform):
    """AugShift training input: two crops of each image at a random offset.

    Append after ``PackSegInputs``; the sample becomes ``dict(inputs=[crop_a, crop_b],
    data_samples=[sample_a, sample_b])`` and :class:`posattack.AugShiftEncoderDecoder`'s data
    preprocessor puts the pairs into one batch. Corners are drawn with numpy's global RNG,
    as mmseg's RandomCrop does (seeded by the Runner's ``randomness``).

    Example (child of any mmseg config)::

        train_dataloader = dict(dataset=dict(pipeline=_base_.train_dataloader.dataset.pipeline
                                             + [dict(type='posattack.AugShiftPair', max_shift=8)]))
    """

    def __init__(self, max_shift: int = 8):
        self.max_shift = check_max_shift(max_shift)

    def transform(self, results: dict) -> dict:
        inputs, data_sample = _packed(results, 'AugShiftPair')
        source_shape = tuple(inputs.shape[-2:])
        crop_shape = crop_size_for(source_shape, self.max_shift)
        corners = np.random.randint(0, self.max_shift + 1, size=(2, 2))
        crops, samples = [], []
        for member in range(2):
            info = dict(max_shift=self.max_shift, trial=0, member=member,
                        source_shape=source_shape)
            crop, sample = crop_packed_sample(inputs, data_sample, tuple(corners[member]),
                                              crop_shape, info)
            crops.append(crop)
            samples.append(sample)
        return dict(inputs=crops, data_samples=samples)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(max_shift={self.max_shift})'


# Pairs of crops one image may ask for (trials x max shifts): all are held and run at once.
MAX_PAIRS_PER_IMAGE = 64


@TRANSFORMS.register_module()
class ShiftConsistencyPairs(BaseTransform):
    """Test-time views for shift consistency: `trials` crop pairs per max shift and image.

    Append after ``PackSegInputs`` in the test pipeline and wrap the segmentor in
    :class:`posattack.ShiftPairTTAModel`; :class:`posattack.ShiftConsistencyMetric` scores
    the pairs. Views are ordered (max shift, trial, crop A/B). Corners come from
    :func:`shift_origins`, keyed by the image file name: deterministic for a seed.
    """

    def __init__(self, max_shifts: Sequence[int] = (8, 16), trials: int = 1, seed: int = 0):
        if isinstance(max_shifts, (int, np.integer)):
            max_shifts = [max_shifts]
        self.max_shifts = [check_max_shift(s, 'each max shift') for s in max_shifts]
        if not self.max_shifts or len(set(self.max_shifts)) != len(self.max_shifts):
            raise ValueError(f'max_shifts must list distinct shifts, got {list(max_shifts)}.')
        if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 1:
            raise ValueError(f'trials must be a whole number >= 1 (crop pairs per image and '
                             f'max shift), got {trials!r}.')
        if int(trials) * len(self.max_shifts) > MAX_PAIRS_PER_IMAGE:
            # every pair of an image is cropped, held and batched at once: --trials 10**8
            # grew until the machine gave out
            raise ValueError(f'trials x max shifts must be at most {MAX_PAIRS_PER_IMAGE} crop '
                             f'pairs per image, got {int(trials)} x {len(self.max_shifts)}: '
                             'each pair holds two crops of the image in memory; use fewer '
                             '--trials (a second --seed gives other crops).')
        self.trials = int(trials)
        self.seed = int(seed)

    def transform(self, results: dict) -> dict:
        inputs, data_sample = _packed(results, 'ShiftConsistencyPairs')
        source_shape = tuple(inputs.shape[-2:])
        key = osp.basename(str(data_sample.metainfo.get('img_path',
                                                         data_sample.metainfo.get('sample_idx'))))
        crops: list[torch.Tensor] = []
        samples: list[SegDataSample] = []
        for max_shift in self.max_shifts:
            crop_shape = crop_size_for(source_shape, max_shift)
            _check_pairs_overlap(source_shape, max_shift)
            corners = shift_origins(self.seed, key, max_shift, self.trials)
            for trial in range(self.trials):
                for member in range(2):
                    info: dict = dict(max_shift=max_shift, trial=trial, member=member,
                                      source_shape=source_shape)
                    # no labels: consistency compares predictions with each other
                    crop, sample = crop_packed_sample(inputs, data_sample,
                                                      tuple(corners[trial, member]),
                                                      crop_shape, info, keep_pixel_data=False)
                    crops.append(crop)
                    samples.append(sample)
        return dict(inputs=crops, data_samples=samples)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(max_shifts={self.max_shifts}, '
                f'trials={self.trials}, seed={self.seed})')
