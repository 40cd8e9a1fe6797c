"""Each channel's statistics over a reference set, for the ablations that need them.

The mean ablation writes each channel's mean activation; the noise ablation adds noise at
each channel's standard deviation. Both come from one pass that adds up, per channel, the
activations and their squares over every image and position (float64, reduced over
processes), and stops the forward right after the layer where it can.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Optional, Union

import torch
from torch import nn

from .ablations import ChannelStatistics
from .layers import LayerRef, StopForward, default_layer, resolve_layer, select_output, unwrap_model
from .selection import is_integer_at_least

__all__ = ['ChannelStatistics', 'channel_means', 'channel_statistics']


# ----------------------------------------------------------------------------- mean ablation
class _ChannelSumRecorder:
    """Forward hook adding up each channel of the selected tensor over batch and positions."""

    def __init__(self, ref: LayerRef, stop: bool):
        self.ref = ref
        self.stop = stop
        self.sums: Optional[torch.Tensor] = None
        self.square_sums: Optional[torch.Tensor] = None
        self.count = 0

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> None:
        tensor = select_output(output, self.ref).detach()
        if tensor.dim() < 2:
            raise ValueError(
                f'Layer {self.ref.name!r} gives a tensor of shape {tuple(tensor.shape)}; '
                f'channel means need (B, C, ...).')
        reduce_dims = [0] + list(range(2, tensor.dim()))
        sums = tensor.double().sum(dim=reduce_dims).cpu()
        square_sums = tensor.double().square().sum(dim=reduce_dims).cpu()
        if self.sums is None:
            self.sums = torch.zeros_like(sums)
            self.square_sums = torch.zeros_like(sums)
        if sums.shape != self.sums.shape:
            raise ValueError(f'Layer {self.ref.name!r} changed its channel count between calls '
                             f'({self.sums.numel()} then {sums.numel()}).')
        self.sums += sums
        self.square_sums += square_sums
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


def channel_means(model: nn.Module,
                  layer: Optional[Union[str, LayerRef]],
                  dataloader: Iterable[dict],
                  num_images: Optional[int] = None) -> torch.Tensor:
    """Each channel's mean activation of ``layer``: tensor (C,), float32 (see
    :func:`channel_statistics`, of which it is the ``mean``).

    Usage::

        means = channel_means(model, 'backbone:3', runner.test_dataloader, num_images=100)
        with ChannelRemoval(model, 'backbone:3', ids, ablation='mean', mean_values=means):
            ...
    """
    return channel_statistics(model, layer, dataloader, num_images).mean


def channel_statistics(model: nn.Module, layer: Optional[Union[str, LayerRef]],
                       dataloader: Iterable[dict],
                       num_images: Optional[int] = None) -> ChannelStatistics:
    """Each channel's mean and standard deviation of ``layer`` over a reference set, (C,) each,
    float32.

    Batches go through ``model.data_preprocessor(data, False)`` and the model's predict path,
    as mmseg evaluates, in eval mode without gradients. The mean is over every image and every
    position (with ``test_cfg.mode='slide'``: every crop). With ``test_cfg.mode='whole'`` the
    pass stops right after the layer, so the decode head is not run. ``num_images`` caps the
    images used (the first ones; in distributed runs the first of each rank's shard, and the
    sums are all-reduced so every rank gets the same means).

    The std is the population one, ``sqrt(E[x^2] - E[x]^2)`` over every image and position.

    Usage::

        stats = channel_statistics(model, 'backbone:3', runner.test_dataloader, num_images=100)
        with ChannelRemoval(model, 'backbone:3', ids, ablation='gaussian_noise', mean_values=stats):
            ...
    """
    from mmengine.dist import all_reduce

    if num_images is not None and not is_integer_at_least(num_images, 1):
        raise ValueError(
            f'num_images must be a positive integer or None (all images), got {num_images!r}.')
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
    square_sums = recorder.square_sums if recorder.square_sums is not None \
        else torch.zeros(0, dtype=torch.float64)
    count = torch.tensor([float(recorder.count)], dtype=torch.float64)
    # Every rank needs the same means, so the sums are reduced before dividing.
    size = torch.tensor([float(sums.numel())], dtype=torch.float64)
    all_reduce(size, op='max')
    if sums.numel() == 0:
        sums = torch.zeros(int(size.item()), dtype=torch.float64)
        square_sums = torch.zeros(int(size.item()), dtype=torch.float64)
    all_reduce(sums, op='sum')
    all_reduce(square_sums, op='sum')
    all_reduce(count, op='sum')
    if count.item() == 0:
        raise ValueError(
            f'channel_means saw no activations of layer {ref.name!r}: the dataloader is '
            f'empty or the layer never ran in the predict path. Check the dataset and '
            f'the layer.')
    mean = sums / count
    variance = (square_sums / count - mean.square()).clamp(min=0)  # rounding can dip below 0
    return ChannelStatistics(mean=mean.float(), std=variance.sqrt().float())
