"""Remove channels of one tensor inside a model: zero them, set them to their means, or add noise.

The removal is a forward hook on the module that produces the tensor, scoped by a ``with``
(in the spirit of baukit's ``nethook.Trace``): the hook never outlives the block, also when
the block raises. Usage::

    channels = select_channels('targeted', 2048, ranking=ranking, num_channels=100)
    with ChannelRemoval(model, 'backbone:3', channels):
        logits = model(inputs, mode='tensor')

The hooked tensor is never modified in place (a residual or a second consumer upstream may
still hold it): the replacement is a clone with the removed channels overwritten.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from .ablations import Ablation, ChannelStatistics, ablation_names, get_ablation
from .layers import (LayerRef, default_layer, replace_output, resolve_layer, select_output,
                     unwrap_model)
from .selection import channel_index, check_channel_ids

__all__ = ['ChannelRemoval', 'ChannelStatistics', 'replace_channels']

ChannelSpec = Union[Sequence[int], Callable[[int], Sequence[int]]]
# A (C,) tensor of means (the mean ablation, as before), or the ChannelStatistics an
# ablation reads.
Statistics = Union[torch.Tensor, ChannelStatistics, None]


def _as_vector(values: Any, what: str) -> torch.Tensor:
    vector = torch.as_tensor(values)
    if vector.dim() != 1:
        raise ValueError(f'{what} must have shape (C,), one value per channel; got shape '
                         f'{tuple(vector.shape)}.')
    return vector if torch.is_floating_point(vector) else vector.double()


def _check_ablation(ablation: Union[str, Ablation],
                    mean_values: Statistics) -> Optional[ChannelStatistics]:
    """Validate the ablation name and the statistics it reads; returns them checked (or None)."""
    method = get_ablation(ablation)
    ablation = method.name
    if not method.needs_statistics:
        if mean_values is not None:
            raise ValueError(f"mean_values are only used with ablation='mean' (or another ablation "
                             f"that reads statistics: {', '.join(_statistics_ablations())}); drop "
                             f"them or set ablation='mean'.")
        return None
    if mean_values is None:
        raise ValueError(f"ablation={ablation!r} needs mean_values: each channel's statistics "
                         f"({', '.join(method.statistics)}), a tensor of shape (C,) with each "
                         f"channel's mean activation for ablation='mean', or a ChannelStatistics; "
                         f"compute them with posattack.channels.channel_means() / "
                         f"channel_statistics().")
    given = mean_values if isinstance(mean_values, ChannelStatistics) \
        else ChannelStatistics(mean=mean_values)
    checked = ChannelStatistics()
    for key in method.statistics:
        if given.get(key) is None:
            raise ValueError(f'ablation={ablation!r} reads each channel\'s {key}, which the '
                             f'statistics given lack; compute them with '
                             f'posattack.channels.channel_statistics().')
        setattr(checked, key, _as_vector(given.get(key), 'mean_values' if key == 'mean'
                                         else f'{key}_values'))
    return checked


def _statistics_ablations() -> list[str]:
    return [repr(name) for name in ablation_names() if get_ablation(name).needs_statistics]


def _replace_by_index(tensor: torch.Tensor, index: torch.Tensor, ablation: Union[str, Ablation],
                      statistics: Optional[ChannelStatistics]) -> torch.Tensor:
    if index.numel() == 0:
        return tensor
    replaced = tensor.clone()  # never in place: the original may be reused upstream
    get_ablation(ablation).apply(replaced, index, statistics)
    return replaced


def replace_channels(tensor: torch.Tensor, channels: Sequence[int],
                     ablation: Union[str, Ablation] = 'zero',
                     mean_values: Statistics = None) -> torch.Tensor:
    """A copy of ``tensor`` (B, C, ...) with ``channels`` ablated (:mod:`.ablations`): set to
    zero, to ``mean_values[c]``, or given noise at each channel's std.

    Empty ``channels`` returns ``tensor`` itself, untouched. Out-of-range ids raise naming C.
    ``ablation`` is a registered name or an :class:`~.ablations.Ablation` object (give the
    same object to every call of a run: the noise ablation then draws fresh noise each call).

    Usage::

        z = replace_channels(features, [3, 17], ablation='zero')
        z = replace_channels(features, [3, 17], ablation='mean', mean_values=means)   # means: (C,)
        z = replace_channels(features, [3, 17], ablation='gaussian_noise',
                             mean_values=ChannelStatistics(std=stds))
    """
    ablation = get_ablation(ablation)
    means = _check_ablation(ablation, mean_values)
    if not isinstance(tensor, torch.Tensor) or tensor.dim() < 2:
        got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ValueError(f'replace_channels expects a tensor of shape (B, C, ...), got {got}.')
    index = channel_index(channels, tensor.shape[1], tensor.device)
    return _replace_by_index(tensor, index, ablation, means)


# ----------------------------------------------------------------------------- context manager
class ChannelRemoval:
    """Replace some channels of one layer's output for as long as the ``with`` block runs.

    ``layer`` is a name such as ``'backbone:3'`` (see
    :func:`posattack.channels.layers.resolve_layer`), a :class:`LayerRef`, or ``None`` for the
    tensor the decode head consumes. For modules that
    return a tuple/list only element ``index`` is replaced, in a new container of the same type.
    ``channels`` is a list of ids, or a callable ``f(C) -> ids`` called once, at the first
    forward, with the tensor's channel count (for selections that need C, e.g. random ones).
    ``ablation='zero'`` zeroes them; ``ablation='mean'`` writes ``mean_values[c]`` (shape (C,),
    see :func:`channel_means`) at every position; ``ablation='gaussian_noise'`` adds noise at
    each channel's std (``mean_values=ChannelStatistics(std=...)``, see
    :func:`channel_statistics`). Other ablations: :mod:`posattack.channels.ablations`.

    Usage::

        with ChannelRemoval(model, 'backbone:3', [5, 9, 42]) as removal:
            logits = model(inputs, mode='tensor')
        removal.channels, removal.num_calls     # ([5, 9, 42], 1)
    """

    def __init__(self,
                 model: nn.Module,
                 layer: Optional[Union[str, LayerRef]],
                 channels: ChannelSpec,
                 ablation: Union[str, Ablation] = 'zero',
                 mean_values: Statistics = None):
        model = unwrap_model(model)
        self.ref = resolve_layer(model, default_layer(model) if layer is None else layer)
        self._ablation = get_ablation(ablation)  # one object: one noise stream per removal
        self.ablation = self._ablation.name
        self.statistics = _check_ablation(self._ablation, mean_values)
        self.mean_values = self.statistics.mean if self.statistics is not None else None
        if callable(channels):
            self._resolver: Optional[Callable[[int], Sequence[int]]] = channels
            self.channels: Optional[list[int]] = None
        else:
            self._resolver = None
            self.channels = check_channel_ids(channels)
        self.num_calls = 0
        self._index_cache: dict[tuple[int, torch.device], torch.Tensor] = {}
        self._handle = None

    @property
    def active(self) -> bool:
        """Whether the hook is currently registered."""
        return self._handle is not None

    def _index_for(self, num_total: int, device: torch.device) -> torch.Tensor:
        if self.channels is None:
            self.channels = check_channel_ids(self._resolver(num_total))
        key = (num_total, device)
        if key not in self._index_cache:
            self._index_cache[key] = channel_index(self.channels, num_total, device)
        return self._index_cache[key]

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        tensor = select_output(output, self.ref)
        if tensor.dim() < 2:
            raise ValueError(
                f'Layer {self.ref.name!r} gives a tensor of shape {tuple(tensor.shape)}; '
                f'channel removal needs (B, C, ...).')
        index = self._index_for(tensor.shape[1], tensor.device)
        self.num_calls += 1
        if index.numel() == 0:
            return None  # keep the module's own output object: bit-identical downstream
        replaced = _replace_by_index(tensor, index, self._ablation, self.statistics)
        return replace_output(output, self.ref, replaced)

    def attach(self) -> 'ChannelRemoval':
        """Register the hook (what ``with`` does on entry)."""
        if self._handle is not None:
            raise RuntimeError(f'ChannelRemoval on {self.ref.name!r} is already active; '
                               f'leave the first `with` block before entering it again.')
        self._handle = self.ref.module.register_forward_hook(self._hook)
        return self

    def detach(self) -> None:
        """Remove the hook (what ``with`` does on exit); safe to call twice."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __enter__(self) -> 'ChannelRemoval':
        return self.attach()

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.detach()
        return False  # never swallow the caller's exception

    def __repr__(self) -> str:
        shown = 'unresolved' if self.channels is None else f'{len(self.channels)} channels'
        return (f'ChannelRemoval({self.ref.name!r}, {shown}, ablation={self.ablation!r}, '
                f'active={self.active})')
