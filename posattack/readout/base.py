"""One interface for every position read-out: frozen features in, a position map out.

A read-out takes the features of one or several layers, each already resized to its
``feature_size`` (:meth:`PositionReadout.resize`, applied once when the features are cached:
the backbone is frozen, so its features never change during training), and returns a map
(N, 1, H, W) at ``output_size`` in [0, 1]. The training loop, the metrics and the reports
are the same for every read-out (:mod:`.training`, :mod:`.metrics`), so read-outs swap by
name.

A new read-out (a linear one, a deeper one) is one class in one module of this subpackage::

    @register_readout('my_readout')
    class MyReadout(PositionReadout):
        def __init__(self, channels, feature_size, output_size): ...
        def forward(self, features): ...          # list of (N, C_i, h, w) -> (N, 1, H, W)

and ``build_readout('my_readout', channels, feature_size, output_size)`` finds it (import the
module first; ``posattack.readout`` imports the built-in ones).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import torch
from mmengine.registry import Registry
from torch import nn
from torch.nn import functional as F

__all__ = ['READOUTS', 'PositionReadout', 'build_readout', 'readout_class', 'register_readout']

#: Read-outs by name; each entry is a :class:`PositionReadout` subclass.
READOUTS = Registry('posattack position read-out', locations=['posattack'])


def register_readout(name: str, force: bool = False) -> Callable[[type], type]:
    """Class decorator registering a read-out under ``name``."""

    def decorator(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, PositionReadout)):
            raise TypeError(f'{cls!r} must subclass PositionReadout to be registered.')
        READOUTS.register_module(name=name, module=cls, force=force)
        cls.name = name
        return cls

    return decorator


def readout_class(name: str) -> type:
    """The class registered as ``name``; an unknown name raises listing the known ones."""
    cls = READOUTS.get(name) if isinstance(name, str) else None
    if cls is None:
        known = ', '.join(sorted(READOUTS.module_dict))
        raise ValueError(f'unknown read-out {name!r}; known: {known}'
                         ' (a new one is a class registered with @register_readout, see '
                         'posattack/readout/base.py).')
    return cls


def build_readout(name: str, channels: Sequence[int], feature_size: Sequence[int],
                  output_size: Sequence[int]) -> 'PositionReadout':
    """A freshly initialised read-out by its registered name."""
    return readout_class(name)(channels, feature_size, output_size)


class PositionReadout(nn.Module):
    """What every read-out provides: ``resize`` (once, on the cached features) and
    ``forward`` (resized features -> (N, 1, H, W) map in [0, 1])."""
    name: str = ''

    def __init__(self, channels: Sequence[int], feature_size: Sequence[int],
                 output_size: Sequence[int]):
        super().__init__()
        self.channels = [int(c) for c in channels]
        self.feature_size = (int(feature_size[0]), int(feature_size[1]))
        self.output_size = (int(output_size[0]), int(output_size[1]))

    @staticmethod
    def resize(features: torch.Tensor, feature_size: Sequence[int]) -> torch.Tensor:
        """One layer's features at the read-out's working size (the authors' alignment:
        bilinear, corners aligned)."""
        size = (int(feature_size[0]), int(feature_size[1]))
        if tuple(features.shape[-2:]) == size:
            return features.float()
        return F.interpolate(features.float(), size, mode='bilinear', align_corners=True)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError
