"""Name a tensor inside a model: ``'backbone:3'``, ``'neck:-1'``, ``'backbone.layer4'``.

A layer name is a module path (``named_modules`` spelling) optionally followed by ``:<index>``
when that module returns a tuple or list, as mmseg backbones and necks do. The index is only
checkable at forward time, so hooks go through :func:`select_output` / :func:`replace_output`,
which raise an error naming the tuple length.

Usage::

    ref = resolve_layer(model, default_layer(model))          # e.g. 'backbone:3'
    with capture(model, ref, stop=True) as cap:
        model.extract_feat(inputs)                             # stops right after the layer
    features = cap.output
"""
from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from torch import nn

__all__ = [
    'LayerRef', 'StopForward', 'capture', 'default_layer', 'list_layer_names',
    'parse_layer_name', 'replace_output', 'resolve_layer', 'select_output', 'unwrap_model',
]


@dataclass(frozen=True)
class LayerRef:
    """A resolved layer name: the module to hook and which element of its output to take.

    ``name`` is the canonical spelling (``module_path`` or ``module_path:index``); ``index`` is
    ``None`` when the module's output itself is the tensor.
    """
    name: str
    module_path: str
    module: nn.Module
    index: Optional[int] = None

    def __str__(self) -> str:
        return self.name


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside a DDP/MMEngine wrapper, so names read the same in every setting."""
    try:
        from mmengine.model import is_model_wrapper
    except ImportError:  # pragma: no cover - mmengine is a hard dependency of the package
        return model
    while is_model_wrapper(model):
        model = model.module
    return model


def parse_layer_name(name: str) -> tuple[str, Optional[int]]:
    """Split ``'backbone:3'`` into ``('backbone', 3)``; ``'neck'`` into ``('neck', None)``."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(
            f'Layer name must be a non-empty string such as "backbone:3", got {name!r}.')
    name = name.strip()
    if ':' not in name:
        return name, None
    path, _, index_text = name.rpartition(':')
    try:
        index = int(index_text)
    except ValueError:
        raise ValueError(
            f'Layer name {name!r}: the part after ":" must be an integer index into the '
            f'module\'s output tuple (e.g. "backbone:3" or "backbone:-1"), got {index_text!r}.'
        ) from None
    if not path:
        raise ValueError(f'Layer name {name!r} has an index but no module path; '
                         f'write e.g. "backbone:{index}".')
    return path, index


def num_outputs_hint(model: nn.Module, module_path: str) -> Optional[int]:
    """How many tensors a backbone/neck returns, when its config says so (else None)."""
    module = getattr(model, module_path, None)
    if module is None:
        return None
    out_indices = getattr(module, 'out_indices', None)
    if isinstance(out_indices, (list, tuple)):
        return len(out_indices)
    if isinstance(out_indices, int):
        return 1
    num_outs = getattr(module, 'num_outs', None)  # FPN-style necks
    if isinstance(num_outs, int):
        return num_outs
    return None


def list_layer_names(model: nn.Module) -> list[str]:
    """Every module path of ``model``, plus the ``backbone:i`` / ``neck:i`` forms for their outputs.

    Usage::

        names = list_layer_names(model)   # ['backbone:0', ..., 'backbone', 'backbone.conv1', ...]
        assert 'backbone.layer4' in names
    """
    model = unwrap_model(model)
    names: list[str] = []
    for top in ('backbone', 'neck'):
        if isinstance(getattr(model, top, None), nn.Module):
            count = num_outputs_hint(model, top)
            if count is not None:
                names.extend(f'{top}:{i}' for i in range(count))
                names.append(f'{top}:-1')
    names.extend(path for path, _ in model.named_modules() if path)
    return names


def resolve_layer(model: nn.Module, name: Union[str, LayerRef]) -> LayerRef:
    """Find the module a layer name points to.

    Unknown names raise a ``ValueError`` listing the closest valid names.

    Usage::

        ref = resolve_layer(model, 'backbone:3')
        ref.module_path, ref.index      # ('backbone', 3)
    """
    if isinstance(name, LayerRef):
        return name
    model = unwrap_model(model)
    module_path, index = parse_layer_name(name)
    modules = dict(model.named_modules())
    module = modules.get(module_path) if module_path else None
    if module is None:
        valid = list_layer_names(model)
        close = difflib.get_close_matches(name.strip(), valid, n=5, cutoff=0.5)
        if not close:
            close = difflib.get_close_matches(module_path, valid, n=5, cutoff=0.3)
        hint = (f' Nearest valid names: {", ".join(close)}.' if close else '')
        raise ValueError(
            f'Unknown layer {name!r}: {type(model).__name__} has no module {module_path!r}.{hint} '
            f'Use posattack.channels.layers.list_layer_names(model) to see all {len(valid)} valid '
            'names.'
        )
    canonical = module_path if index is None else f'{module_path}:{index}'
    return LayerRef(name=canonical, module_path=module_path, module=module, index=index)


def _normalize_index(index: int, count: Optional[int]) -> int:
    if count is not None and index < 0:
        return index + count
    return index


def default_layer(model: nn.Module) -> str:
    """The tensor the decode head consumes: ``'backbone:<in_index>'`` or ``'neck:<in_index>'``.

    When ``in_index`` is a list (multi-input heads: HRNet, SegFormer) the deepest one it
    consumes is chosen, i.e. the largest index after normalising negative ones.

    Usage::

        default_layer(model)   # 'backbone:3' for mmseg's DeepLabv3-R50
    """
    model = unwrap_model(model)
    has_neck = isinstance(getattr(model, 'neck', None), nn.Module)
    top = 'neck' if has_neck else 'backbone'
    if not isinstance(getattr(model, top, None), nn.Module):
        raise ValueError(
            f'Cannot pick a default layer: {type(model).__name__} has no "backbone" module. '
            f'Name the layer explicitly (one of list_layer_names(model)), e.g. layer="layer4".')
    head = getattr(model, 'decode_head', None)
    if isinstance(head, nn.ModuleList):  # CascadeEncoderDecoder: the first head reads the features
        head = head[0] if len(head) else None
    in_index = getattr(head, 'in_index', None) if head is not None else None
    if in_index is None:
        raise ValueError(
            f'Cannot pick a default layer: {type(model).__name__} has no decode_head.in_index. '
            f'Name the layer explicitly, e.g. layer="{top}:-1".')
    count = num_outputs_hint(model, top)
    if isinstance(in_index, (list, tuple)):
        if not in_index:
            raise ValueError('decode_head.in_index is an empty list; name the layer explicitly.')
        indices = [_normalize_index(int(i), count) for i in in_index]
        if count is None and any(i < 0 for i in indices) and any(i >= 0 for i in indices):
            raise ValueError(
                f'Cannot tell which of decode_head.in_index={list(in_index)} is deepest without '
                f'knowing how many tensors {top} returns; name the layer explicitly.')
        index = max(indices)
    else:
        index = _normalize_index(int(in_index), count)
    return f'{top}:{index}'


def _describe(output: Any) -> str:
    if isinstance(output, torch.Tensor):
        return f'a tensor of shape {tuple(output.shape)}'
    if isinstance(output, (tuple, list)):
        return f'a {type(output).__name__} of {len(output)} elements'
    return f'a {type(output).__name__}'


def select_output(output: Any, ref: LayerRef) -> torch.Tensor:
    """The tensor ``ref`` names inside a module's raw ``output`` (used by forward hooks)."""
    if ref.index is None:
        if isinstance(output, torch.Tensor):
            return output
        if isinstance(output, (tuple, list)):
            raise ValueError(
                f'Layer {ref.name!r} returns {_describe(output)}; add an index to pick one, '
                f'e.g. "{ref.module_path}:-1" (valid: 0..{len(output) - 1} or negative).')
        raise ValueError(f'Layer {ref.name!r} returns {_describe(output)}, not a tensor.')
    if isinstance(output, torch.Tensor):
        raise ValueError(
            f'Layer {ref.name!r}: module {ref.module_path!r} returns a single tensor of shape '
            f'{tuple(output.shape)}, not a tuple; drop the index and write "{ref.module_path}".')
    if not isinstance(output, (tuple, list)):
        raise ValueError(
            f'Layer {ref.name!r}: module returns {_describe(output)}, which cannot be indexed.')
    if not -len(output) <= ref.index < len(output):
        raise IndexError(
            f'Layer {ref.name!r}: index {ref.index} is out of range; {ref.module_path!r} returns '
            f'{len(output)} tensors, so valid indices are 0..{len(output) - 1} '
            f'(or -{len(output)}..-1).')
    selected = output[ref.index]
    if not isinstance(selected, torch.Tensor):
        raise ValueError(
            f'Layer {ref.name!r}: element {ref.index} is {_describe(selected)}, not a tensor.')
    return selected


def replace_output(output: Any, ref: LayerRef, tensor: torch.Tensor) -> Any:
    """``output`` with the element ``ref`` names replaced by ``tensor`` (same container type)."""
    select_output(output, ref)  # same checks, same messages
    if ref.index is None:
        return tensor
    items = list(output)
    items[ref.index] = tensor
    return items if isinstance(output, list) else tuple(items)


class StopForward(Exception):
    """Raised by a stopping :func:`capture` hook to skip the rest of the forward pass."""


class capture:  # noqa: N801 - used like a function: ``with capture(model, 'backbone:3') as cap``
    """Record the tensor a layer name selects during a forward pass.

    With ``stop=True`` the forward pass ends right after the layer (a :class:`StopForward`
    raised in the hook and swallowed on leaving the ``with``), so nothing after it is computed.
    The hook never outlives the ``with``. If the module runs several times, the last call wins.

    Usage::

        with capture(model, 'backbone:3', stop=True) as cap:
            model.extract_feat(inputs)
        features = cap.output      # torch.Tensor, or None if the layer never ran
    """

    def __init__(self, model: nn.Module, layer: Union[str, LayerRef], stop: bool = False,
                 detach: bool = True):
        self.ref = resolve_layer(model, layer)
        self.stop = stop
        self.detach = detach
        self.output: Optional[torch.Tensor] = None
        self.calls = 0
        self._handle = None

    def _hook(self, module: nn.Module, inputs: Sequence[Any], output: Any) -> None:
        tensor = select_output(output, self.ref)
        self.output = tensor.detach() if self.detach else tensor
        self.calls += 1
        if self.stop:
            raise StopForward(self.ref.name)

    def __enter__(self) -> 'capture':
        self._handle = self.ref.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close()
        return exc_type is not None and issubclass(exc_type, StopForward)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
