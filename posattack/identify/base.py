"""One interface for every way of ranking channels by the position they carry.

A method watches the attacked tensor over a set of images and ends in a
:class:`~posattack.channels.ranking.ChannelRanking`; the calls, in order, are the same for
every method (as in Captum, so methods swap in one line)::

    method = build_identification_method('flip_difference', num_channels=C)
    views = method.views(images, valid_shapes)       # extra image batches it needs (maybe none)
    method.observe(features, [features_of(view) for view in views])   # attacked tensors
    method.all_reduce()                               # sum over processes (no-op on one)
    ranking = method.to_ranking('backbone:3', model_info)

Who runs the model is the driver's business, not the method's: the standalone
:func:`posattack.identify.run.identify_channels` runs the images and their views in one forward
that stops at the attacked tensor, and the sweep (:mod:`posattack.attack.sweep`) reuses the
features it already has for the images and runs only the views. So a method keeps
statistics, never a model, and its sums add up across batches, shards and processes.

A new method (a probe- or gradient-based ranking, say) is one class in one module of this
subpackage, registered by name::

    @register_identification_method('my_method')
    class MyMethod(IdentificationMethod):
        ...

and ``build_identification_method('my_method', ...)`` then finds it (import the module
first; ``posattack.identify`` imports the built-in ones).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, Optional

import torch
from mmengine.registry import Registry

from ..channels.ranking import ChannelRanking

__all__ = [
    'IDENTIFICATION_METHODS', 'IdentificationMethod', 'build_identification_method',
    'identification_method_class', 'register_identification_method',
]

#: Identification methods by name; each entry is an :class:`IdentificationMethod` subclass.
IDENTIFICATION_METHODS = Registry('posattack identification method', locations=['posattack'])
# (locations: posattack registers its entries on import; without them MMEngine, which
# knows the 'posattack' scope for `posattack::` configs, would look for an OpenMMLab-style
# posattack.utils.register_all_modules)


def register_identification_method(name: str, force: bool = False) -> Callable[[type], type]:
    """Class decorator registering an identification method under ``name``."""

    def decorator(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, IdentificationMethod)):
            raise TypeError(f'{cls!r} must subclass IdentificationMethod to be registered as an '
                            f'identification method.')
        IDENTIFICATION_METHODS.register_module(name=name, module=cls, force=force)
        cls.name = name
        return cls

    return decorator


def identification_method_class(name: str) -> type:
    """The class registered as ``name``; an unknown name raises listing the known ones (call it
    early, before any data is read)."""
    cls = IDENTIFICATION_METHODS.get(name) if isinstance(name, str) else None
    if cls is None:
        known = ', '.join(sorted(IDENTIFICATION_METHODS.module_dict))
        raise ValueError(f'Unknown identification method {name!r}; known: {known}. A new method '
                         f'is a class registered with @register_identification_method(name) '
                         f'(see posattack/identify/base.py).')
    return cls


def build_identification_method(name: str, num_channels: Optional[int] = None,
                                **kwargs: Any) -> 'IdentificationMethod':
    """A fresh method by its registered name (see :func:`identification_method_class`)."""
    return identification_method_class(name)(num_channels=num_channels, **kwargs)


class IdentificationMethod:
    """What every identification method provides; see the module docstring for the calls.

    ``num_channels`` may be None when the driver learns the channel count only from the first
    batch; a method then sizes its statistics at its first :meth:`observe`.
    """
    name: str = ''

    def __init__(self, num_channels: Optional[int] = None):
        self.num_channels = num_channels

    @property
    def count(self) -> int:
        """Images observed so far (on this process, or on all after :meth:`all_reduce`)."""
        raise NotImplementedError

    def views(self, images: torch.Tensor,
              valid_shapes: Optional[Sequence[Sequence[int]]] = None) -> list[torch.Tensor]:
        """Transformed copies of ``images`` (B, C, H, W) whose attacked tensor the method needs
        besides the images' own; ``valid_shapes`` are the (h, w) of each image before padding."""
        return []

    def observe(self, features: torch.Tensor, view_features: Sequence[torch.Tensor]) -> None:
        """Add a batch: the attacked tensor of the images, and of each view, in :meth:`views`
        order (all (B, C, ...))."""
        raise NotImplementedError

    def all_reduce(self) -> 'IdentificationMethod':
        """Sum the statistics of all processes (no-op outside distributed runs). Returns self."""
        raise NotImplementedError

    def to_ranking(self, layer: str, model_info: Optional[dict] = None) -> ChannelRanking:
        """The channel orders and the scores behind them."""
        raise NotImplementedError
