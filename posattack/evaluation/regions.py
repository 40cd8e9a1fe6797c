"""Image regions to score a segmentation in: center vs periphery, border bands, grids...

A *region spec* is a string naming a region type (``'paper'``) or a dict with a ``type``
and that type's arguments (``dict(type='border', bands=4)``). Every dict spec may also
carry ``prefix='x_'``, prepended to the names it makes (to tell two specs apart whose
names would clash, e.g. ``'paper'`` and ``'halves'`` both make ``left``/``right``).

Built-in types (``H`` x ``W`` image; columns ``x`` in [0, W), rows ``y`` in [0, H); all
bounds use Python integer division, so regions are exact pixel sets):

- ``full``: the whole image.
- ``paper``: the authors' geometry. ``full``; ``left`` = columns [0, W//2); ``right`` =
  [W//2, W); ``center`` = [W//4, (3*W)//4); ``periphery`` = the other columns
  (W = 2048: center is columns 512..1535, periphery 0..511 and 1536..2047).
- ``halves``: ``top`` = rows [0, H//2), ``bottom`` = [H//2, H), ``left``, ``right`` as above.
- ``border`` (``bands=4``): K bands by distance to the nearest image border.
  ``d = min(x, W-1-x, y, H-1-y) / max_d`` with ``max_d = (min(H, W) - 1) // 2`` (the
  largest such distance, so d spans [0, 1]); ``band_k`` holds the pixels with
  ``k/K <= d < (k+1)/K``, and d = 1 goes into the last band. ``band_0`` is outermost.
  Every band is non-empty iff ``K <= max_d + 1``; an image too small for that is an error.
- ``frame`` (``thickness``): ``frame`` = pixels closer than ``thickness`` pixels to the
  nearest border (``min(x, W-1-x, y, H-1-y) < t``), ``interior`` = the rest. An int is a
  pixel count; a float in (0, 1) is a fraction of the shorter side,
  ``t = max(1, round(f * min(H, W)))``.
- ``grid`` (``rows=3, cols=3``): cells ``cell_r_c``; row r spans [r*H//rows, (r+1)*H//rows)
  and likewise for columns.
- ``mask`` (``path``, ``name``, ``mode='nonzero'``): a label image read the way mmseg reads
  annotations (pillow, unchanged, so palette PNGs give their indices). ``mode='nonzero'``:
  one region ``name`` = the nonzero pixels; ``mode='values'``: one region ``<name>_<v>`` per
  distinct value v. Its size must equal the evaluated image's.

User regions: register a function ``(height, width, **kwargs) -> {name: bool (H, W) mask}``::

    @register_region('diagonal')
    def diagonal(height, width, side='upper'):
        ...

then use ``dict(type='diagonal', side='lower')``. Its names are found by calling it once on
a 64x64 probe image unless ``register_region(..., names=fn(**kwargs) -> list)`` says them.

Masks are built once per (specs, height, width) and cached (read-only arrays). The registry
is :mod:`.region_registry`, the built-in types :mod:`.region_types`.
"""
from __future__ import annotations

import functools
import inspect
import json
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

from . import region_types  # noqa: F401  registers the built-in types
from .region_registry import NAMES_FUNCS, REGIONS, RegionSpec, check_count, register_region

__all__ = [
    'REGIONS', 'RegionLayout', 'RegionSpec', 'build_region_layout', 'build_region_masks',
    'known_region_types', 'layout_of_masks', 'register_region', 'validate_region_specs',
]

_PROBE_SIZE = (64, 64)
_VALID_NAME = re.compile(r'^[A-Za-z0-9_\-]+$')


def _normalize_spec(spec: RegionSpec) -> dict:
    if isinstance(spec, str):
        spec = dict(type=spec)
    elif isinstance(spec, dict):
        spec = dict(spec)
    else:
        raise TypeError(f'A region spec is a type name (str) or a dict with a "type" key, '
                        f'got {type(spec).__name__}: {spec!r}.')
    region_type = spec.get('type')
    if not isinstance(region_type, str):
        raise ValueError(f'Region spec {spec!r} has no "type" string. Known types: '
                         f'{", ".join(known_region_types())}.')
    if region_type not in REGIONS.module_dict:
        raise ValueError(f'Unknown region type {region_type!r}. Known types: '
                         f'{", ".join(known_region_types())}; register more with '
                         f'@posattack.evaluation.regions.register_region(name).')
    prefix = spec.get('prefix', '')
    if not isinstance(prefix, str):
        raise TypeError(f'Region spec {spec!r}: "prefix" must be a string.')
    return spec


def _spec_kwargs(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k not in ('type', 'prefix')}


def _bind_kwargs(region_type: str, kwargs: dict) -> None:
    """Unknown or missing arguments fail now, naming the type's real arguments."""
    func = REGIONS.get(region_type)
    try:
        inspect.signature(func).bind(1, 1, **kwargs)
    except TypeError as err:
        params = [p for p in list(inspect.signature(func).parameters)[2:]]
        raise ValueError(f'Region type {region_type!r}: {err}. Its arguments: '
                         f'{", ".join(params) or "none"}.') from None


def _names_of(spec: dict) -> list[str]:
    region_type = spec['type']
    kwargs = _spec_kwargs(spec)
    _bind_kwargs(region_type, kwargs)
    if region_type in NAMES_FUNCS:
        names = list(NAMES_FUNCS[region_type](**kwargs))
    else:
        try:
            names = list(_call_region(spec, *_PROBE_SIZE).keys())
        except Exception as err:  # the user's function; say where it failed
            raise ValueError(f'Region type {region_type!r} failed on a {_PROBE_SIZE[0]}x'
                             f'{_PROBE_SIZE[1]} probe image used to learn its region names '
                             f'({err}); register it with names=... to skip the probe.') from err
    return [spec.get('prefix', '') + name for name in names]


def known_region_types() -> list[str]:
    return sorted(REGIONS.module_dict)


def validate_region_specs(specs: Union[RegionSpec, Sequence[RegionSpec]]) -> list[str]:
    """Check region specs without an image; return the region names they make, in order.

    Raises a ValueError/TypeError naming the problem for unknown types, bad arguments
    (fractions outside (0, 1), non-positive counts, unreadable mask files) and region names
    made twice.

    Example::

        validate_region_specs(['paper', dict(type='border', bands=4)])
        # -> ['full', 'left', 'right', 'center', 'periphery', 'band_0', ..., 'band_3']
    """
    if isinstance(specs, (str, dict)):
        specs = [specs]
    if not isinstance(specs, (list, tuple)) or not specs:
        raise ValueError(f'Region specs must be a non-empty list of specs, got {specs!r}.')
    names: list[str] = []
    made_by: dict[str, RegionSpec] = {}
    for raw in specs:
        spec = _normalize_spec(raw)
        for name in _names_of(spec):
            if not isinstance(name, str) or not _VALID_NAME.match(name):
                raise ValueError(f'Region name {name!r} (from {raw!r}) must be letters, '
                                 f'digits, "_" or "-".')
            if name in made_by:
                if _same_mask(made_by[name], raw, name):
                    continue  # 'paper' and 'halves' both make the same 'left': keep one
                raise ValueError(f'Region name {name!r} is made twice, with different masks: '
                                 f'by {made_by[name]!r} and by {raw!r}. Drop one, or give a '
                                 'dict spec a "prefix".')
            made_by[name] = raw
            names.append(name)
    return names


# Sizes on which two specs' masks of one name must agree to count as the same region: an
# even and an odd one, so a region that rounds differently (W // 2 vs (W + 1) // 2) differs.
_SAME_MASK_SIZES = ((64, 128), (37, 53))


def _same_mask(first: RegionSpec, second: RegionSpec, name: str) -> bool:
    """Whether two specs define region ``name`` alike (same mask at every probe size)."""
    first, second = _normalize_spec(first), _normalize_spec(second)
    try:
        for height, width in _SAME_MASK_SIZES:
            masks = [_call_region(spec, height, width).get(name[len(spec.get('prefix', '')):])
                     for spec in (first, second)]
            if masks[0] is None or masks[1] is None or not np.array_equal(*masks):
                return False
    except Exception:  # a region that cannot be drawn at a probe size is not shown equal
        return False
    return True


# ------------------------------------------------------------------------- mask building
def _call_region(spec: dict, height: int, width: int) -> dict[str, np.ndarray]:
    region_type = spec['type']
    result = REGIONS.get(region_type)(height, width, **_spec_kwargs(spec))
    if not isinstance(result, dict) or not result:
        raise TypeError(f'Region type {region_type!r} must return a non-empty dict '
                        f'{{name: bool mask}}, got {type(result).__name__}.')
    masks = {}
    for name, mask in result.items():
        mask = np.asarray(mask)
        if mask.shape != (height, width) or mask.dtype != bool:
            raise ValueError(f'Region type {region_type!r} returned {name!r} as a '
                             f'{mask.dtype} array of shape {mask.shape}; expected bool '
                             f'({height}, {width}).')
        masks[name] = mask
    return masks


class _SpecsKey:
    """Hashable stand-in for a list of specs (dicts are not hashable): equal iff their
    canonical JSON text is; the specs themselves ride along untouched for building."""

    def __init__(self, specs: Sequence[RegionSpec]):
        self.specs = [_normalize_spec(spec) for spec in specs]
        self.text = json.dumps(self.specs, sort_keys=True, default=repr)

    def __hash__(self):
        return hash(self.text)

    def __eq__(self, other):
        return isinstance(other, _SpecsKey) and other.text == self.text


@dataclass(eq=False)
class RegionLayout:
    """Region masks of one image size, plus the *pieces* that make confusions cheap.

    The masks overlap (full, left, center...), but they cut the image into pieces: maximal
    pixel sets that lie in exactly the same regions. ``piece_map`` gives each pixel's piece
    (flattened, int64) and ``membership`` (R, P) says which pieces make each region, so one
    bincount over (piece, gt, pred) followed by ``membership @ counts`` yields the confusion
    of every region at once.
    """

    names: tuple[str, ...]
    masks: np.ndarray  # (R, H, W) bool, read-only
    piece_map: np.ndarray = field(init=False, repr=False)  # (H*W,) int64
    membership: np.ndarray = field(init=False, repr=False)  # (R, P) float64 of 0/1
    _piece_offsets: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self):
        num_regions = self.masks.shape[0]
        flat = self.masks.reshape(num_regions, -1)
        packed = np.packbits(flat, axis=0, bitorder='little')  # (ceil(R/8), H*W)
        if packed.shape[0] <= 8:  # one uint64 key per pixel: fast unique
            keys = np.zeros((8, flat.shape[1]), np.uint8)
            keys[:packed.shape[0]] = packed
            keys = np.ascontiguousarray(keys.T).view(np.uint64).ravel()
            unique_keys, piece_map = np.unique(keys, return_inverse=True)
            unique_bits = np.ascontiguousarray(unique_keys).view(np.uint8).reshape(-1, 8).T
        else:
            unique_bits, piece_map = np.unique(packed, axis=1, return_inverse=True)
        membership = np.unpackbits(unique_bits, axis=0, bitorder='little')[:num_regions]
        self.piece_map = piece_map.reshape(-1).astype(np.int64)
        self.membership = membership.astype(np.float64)
        self.piece_map.setflags(write=False)
        self.masks.setflags(write=False)

    @property
    def num_pieces(self) -> int:
        return self.membership.shape[1]

    def piece_offsets(self, bins_per_piece: int) -> np.ndarray:
        """``piece_map * bins_per_piece``: where each pixel's block of bins starts (cached)."""
        offsets = self._piece_offsets.get(bins_per_piece)
        if offsets is None:
            offsets = self.piece_map * bins_per_piece
            offsets.setflags(write=False)
            self._piece_offsets[bins_per_piece] = offsets
        return offsets


# Masks arrays handed out by build_region_masks, mapped to their layout, so that
# region_confusion(pred, gt, masks) finds the precomputed pieces again. Weak values: an
# entry lives as long as its layout, and the layout holds the masks, so ids stay unique.
_LAYOUT_OF_MASKS: 'weakref.WeakValueDictionary[int, RegionLayout]' = \
    weakref.WeakValueDictionary()


def layout_of_masks(masks: np.ndarray) -> Optional[RegionLayout]:
    """The cached layout whose masks are this very array, else None."""
    layout = _LAYOUT_OF_MASKS.get(id(masks))
    return layout if layout is not None and layout.masks is masks else None


@functools.lru_cache(maxsize=32)
def _cached_layout(key: _SpecsKey, height: int, width: int) -> RegionLayout:
    specs = key.specs
    names = validate_region_specs(specs)
    stacked = np.empty((len(names), height, width), dtype=bool)
    index = 0
    for spec in specs:
        prefix = spec.get('prefix', '')
        made = _call_region(spec, height, width)
        for name, mask in made.items():
            if prefix + name in names[:index]:
                continue  # an identical duplicate (validate_region_specs checked the masks)
            if index >= len(names) or prefix + name != names[index]:
                expected = names[index] if index < len(names) else 'no more regions'
                raise ValueError(f'Region type {spec["type"]!r} made {prefix + name!r} on a '
                                 f'{height}x{width} image where {expected!r} was expected: '
                                 f'a region function must make the same names at every size.')
            stacked[index] = mask
            index += 1
    if index != len(names):
        raise ValueError(f'Region specs {specs!r} made {index} masks on a {height}x{width} image '
                         f'but {len(names)} names ({names}) without one.')
    layout = RegionLayout(tuple(names), stacked)
    _LAYOUT_OF_MASKS[id(layout.masks)] = layout
    return layout


def build_region_layout(specs: Union[RegionSpec, Sequence[RegionSpec]], height: int,
                        width: int) -> RegionLayout:
    """The cached :class:`RegionLayout` of `specs` on a `height` x `width` image."""
    if isinstance(specs, (str, dict)):
        specs = [specs]
    height, width = check_count(height, 'height'), check_count(width, 'width')
    return _cached_layout(_SpecsKey(specs), height, width)


def build_region_masks(specs: Union[RegionSpec, Sequence[RegionSpec]], height: int,
                       width: int) -> tuple[list[str], np.ndarray]:
    """Region names and their masks, a read-only bool array (R, height, width), cached.

    Example::

        names, masks = build_region_masks(['paper', dict(type='grid', rows=2, cols=2)], 64, 128)
        masks[names.index('center')]  # True on columns 32..95
    """
    layout = build_region_layout(specs, height, width)
    return list(layout.names), layout.masks

