"""The position maps a read-out learns to draw, by name (Islam, Jia & Bruce, ICLR 2020, Fig. 2).

Every map is an (H, W) float tensor in [0, 1] that depends on the pixel's position only:

* ``gradient_h``: 0 at the left edge, 1 at the right (the authors' ``gt_hor.png``);
* ``gradient_v``: 0 at the top, 1 at the bottom (``gt_ver.png``);
* ``gaussian``: a Gaussian centred in the image, sigma half of each side, scaled to [0, 1]
  (``gt_gau.png``: sigma 130 px on its 256 px side, max error 0.011 against this formula);
* ``stripes_h``: horizontal stripes, 0.5 + 0.5 cos(2 pi 2.5 y / H), 2.5 periods top to
  bottom (``gt_horstp.png``: period about 102 px on 256, max error 0.02);
* ``stripes_v``: the same stripes turned to vertical, varying along x (``gt_verstp.png``).

The maps are drawn from these formulas at any size instead of resizing the authors' 256 x 256
PNGs, so a 128 x 256 image gets a map of its own aspect (the PNGs are square).

A new map is one registered function of (height, width)::

    @register_target_map('checkerboard')
    def checkerboard(height, width): ...        # -> (H, W) tensor in [0, 1]

Usage::

    check_target_names(['gradient_h', 'gaussian'])   # unknown names raise, listing the known
    target = target_map('gradient_v', 128, 256)       # (128, 256), rows 0 .. 1
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Callable

import torch
from mmengine.registry import Registry

__all__ = ['TARGET_MAPS', 'check_target_names', 'register_target_map', 'target_map',
           'target_map_names']

#: Target maps by name; each entry is a function (height, width) -> (H, W) tensor in [0, 1].
TARGET_MAPS = Registry('posattack read-out target map', locations=['posattack'])
STRIPE_PERIODS = 2.5   # periods across the image (the authors' PNGs: 256 / 102 px)


def register_target_map(name: str, force: bool = False) -> Callable:
    """Function decorator registering a target map under ``name``."""

    def decorator(fn: Callable) -> Callable:
        TARGET_MAPS.register_module(name=name, module=fn, force=force)
        return fn

    return decorator


def target_map_names() -> tuple[str, ...]:
    """The registered names, built-in ones first (registration order)."""
    return tuple(TARGET_MAPS.module_dict)


def check_target_names(names: Sequence[str]) -> list[str]:
    """``names`` as a list; an empty list or an unknown name raises, listing the known ones."""
    names = list(names)
    known = ', '.join(target_map_names())
    if not names:
        raise ValueError(f'no target map named; choose among {known}.')
    for name in names:
        if name not in TARGET_MAPS.module_dict:
            raise ValueError(f'unknown target map {name!r}; choose among {known} (a new map is a '
                             'function registered with @register_target_map, see '
                             'posattack/readout/target_maps.py).')
    return names


def target_map(name: str, height: int, width: int) -> torch.Tensor:
    """The map ``name`` at ``height`` x ``width``: float32 (H, W) with min 0 and max 1."""
    check_target_names([name])
    if height < 2 or width < 2:
        raise ValueError(f'a target map needs at least 2 x 2 pixels, got {height} x {width}.')
    values = TARGET_MAPS.get(name)(height, width).float()
    low, high = values.min(), values.max()
    # min-max scaling as the authors' training script does (a constant map would stay 0)
    return (values - low) / (high - low) if high > low else torch.zeros_like(values)


def _grid(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates in [0, 1]: y (H, W) down the rows, x (H, W) along the columns."""
    y = torch.linspace(0, 1, height, dtype=torch.float64)[:, None].expand(height, width)
    x = torch.linspace(0, 1, width, dtype=torch.float64)[None, :].expand(height, width)
    return y, x


@register_target_map('gradient_h')
def gradient_h(height: int, width: int) -> torch.Tensor:
    return _grid(height, width)[1]


@register_target_map('gradient_v')
def gradient_v(height: int, width: int) -> torch.Tensor:
    return _grid(height, width)[0]


@register_target_map('gaussian')
def gaussian(height: int, width: int) -> torch.Tensor:
    y, x = _grid(height, width)
    # sigma half the side: in units of the side, (x - 0.5) / 0.5
    return torch.exp(-0.5 * (((x - 0.5) / 0.5) ** 2 + ((y - 0.5) / 0.5) ** 2))


@register_target_map('stripes_h')
def stripes_h(height: int, width: int) -> torch.Tensor:
    y, _ = _grid(height, width)
    return 0.5 + 0.5 * torch.cos(2 * math.pi * STRIPE_PERIODS * y)


@register_target_map('stripes_v')
def stripes_v(height: int, width: int) -> torch.Tensor:
    _, x = _grid(height, width)
    return 0.5 + 0.5 * torch.cos(2 * math.pi * STRIPE_PERIODS * x)
