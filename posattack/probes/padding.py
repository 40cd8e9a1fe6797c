"""Switch how every padded convolution of a network fills its border: zero, reflect, replicate.

Islam et al. (ICCV 2021, Table 1) compare zero, reflect and replicate padding: zero padding
is the classic source of absolute position in CNNs, yet GAPNet finds position with all three.
This module changes a built network in place, so any MMSeg backbone can be probed with any of
the three:

* plain ``nn.Conv2d`` (and mmcv's wrappers, which subclass it; mmseg's ResNet builds these):
  its ``padding_mode`` is set (torch's names: ``'zeros'``, ``'reflect'``, ``'replicate'``);
* mmcv ``ConvModule`` built with an explicit padding layer (``padding_mode='reflect'`` in its
  config): the padding layer is swapped for the requested one;
* convolutions that pad by themselves in ways this cannot reach (mmcv's
  ``Conv2dAdaptivePadding``, deformable convolutions): a non-zero mode raises, naming them.

Usage::

    backbone = MODELS.build(dict(type='ResNetV1c', depth=18, base_channels=16, stem_channels=16))
    set_padding_mode(backbone, 'reflect')       # returns how many convolutions now reflect
    padding_modes(backbone)                     # {'reflect': 20}
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from torch import nn

__all__ = ['PADDING_MODES', 'normalize_padding_mode', 'padding_modes', 'set_padding_mode']

# Our names (the paper's, and mmcv's padding-layer names) -> torch's ``padding_mode``.
PADDING_MODES = {'zero': 'zeros', 'reflect': 'reflect', 'replicate': 'replicate'}
_TORCH_TO_OURS = {torch_name: ours for ours, torch_name in PADDING_MODES.items()}
_PAD_LAYERS = {
    'zero': nn.ZeroPad2d, 'reflect': nn.ReflectionPad2d, 'replicate': nn.ReplicationPad2d
}
_PAD_LAYER_NAMES = {layer: name for name, layer in _PAD_LAYERS.items()}


def normalize_padding_mode(mode: str) -> str:
    """``'zero'``/``'zeros'``/``'reflect'``/``'replicate'`` -> our name; anything else raises."""
    if isinstance(mode, str):
        name = mode.strip().lower()
        if name in PADDING_MODES:
            return name
        if name in _TORCH_TO_OURS:
            return _TORCH_TO_OURS[name]
    raise ValueError(f'Unknown padding mode {mode!r}; choose one of '
                     f'{", ".join(map(repr, PADDING_MODES))}.')


def _pads(conv: nn.modules.conv._ConvNd) -> bool:
    """Whether a convolution adds border values (non-zero padding, or 'same' with a kernel > 1)."""
    if isinstance(conv.padding, str):
        return conv.padding == 'same' and any(k > 1 for k in conv.kernel_size)
    return any(p > 0 for p in conv.padding)


def _is_adaptive_padding(module: nn.Module) -> bool:
    # mmcv's Conv2dAdaptivePadding pads with zeros inside forward, outside padding_mode's reach.
    return type(module).__name__ == 'Conv2dAdaptivePadding'


def _explicit_padding_layer(module: nn.Module) -> Any:
    """The padding layer of an mmcv ConvModule built with a non-native padding mode, else None."""
    if getattr(module, 'with_explicit_padding', False):
        return getattr(module, 'padding_layer', None)
    return None


def _other_padded_module(module: nn.Module) -> bool:
    """A module with a weight and positive padding that is not a torch convolution (e.g. DCN)."""
    if isinstance(module, nn.modules.conv._ConvNd) or not isinstance(
            getattr(module, 'weight', None), nn.Parameter):
        return False
    padding = getattr(module, 'padding', None)
    values = padding if isinstance(padding, (tuple, list)) else (padding, )
    return any(isinstance(p, int) and p > 0 for p in values)


def set_padding_mode(module: nn.Module, mode: str) -> int:
    """Make every padded convolution inside ``module`` pad with ``mode``; returns how many.

    ``mode`` is ``'zero'``, ``'reflect'`` or ``'replicate'``. Un-padded convolutions (1x1,
    downsampling shortcuts) and transposed convolutions (their padding crops, it adds nothing)
    are left alone. Reflect padding needs each padded feature map to be larger than the
    padding, so very small inputs fail at forward time with torch's message.

    Usage::

        set_padding_mode(model.backbone, 'replicate')
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f'set_padding_mode expects an nn.Module, got {type(module).__name__}.')
    mode = normalize_padding_mode(mode)
    unreachable = []
    changed = 0
    explicit_convs = set()
    for path, child in module.named_modules():
        layer = _explicit_padding_layer(child)
        if layer is not None:
            child.padding_layer = _PAD_LAYERS[mode](layer.padding)
            explicit_convs.add(id(getattr(child, 'conv', None)))
            changed += 1
        elif _is_adaptive_padding(child) or _other_padded_module(child):
            unreachable.append(f'{path or "<root>"} ({type(child).__name__})')
    if mode != 'zero' and unreachable:
        raise ValueError(
            f'Cannot switch to {mode!r} padding: {len(unreachable)} module(s) pad on their own and '
            f'ignore padding_mode: {", ".join(unreachable[:5])}. Use zero padding for this '
            f'backbone, or one built from plain convolutions (e.g. ResNetV1c).')
    for child in module.modules():
        if (isinstance(child, nn.modules.conv._ConvNd) and not child.transposed
                and id(child) not in explicit_convs and not _is_adaptive_padding(child)
                and _pads(child)):
            child.padding_mode = PADDING_MODES[mode]
            changed += 1
    return changed


def padding_modes(module: nn.Module) -> dict[str, int]:
    """How many padded convolutions of ``module`` use each mode, e.g. ``{'zero': 20}``.

    Usage::

        assert set(padding_modes(backbone)) == {'reflect'}
    """
    counts: Counter = Counter()
    explicit_convs = set()
    for child in module.modules():
        layer = _explicit_padding_layer(child)
        if layer is not None:
            counts[_PAD_LAYER_NAMES.get(type(layer), type(layer).__name__)] += 1
            explicit_convs.add(id(getattr(child, 'conv', None)))
    for child in module.modules():
        if (isinstance(child, nn.modules.conv._ConvNd) and not child.transposed
                and id(child) not in explicit_convs and _pads(child)):
            counts[_TORCH_TO_OURS.get(child.padding_mode, child.padding_mode)] += 1
    return dict(counts)
