"""The built-in region types: full, paper, halves, border, frame, grid, mask.

Their geometry is spelled out in :mod:`posattack.evaluation.regions`' docstring; each is
registered by name in :mod:`posattack.evaluation.region_registry`.
"""
from __future__ import annotations

import functools
import os
from typing import Optional

import mmcv
import numpy as np

from .region_registry import check_count, register_region, split_bounds

# Bounds checked when the specs are read, before any mask exists: a region costs an
# (H, W) mask per image and a (K, K) confusion per setting, so 1000x1000 cells would ask for
# gigabytes before its emptiness check. 16x16 cells and 64 bands are far past any use.
MAX_GRID_SIDE = 16
MAX_BORDER_BANDS = 64


# ----------------------------------------------------------------------- built-in regions
def _columns(height: int, width: int, start: int, stop: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[:, start:stop] = True
    return mask


def _rows(height: int, width: int, start: int, stop: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[start:stop] = True
    return mask


def border_distance(height: int, width: int) -> np.ndarray:
    """Pixels to the nearest border, ``min(x, W-1-x, y, H-1-y)``, as an (H, W) int array."""
    rows = np.arange(height)
    cols = np.arange(width)
    to_row_border = np.minimum(rows, height - 1 - rows)[:, None]
    to_col_border = np.minimum(cols, width - 1 - cols)[None, :]
    return np.minimum(to_row_border, to_col_border)


@register_region('full', names=lambda: ['full'])
def full_region(height: int, width: int) -> dict[str, np.ndarray]:
    return {'full': np.ones((height, width), dtype=bool)}


@register_region('paper', names=lambda: ['full', 'left', 'right', 'center', 'periphery'])
def paper_regions(height: int, width: int) -> dict[str, np.ndarray]:
    center = _columns(height, width, width // 4, (3 * width) // 4)
    return {
        'full': np.ones((height, width), dtype=bool),
        'left': _columns(height, width, 0, width // 2),
        'right': _columns(height, width, width // 2, width),
        'center': center,
        'periphery': ~center,
    }


@register_region('halves', names=lambda: ['top', 'bottom', 'left', 'right'])
def halves_regions(height: int, width: int) -> dict[str, np.ndarray]:
    return {
        'top': _rows(height, width, 0, height // 2),
        'bottom': _rows(height, width, height // 2, height),
        'left': _columns(height, width, 0, width // 2),
        'right': _columns(height, width, width // 2, width),
    }


def _border_names(bands: int = 4) -> list[str]:
    return [f'band_{k}' for k in range(check_count(bands, 'border "bands"', MAX_BORDER_BANDS))]


@register_region('border', names=_border_names)
def border_bands(height: int, width: int, bands: int = 4) -> dict[str, np.ndarray]:
    bands = check_count(bands, 'border "bands"', MAX_BORDER_BANDS)
    max_distance = (min(height, width) - 1) // 2
    if bands > max_distance + 1:
        raise ValueError(f'border bands={bands} on a {height}x{width} image: only '
                         f'{max_distance + 1} distinct border distances, so some bands would be '
                         f'empty. Use at most {max_distance + 1} bands at this size.')
    distance = border_distance(height, width)
    # band = floor(d / max_d * K) in exact integer arithmetic, d = max_d in the last band
    band = np.minimum((distance * bands) // max(max_distance, 1), bands - 1)
    return {f'band_{k}': band == k for k in range(bands)}


def _frame_thickness(thickness, height: Optional[int] = None, width: Optional[int] = None):
    if isinstance(thickness, bool) or not isinstance(thickness, (int, float, np.number)):
        raise ValueError(f'frame "thickness" must be an int (pixels) or a float in (0, 1) '
                         f'(fraction of the shorter side), got {thickness!r}.')
    if isinstance(thickness, (float, np.floating)):
        if not 0.0 < thickness < 1.0:
            raise ValueError(f'frame "thickness" as a fraction must lie in (0, 1), got '
                             f'{thickness}; for a pixel count give an int.')
        if height is None:
            return None
        return max(1, int(round(thickness * min(height, width))))
    return check_count(thickness, 'frame "thickness" (pixels)')


def _frame_names(thickness) -> list[str]:
    _frame_thickness(thickness)
    return ['frame', 'interior']


@register_region('frame', names=_frame_names)
def frame_regions(height: int, width: int, thickness) -> dict[str, np.ndarray]:
    pixels = _frame_thickness(thickness, height, width)
    if 2 * pixels >= min(height, width):
        raise ValueError(f'frame thickness {thickness!r} ({pixels} px) leaves no interior on a '
                         f'{height}x{width} image; use less than {min(height, width) / 2:g} px.')
    frame = border_distance(height, width) < pixels
    return {'frame': frame, 'interior': ~frame}


def _grid_names(rows: int = 3, cols: int = 3) -> list[str]:
    rows = check_count(rows, 'grid "rows"', MAX_GRID_SIDE)
    cols = check_count(cols, 'grid "cols"', MAX_GRID_SIDE)
    return [f'cell_{r}_{c}' for r in range(rows) for c in range(cols)]


@register_region('grid', names=_grid_names)
def grid_cells(height: int, width: int, rows: int = 3, cols: int = 3) -> dict[str, np.ndarray]:
    names = _grid_names(rows, cols)
    if rows > height or cols > width:
        raise ValueError(f'grid {rows}x{cols} on a {height}x{width} image would have empty '
                         f'cells; use at most {height} rows and {width} cols.')
    row_bounds, col_bounds = split_bounds(height, rows), split_bounds(width, cols)
    cells = {}
    for r in range(rows):
        for c in range(cols):
            mask = np.zeros((height, width), dtype=bool)
            mask[row_bounds[r]:row_bounds[r + 1], col_bounds[c]:col_bounds[c + 1]] = True
            cells[names[r * cols + c]] = mask
    return cells


_MASK_MODES = ('nonzero', 'values')


@functools.lru_cache(maxsize=16)
def _read_mask_image(path: str, mtime: float) -> np.ndarray:
    # mtime in the key: an edited file is read again
    image = mmcv.imread(path, flag='unchanged', backend='pillow')
    if image is None:
        raise ValueError(f'Could not read region mask image {path!r}.')
    image.setflags(write=False)
    return image


def load_mask_image(path: str) -> np.ndarray:
    """A region mask image as mmseg reads label maps (palette PNGs give indices), cached."""
    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        raise FileNotFoundError(f'Region mask image {path!r} does not exist.')
    path = os.path.abspath(path)
    return _read_mask_image(path, os.path.getmtime(path))


def _mask_names(path, name, mode: str = 'nonzero') -> list[str]:
    if mode not in _MASK_MODES:
        raise ValueError(f'mask region "mode" must be one of {_MASK_MODES}, got {mode!r}.')
    if not isinstance(name, str) or not name:
        raise ValueError(f'mask region needs a "name" (str), got {name!r}.')
    image = load_mask_image(path)
    if mode == 'nonzero':
        return [name]
    if image.ndim != 2:
        raise ValueError(f'mask image {path!r} has {image.shape[2]} channels; mode="values" '
                         f'needs a single-channel (grayscale or palette) image.')
    return [f'{name}_{value}' for value in np.unique(image).tolist()]


@register_region('mask', names=_mask_names)
def mask_image_regions(height: int, width: int, path, name,
                       mode: str = 'nonzero') -> dict[str, np.ndarray]:
    names = _mask_names(path, name, mode)
    image = load_mask_image(path)
    if image.shape[:2] != (height, width):
        raise ValueError(f'Region mask image {path!r} is {image.shape[0]}x{image.shape[1]} but '
                         f'the evaluated image (ori_shape) is {height}x{width}; give a mask of '
                         f'that size.')
    if mode == 'nonzero':
        nonzero = image != 0 if image.ndim == 2 else np.any(image != 0, axis=2)
        return {name: nonzero}
    values = np.unique(image)
    return {region: image == value for region, value in zip(names, values)}
