"""Remove channels of one tensor inside a model: zero them, or replace them with their means.

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

import numbers
from collections.abc import Iterable
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .layers import (LayerRef, StopForward, default_layer, replace_output, resolve_layer, select_output,
                     unwrap_model)
from .ranking import resolve_channel_count

__all__ = [
    'ABLATIONS', 'SELECTION_MODES', 'ChannelRemoval', 'channel_means', 'count_from_fraction',
    'is_integer_at_least', 'random_channels', 'replace_channels', 'select_channels', 'validate_selection_args',
]

ABLATIONS = ('zero', 'mean')
SELECTION_MODES = ('targeted', 'random', 'explicit')

ChannelSpec = Union[Sequence[int], Callable[[int], Sequence[int]]]


# ----------------------------------------------------------------------------- replacement
def is_integer_at_least(value: Any, minimum: int) -> bool:
    """An int (or numpy integer), not a bool, and >= minimum."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        return False
    return value >= minimum


def _check_ablation(ablation: str, mean_values: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Validate the ablation name and its means; returns the means as a 1-D tensor (or None)."""
    if ablation not in ABLATIONS:
        raise ValueError(f'Unknown ablation {ablation!r}; choose one of {", ".join(map(repr, ABLATIONS))}.')
    if ablation == 'zero':
        if mean_values is not None:
            raise ValueError("mean_values are only used with ablation='mean'; drop them or set "
                             "ablation='mean'.")
        return None
    if mean_values is None:
        raise ValueError("ablation='mean' needs mean_values, a tensor of shape (C,) with each "
                         "channel's mean activation; compute it with posattack.removal.channel_means().")
    means = torch.as_tensor(mean_values)
    if means.dim() != 1:
        raise ValueError(f'mean_values must have shape (C,), one value per channel; got shape '
                         f'{tuple(means.shape)}.')
    if not torch.is_floating_point(means):
        means = means.double()
    return means


def _check_channel_ids(channels: Iterable[int]) -> list[int]:
    """Channel ids as Python ints, after checking each is a non-negative integer."""
    if isinstance(channels, torch.Tensor):
        channels = channels.flatten().tolist()
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Iterable):
        raise TypeError(f'channels must be a list of integer ids, got {channels!r}.')
    ids = []
    for channel in channels:
        if isinstance(channel, (bool, np.bool_)) or not isinstance(channel, numbers.Integral):
            raise TypeError(f'Channel ids must be integers, got {channel!r} ({type(channel).__name__}).')
        ids.append(int(channel))
    negative = [c for c in ids if c < 0]
    if negative:
        raise IndexError(f'Channel ids must be >= 0 (ids count from the first channel), got {negative[:10]}.')
    return ids


def _channel_index(channels: Iterable[int], num_total: int, device: torch.device) -> torch.Tensor:
    """Channel ids as a LongTensor, after checking each lies in 0..num_total-1."""
    ids = _check_channel_ids(channels)
    bad = [c for c in ids if c >= num_total]
    if bad:
        raise IndexError(f'Channel ids {bad[:10]} are out of range: the tensor has C={num_total} '
                         f'channels, so valid ids are 0..{num_total - 1}.')
    return torch.tensor(ids, dtype=torch.long, device=device)


def _replace_by_index(tensor: torch.Tensor, index: torch.Tensor, ablation: str,
                      means: Optional[torch.Tensor]) -> torch.Tensor:
    if index.numel() == 0:
        return tensor
    replaced = tensor.clone()  # never in place: the original may be reused upstream
    if ablation == 'zero':
        replaced[:, index] = 0
    else:
        if means.numel() != tensor.shape[1]:
            raise ValueError(f'mean_values has {means.numel()} entries but the tensor has '
                             f'C={tensor.shape[1]} channels; compute the means on the same layer.')
        broadcast_shape = (1, index.numel()) + (1,) * (tensor.dim() - 2)
        values = means.to(device=tensor.device, dtype=tensor.dtype)[index.to(means.device)]
        replaced[:, index] = values.view(broadcast_shape)
    return replaced


def replace_channels(tensor: torch.Tensor, channels: Sequence[int], ablation: str = 'zero',
                     mean_values: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A copy of ``tensor`` (B, C, ...) with ``channels`` set to zero or to ``mean_values[c]``.

    Empty ``channels`` returns ``tensor`` itself, untouched. Out-of-range ids raise naming C.

    Usage::

        z = replace_channels(features, [3, 17], ablation='zero')
        z = replace_channels(features, [3, 17], ablation='mean', mean_values=means)   # means: (C,)
    """
    means = _check_ablation(ablation, mean_values)
    if not isinstance(tensor, torch.Tensor) or tensor.dim() < 2:
        got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ValueError(f'replace_channels expects a tensor of shape (B, C, ...), got {got}.')
    index = _channel_index(channels, tensor.shape[1], tensor.device)
    return _replace_by_index(tensor, index, ablation, means)


# ----------------------------------------------------------------------------- context manager
class ChannelRemoval:
    """Replace some channels of one layer's output for as long as the ``with`` block runs.

    ``layer`` is a name such as ``'backbone:3'`` (see :func:`posattack.layers.resolve_layer`),
    a :class:`LayerRef`, or ``None`` for the tensor the decode head consumes. For modules that
    return a tuple/list only element ``index`` is replaced, in a new container of the same type.
    ``channels`` is a list of ids, or a callable ``f(C) -> ids`` called once, at the first
    forward, with the tensor's channel count (for selections that need C, e.g. random ones).
    ``ablation='zero'`` zeroes them; ``ablation='mean'`` writes ``mean_values[c]`` (shape (C,),
    see :func:`channel_means`) at every position.

    Usage::

        with ChannelRemoval(model, 'backbone:3', [5, 9, 42]) as removal:
            logits = model(inputs, mode='tensor')
        removal.channels, removal.num_calls     # ([5, 9, 42], 1)
    """

    def __init__(self, model: nn.Module, layer: Optional[Union[str, LayerRef]], channels: ChannelSpec,
                 ablation: str = 'zero', mean_values: Optional[torch.Tensor] = None):
        model = unwrap_model(model)
        self.ref = resolve_layer(model, default_layer(model) if layer is None else layer)
        self.ablation = ablation
        self.mean_values = _check_ablation(ablation, mean_values)
        if callable(channels):
            self._resolver: Optional[Callable[[int], Sequence[int]]] = channels
            self.channels: Optional[list[int]] = None
        else:
            self._resolver = None
            self.channels = _check_channel_ids(channels)
        self.num_calls = 0
        self._index_cache: dict[tuple[int, torch.device], torch.Tensor] = {}
        self._handle = None

    @property
    def active(self) -> bool:
        """Whether the hook is currently registered."""
        return self._handle is not None

    def _index_for(self, num_total: int, device: torch.device) -> torch.Tensor:
        if self.channels is None:
            self.channels = _check_channel_ids(self._resolver(num_total))
        key = (num_total, device)
        if key not in self._index_cache:
            self._index_cache[key] = _channel_index(self.channels, num_total, device)
        return self._index_cache[key]

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        tensor = select_output(output, self.ref)
        if tensor.dim() < 2:
            raise ValueError(f'Layer {self.ref.name!r} gives a tensor of shape {tuple(tensor.shape)}; '
                             f'channel removal needs (B, C, ...).')
        index = self._index_for(tensor.shape[1], tensor.device)
        self.num_calls += 1
        if index.numel() == 0:
            return None  # keep the module's own output object: bit-identical downstream
        replaced = _replace_by_index(tensor, index, self.ablation, self.mean_values)
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
        return f'ChannelRemoval({self.ref.name!r}, {shown}, ablation={self.ablation!r}, active={self.active})'


# ----------------------------------------------------------------------------- mean ablation
class _ChannelSumRecorder:
    """Forward hook adding up each channel of the selected tensor over batch and positions."""

    def __init__(self, ref: LayerRef, stop: bool):
        self.ref = ref
        self.stop = stop
        self.sums: Optional[torch.Tensor] = None
        self.count = 0

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> None:
        tensor = select_output(output, self.ref).detach()
        if tensor.dim() < 2:
            raise ValueError(f'Layer {self.ref.name!r} gives a tensor of shape {tuple(tensor.shape)}; '
                             f'channel means need (B, C, ...).')
        reduce_dims = [0] + list(range(2, tensor.dim()))
        sums = tensor.double().sum(dim=reduce_dims).cpu()
        if self.sums is None:
            self.sums = torch.zeros_like(sums)
        if sums.shape != self.sums.shape:
            raise ValueError(f'Layer {self.ref.name!r} changed its channel count between calls '
                             f'({self.sums.numel()} then {sums.numel()}).')
        self.sums += sums
        self.count += tensor.numel() // tensor.shape[1]
        if self.stop:
            raise StopForward(self.ref.name)


def _take_images(data: dict, num: int) -> dict:
    """The first ``num`` images of an mmseg batch dict (inputs / data_samples lists)."""
    return {key: value[:num] if isinstance(value, (list, tuple, torch.Tensor)) else value
            for key, value in data.items()}


def _batch_size(data: dict) -> int:
    inputs = data['inputs']
    return inputs.shape[0] if isinstance(inputs, torch.Tensor) else len(inputs)


def channel_means(model: nn.Module, layer: Optional[Union[str, LayerRef]], dataloader: Iterable[dict],
                  num_images: Optional[int] = None) -> torch.Tensor:
    """Each channel's mean activation of ``layer`` over a reference set: tensor (C,), float32.

    Batches go through ``model.data_preprocessor(data, False)`` and the model's predict path,
    as mmseg evaluates, in eval mode without gradients. The mean is over every image and every
    position (with ``test_cfg.mode='slide'``: every crop). With ``test_cfg.mode='whole'`` the
    pass stops right after the layer, so the decode head is not run. ``num_images`` caps the
    images used (the first ones; in distributed runs the first of each rank's shard, and the
    sums are all-reduced so every rank gets the same means).

    Usage::

        means = channel_means(model, 'backbone:3', runner.test_dataloader, num_images=100)
        with ChannelRemoval(model, 'backbone:3', ids, ablation='mean', mean_values=means):
            ...
    """
    from mmengine.dist import all_reduce

    if num_images is not None and not is_integer_at_least(num_images, 1):
        raise ValueError(f'num_images must be a positive integer or None (all images), got {num_images!r}.')
    model = unwrap_model(model)
    ref = resolve_layer(model, default_layer(model) if layer is None else layer)
    if not hasattr(model, 'data_preprocessor'):
        raise TypeError(f'channel_means needs an mmseg segmentor with a data_preprocessor, got '
                        f'{type(model).__name__}.')
    test_cfg = getattr(model, 'test_cfg', None) or {}
    slide = test_cfg.get('mode', 'whole') == 'slide'
    recorder = _ChannelSumRecorder(ref, stop=not slide)  # slide: every crop must pass the layer

    was_training = model.training
    model.eval()
    handle = ref.module.register_forward_hook(recorder)
    seen = 0
    try:
        with torch.no_grad():
            for data in dataloader:
                if num_images is not None:
                    if seen >= num_images:
                        break
                    data = _take_images(data, num_images - seen)
                seen += _batch_size(data)
                data = model.data_preprocessor(data, False)
                try:
                    model(**data, mode='predict')
                except StopForward:
                    pass
    finally:
        handle.remove()
        model.train(was_training)

    sums = recorder.sums if recorder.sums is not None else torch.zeros(0, dtype=torch.float64)
    count = torch.tensor([float(recorder.count)], dtype=torch.float64)
    # Every rank needs the same means, so the sums are reduced before dividing.
    size = torch.tensor([float(sums.numel())], dtype=torch.float64)
    all_reduce(size, op='max')
    if sums.numel() == 0:
        sums = torch.zeros(int(size.item()), dtype=torch.float64)
    all_reduce(sums, op='sum')
    all_reduce(count, op='sum')
    if count.item() == 0:
        raise ValueError(f'channel_means saw no activations of layer {ref.name!r}: the dataloader is '
                         f'empty or the layer never ran in the predict path. Check the dataset and '
                         f'the layer.')
    return (sums / count).float()


# ----------------------------------------------------------------------------- selection
def count_from_fraction(fraction: float, num_total: int) -> int:
    """``round(fraction * C)``, at least 1: the rule the rankings and the sweep share."""
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise ValueError(f'fraction must lie in (0, 1] (a share of the {num_total} channels), '
                         f'got {fraction!r}.')
    return resolve_channel_count(num_total, fraction=fraction)


def random_channels(num_total: int, num_channels: int, seed: int = 0) -> list[int]:
    """``num_channels`` distinct ids of ``0..num_total-1`` drawn with ``seed``.

    The draw is the order of ``num_total`` raw 64-bit outputs of numpy's PCG64 seeded with
    ``seed`` (stable argsort). The raw PCG64 stream is covered by numpy's compatibility policy
    (NEP 19) and PCG64 is platform independent, so a seed gives the same channels on every
    machine and numpy version; ``Generator.permutation`` carries no such promise. Draws are
    nested: the first N of a seed are the prefix of its first N+1.
    """
    if not is_integer_at_least(seed, 0):
        raise ValueError(f'seed must be a non-negative integer, got {seed!r}.')
    keys = np.random.PCG64(int(seed)).random_raw(num_total)
    order = np.argsort(keys, kind='stable')
    return [int(c) for c in order[:num_channels]]


def validate_selection_args(mode: str, num_channels: Optional[int] = None, fraction: Optional[float] = None,
                            seed: int = 0, channels: Optional[Sequence[int]] = None,
                            ranking: Any = None, region: str = 'overall') -> None:
    """Check what can be checked before the tensor's channel count C is known."""
    if mode not in SELECTION_MODES:
        raise ValueError(f'Unknown selection mode {mode!r}; choose one of '
                         f'{", ".join(map(repr, SELECTION_MODES))}.')
    if mode == 'explicit':
        if channels is None:
            raise ValueError("mode='explicit' needs channels=[...], the channel ids to remove.")
        if num_channels is not None or fraction is not None:
            raise ValueError("mode='explicit' takes its channels from channels=[...]; set "
                             "num_channels=None and fraction=None.")
        ids = _check_channel_ids(channels)
        if len(set(ids)) != len(ids):
            duplicates = sorted({c for c in ids if ids.count(c) > 1})
            raise ValueError(f'channels lists ids more than once: {duplicates[:10]}; give each id once.')
        return
    if channels is not None:
        raise ValueError(f"channels=[...] is only used with mode='explicit' (mode is {mode!r}); "
                         f"drop it or set mode='explicit'.")
    if (num_channels is None) == (fraction is None):
        raise ValueError(f"mode={mode!r} needs exactly one of num_channels (a count) or fraction "
                         f"(a share in (0, 1]); got {'both' if num_channels is not None else 'neither'}.")
    if num_channels is not None and not is_integer_at_least(num_channels, 0):
        raise ValueError(f'num_channels must be an integer >= 0, got {num_channels!r}.')
    if fraction is not None:
        count_from_fraction(fraction, 1)
    if mode == 'random':
        if not is_integer_at_least(seed, 0):
            raise ValueError(f'seed must be a non-negative integer, got {seed!r}.')
    if mode == 'targeted':
        if ranking is None:
            raise ValueError("mode='targeted' needs a ranking (a ChannelRanking, e.g. "
                             "ChannelRanking.load('ranking.json') made by tools/identify.py); "
                             "or use mode='random'.")
        regions = list(ranking.regions)
        if region not in regions:
            raise ValueError(f'The ranking has no order for region {region!r}; available: '
                             f'{", ".join(regions)}.')


def select_channels(mode: str, num_total: int, ranking: Any = None, region: str = 'overall',
                    num_channels: Optional[int] = None, fraction: Optional[float] = None, seed: int = 0,
                    channels: Optional[Sequence[int]] = None) -> list[int]:
    """The channel ids to remove from a tensor of ``num_total`` channels.

    ``'targeted'``: the first ``num_channels`` (or ``fraction`` of C) of ``ranking``'s order for
    ``region`` (overall/left/right/top/bottom: whatever orders it has). ``'random'``: as many
    drawn with ``seed`` (:func:`random_channels`, the same on every machine). ``'explicit'``:
    ``channels`` as given. ``fraction`` counts ``round(fraction * C)``, at least 1.

    Usage::

        select_channels('targeted', 2048, ranking=ranking, region='left', fraction=0.05)
        select_channels('random', 2048, num_channels=100, seed=3)
    """
    if not is_integer_at_least(num_total, 1):
        raise ValueError(f'num_total (the tensor\'s channel count C) must be a positive integer, '
                         f'got {num_total!r}.')
    validate_selection_args(mode, num_channels, fraction, seed, channels, ranking, region)
    if ranking is not None and int(ranking.num_channels) != num_total:
        raise ValueError(
            f'The ranking was made for a tensor of {ranking.num_channels} channels '
            f'(layer {getattr(ranking, "layer", "?")!r}), but this tensor has {num_total}. Identify the '
            f'channels of this model and layer (tools/identify.py), or attack the layer the ranking '
            f'was made for.')
    if mode == 'explicit':
        ids = _check_channel_ids(channels)
        _channel_index(ids, num_total, torch.device('cpu'))
        return ids
    count = count_from_fraction(fraction, num_total) if fraction is not None else int(num_channels)
    if count > num_total:
        raise ValueError(f'Cannot remove {count} channels: the tensor has C={num_total}; pass '
                         f'num_channels in 0..{num_total} or a fraction in (0, 1].')
    if count == 0:
        return []
    if mode == 'targeted':
        return [int(c) for c in ranking.top(region, num_channels=count)]
    return random_channels(num_total, count, seed)
