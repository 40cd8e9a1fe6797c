"""The region-type registry: where a new region type goes.

A region type is a function ``(height, width, **kwargs) -> {name: bool (H, W) mask}``,
registered by name; :mod:`posattack.evaluation.region_types` holds the built-in ones and
:mod:`posattack.evaluation.regions` turns specs into masks. Example::

    @register_region('top_strip')
    def top_strip(height, width, rows=8):
        mask = np.zeros((height, width), bool); mask[:rows] = True
        return {'top_strip': mask}
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import numpy as np
from mmengine.registry import Registry

__all__ = ['REGIONS', 'RegionSpec', 'register_region']

RegionSpec = Union[str, dict]


#: Region types by name; each entry is a mask function ``(height, width, **kwargs)``.
REGIONS = Registry('posattack region', locations=['posattack'])
# (locations: posattack registers its entries on import; without them MMEngine, which
# knows the 'posattack' scope for `posattack::` configs, would look for an OpenMMLab-style
# posattack.utils.register_all_modules)


# Optional ``names(**kwargs) -> list[str]`` per type: says the names without an image size
# (and checks the arguments). Types without one are probed on a small image.
NAMES_FUNCS: dict[str, Callable[..., list[str]]] = {}


def register_region(name: str, names: Optional[Callable[..., list[str]]] = None,
                    force: bool = False) -> Callable:
    """Decorator registering a region type usable in region specs.

    Example::

        @register_region('top_strip')
        def top_strip(height, width, rows=8):
            mask = np.zeros((height, width), bool); mask[:rows] = True
            return {'top_strip': mask}
    """

    def decorator(func: Callable) -> Callable:
        REGIONS.register_module(name=name, module=func, force=force)
        if names is not None:
            NAMES_FUNCS[name] = names
        else:
            NAMES_FUNCS.pop(name, None)
        return func

    return decorator


# ----------------------------------------------------------------------------- spec checks
def check_count(value, what: str, maximum: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f'{what} must be a positive integer, got {value!r}.')
    if maximum is not None and value > maximum:
        raise ValueError(f'{what} must be at most {maximum}, got {value}: every region is '
                         'a full-image mask per image and a confusion matrix per setting.')
    return int(value)


def split_bounds(length: int, parts: int) -> np.ndarray:
    """Integer bounds splitting [0, length) into `parts` near-equal spans."""
    return (np.arange(parts + 1) * length) // parts
