"""The frozen features a read-out reads: named layers of a segmentor, on raw images.

:func:`layer_features` runs the segmentor's own ``data_preprocessor`` on raw images (channel
order, mean, std; its test-time padding is cut off again so every map lines up with the
image), one forward per batch that stops where the deepest needed layer is known (the
backbone/neck only, when every layer lives there), and records every named layer with a
capture hook. Each layer's tensor is resized to the read-out's working size at once, so the
cache holds (N, C, h, w) per layer, not the full-resolution maps.

:func:`backbone_variant` gives the controls of the ICLR paper on a copy of the model: the
padding of every padded convolution switched (zero, reflect, replicate;
:func:`posattack.probes.padding.set_padding_mode`), or the backbone's weights re-drawn
(each module's own ``reset_parameters``: torch's default initialisation; BatchNorm running
statistics back to mean 0, variance 1) from a seed.

Usage::

    feats = layer_features(model, ['backbone.layer1', 'backbone:3'], images, (16, 32))
    feats['backbone:3'].shape          # (N, 128, 16, 32)
    reflect = backbone_variant(model, padding='reflect')
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Optional

import torch
from mmseg.structures import SegDataSample
from torch import nn

from ..channels.layers import capture, resolve_layer, unwrap_model
from ..probes.padding import normalize_padding_mode, set_padding_mode
from .base import PositionReadout

__all__ = ['backbone_variant', 'check_layers', 'layer_features', 'preprocess']


def check_layers(model: nn.Module, layers: Sequence[str]) -> list[str]:
    """The canonical names of ``layers``; an unknown name raises naming the nearest valid ones."""
    if not layers:
        raise ValueError('--layers needs at least one layer name, e.g. backbone:3.')
    return list(dict.fromkeys(resolve_layer(unwrap_model(model), name).name for name in layers))


def preprocess(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Raw images (N, 3, H, W), 0..255 in file order -> the model's normalised inputs."""
    samples = [SegDataSample() for _ in range(len(images))]
    data = model.data_preprocessor(dict(inputs=list(images), data_samples=samples), False)
    height, width = images.shape[-2:]
    return data['inputs'][..., :height, :width]


def layer_features(model: nn.Module, layers: Sequence[str], images: torch.Tensor,
                   feature_size: Sequence[int], batch_size: int = 8) -> dict[str, torch.Tensor]:
    """Per layer, its features on ``images`` resized to ``feature_size``: (N, C, h, w)."""
    model = unwrap_model(model).eval()
    refs = [resolve_layer(model, name) for name in layers]
    in_features = all(ref.module_path.split('.')[0] in ('backbone', 'neck') for ref in refs)
    run = model.extract_feat if in_features else (lambda x: model(x, None, mode='tensor'))
    parts: dict[str, list] = {ref.name: [] for ref in refs}
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            inputs = preprocess(model, images[start:start + batch_size])
            with ExitStack() as stack:
                caps = [stack.enter_context(capture(model, ref)) for ref in refs]
                run(inputs)
            for ref, cap in zip(refs, caps):
                if cap.output is None or cap.output.ndim != 4:
                    raise ValueError(f'layer {ref.name!r} gave no (N, C, H, W) map at inference '
                                     '(not run, or not a feature map); pick a backbone, neck or '
                                     'head layer that runs at test time.')
                parts[ref.name].append(PositionReadout.resize(cap.output, feature_size))
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


def backbone_variant(model: nn.Module, padding: Optional[str] = None, random_init: bool = False,
                     seed: int = 0) -> nn.Module:
    """A copy of ``model`` whose backbone pads with ``padding`` (None: as built) and, with
    ``random_init``, has freshly drawn weights; the original is untouched."""
    variant = copy.deepcopy(unwrap_model(model)).eval()
    backbone = getattr(variant, 'backbone', None)
    if not isinstance(backbone, nn.Module):
        raise ValueError(f'{type(variant).__name__} has no backbone to switch padding or '
                         're-initialise.')
    if padding is not None:
        set_padding_mode(backbone, normalize_padding_mode(padding))
    if random_init:
        torch.manual_seed(int(seed))
        for module in backbone.modules():
            if isinstance(module, nn.modules.batchnorm._NormBase):
                module.reset_running_stats()
            if hasattr(module, 'reset_parameters'):
                module.reset_parameters()
    return variant
