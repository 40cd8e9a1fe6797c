"""Run a model only as far as one tensor, and pool that tensor per channel.

Identification methods, the depth profile and the probes all need "the attacked tensor for
these images" without paying for the decode head when the tensor lies in the backbone or
neck: :func:`forward_to_layer` takes the cheapest forward that reaches the layer
(``extract_feat`` for backbone/neck layers) and stops it there with
:func:`posattack.channels.layers.capture`.

Usage::

    features = forward_to_layer(model, 'backbone:3', images)   # decode head not run
    pooled = global_average_pool(features)                      # (B, C)
"""
from __future__ import annotations

from typing import Any, Callable, Union

import torch
from torch import nn

from .layers import LayerRef, capture, default_layer, resolve_layer

__all__ = ['forward_to_layer', 'global_average_pool']


def global_average_pool(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension after the channel one: (B, C, ...) -> (B, C)."""
    if tensor.ndim < 2:
        raise ValueError(f'Cannot pool a tensor of shape {tuple(tensor.shape)}: it needs a batch '
                         f'and a channel dimension (B, C, ...).')
    if tensor.ndim == 2:
        return tensor.float()
    return tensor.float().flatten(2).mean(-1)

def _layer_runner(model: nn.Module, ref: LayerRef) -> Callable[[torch.Tensor], Any]:
    """The cheapest forward that reaches ``ref``: ``extract_feat`` for backbone/neck layers."""
    top = ref.module_path.split('.')[0]
    if hasattr(model, 'extract_feat') and top in ('backbone', 'neck'):
        return model.extract_feat
    if hasattr(model, 'extract_feat') and hasattr(model, 'data_preprocessor'):
        # An mmseg segmentor: mode='tensor' runs backbone, neck and decode head.
        return lambda inputs: model(inputs, None, mode='tensor')
    return model


def forward_to_layer(model: nn.Module, layer: Union[str, LayerRef],
                     inputs: torch.Tensor) -> torch.Tensor:
    """Run ``model`` on ``inputs`` only as far as ``layer`` and return that tensor.

    Usage::

        features = forward_to_layer(model, 'backbone:3', images)   # decode head not run
    """
    ref = resolve_layer(model, layer)
    run = _layer_runner(model, ref)
    with capture(model, ref, stop=True) as cap:
        run(inputs)
    if cap.output is None:
        try:
            suggestion = f', e.g. {default_layer(model)!r}'
        except ValueError:
            suggestion = ''
        raise RuntimeError(
            f'Layer {ref.name!r} did not run during the forward pass of {type(model).__name__} '
            f'(auxiliary heads run only in training); choose a layer on the inference '
            f'path{suggestion}.')
    return cap.output
