"""What a removed channel becomes: the ablations, by name.

* ``zero``: 0 at every position (the paper's removal);
* ``mean``: the channel's mean activation over a reference set, at every position. The
  channel still adds its average to what reads it, but no longer varies with the image;
* ``gaussian_noise``: the activation plus noise drawn from N(0, std_c^2), std_c the channel's
  standard deviation over the reference set: a common control in the ablation literature,
  which drowns the channel's signal at the channel's own scale instead of moving it to 0.

``mean`` and ``gaussian_noise`` need statistics from a first pass over images
(:attr:`Ablation.statistics`; :func:`posattack.channels.channel_statistics.channel_statistics`
computes them, and the sweep and the removal hook run that pass when an ablation asks).

A new ablation is one registered class::

    @register_ablation('my_ablation')
    class MyAblation(Ablation):
        statistics = ('mean',)          # what it reads; () for none
        def apply(self, replaced, index, statistics): ...   # write replaced[:, index]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch
from mmengine.registry import Registry

__all__ = [
    'ABLATIONS', 'Ablation', 'ChannelStatistics', 'ablation_names', 'get_ablation',
    'register_ablation',
]

#: Ablations by name; each entry is an :class:`Ablation` subclass.
ABLATIONS = Registry('posattack ablation', locations=['posattack'])
# (locations: posattack registers its entries on import; without them MMEngine, which
# knows the 'posattack' scope for `posattack::` configs, would look for an OpenMMLab-style
# posattack.utils.register_all_modules)


@dataclass
class ChannelStatistics:
    """Per-channel statistics of one tensor over a reference set: ``mean`` and ``std``, (C,)."""
    mean: Optional[torch.Tensor] = None
    std: Optional[torch.Tensor] = None

    def get(self, key: str) -> Optional[torch.Tensor]:
        return getattr(self, key)


def register_ablation(name: str, force: bool = False) -> Callable[[type], type]:
    """Class decorator registering an :class:`Ablation` under ``name``."""

    def decorator(cls: type) -> type:
        ABLATIONS.register_module(name=name, module=cls, force=force)
        cls.name = name
        return cls

    return decorator


def ablation_names() -> tuple[str, ...]:
    """The registered names, built-in ones first (registration order)."""
    return tuple(ABLATIONS.module_dict)


def get_ablation(name: Union[str, 'Ablation']) -> 'Ablation':
    """A fresh ablation called ``name`` (an :class:`Ablation` given is returned as it is, so a
    caller can keep one, e.g. one noise generator over a whole sweep); an unknown name raises
    listing the known ones."""
    if isinstance(name, Ablation):
        return name
    cls = ABLATIONS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f'Unknown ablation {name!r}; choose one of '
                         f'{", ".join(map(repr, ablation_names()))}.')
    return cls()


class Ablation:
    """Overwrite the removed channels of a tensor; see the module docstring."""
    name: str = ''
    #: Which :class:`ChannelStatistics` fields it reads; non-empty means a first pass.
    statistics: tuple[str, ...] = ()

    @property
    def needs_statistics(self) -> bool:
        return bool(self.statistics)

    def apply(self, replaced: torch.Tensor, index: torch.Tensor,
              statistics: Optional[ChannelStatistics]) -> None:
        """Overwrite ``replaced[:, index]`` in place (``replaced`` is already a clone)."""
        raise NotImplementedError


def _per_channel(values: torch.Tensor, index: torch.Tensor, tensor: torch.Tensor,
                 what: str) -> torch.Tensor:
    """``values[index]`` shaped to broadcast over ``tensor[:, index]`` (1, k, 1, ...)."""
    if values.numel() != tensor.shape[1]:
        raise ValueError(f'{what} has {values.numel()} entries but the tensor has '
                         f'C={tensor.shape[1]} channels; compute the {what} on the same layer.')
    broadcast_shape = (1, index.numel()) + (1,) * (tensor.dim() - 2)
    picked = values.to(device=tensor.device, dtype=tensor.dtype)[index.to(values.device)]
    return picked.view(broadcast_shape)


@register_ablation('zero')
class ZeroAblation(Ablation):
    """0 at every position."""

    def apply(self, replaced, index, statistics):
        replaced[:, index] = 0


@register_ablation('mean')
class MeanAblation(Ablation):
    """The channel's mean over the reference set, at every position."""
    statistics = ('mean',)

    def apply(self, replaced, index, statistics):
        replaced[:, index] = _per_channel(statistics.mean, index, replaced, 'mean_values')


@register_ablation('gaussian_noise')
class GaussianNoiseAblation(Ablation):
    """The activation plus N(0, std_c^2) noise, drawn independently at every position.

    The draws come from a generator seeded once per ablation object, so a run repeats
    exactly; the noise has the tensor's dtype and lives on its device.
    """
    statistics = ('std',)

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self._generators: dict = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def apply(self, replaced, index, statistics):
        std = _per_channel(statistics.std, index, replaced, 'std_values')
        selected = replaced[:, index]
        noise = torch.randn(selected.shape, generator=self._generator(replaced.device),
                            device=replaced.device, dtype=replaced.dtype)
        replaced[:, index] = selected + noise * std
