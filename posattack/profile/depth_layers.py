"""Which tensors along a segmentor's depth can be attacked, and does the prediction read them?

``backbone:i`` names element i of the tuple the backbone returns. The decode head reads only
the elements in its ``in_index`` (DeepLabv3: 3 of 4), so removing channels from
``backbone:0`` of a DeepLabv3 changes nothing: the stages after it already ran on the
untouched tensor. The same stage output *is* read when named by the module that makes it
(``backbone.layer1``): a removal hook there edits what ``layer2`` receives.

:func:`prediction_reads` settles it by experiment, independent of architecture: zero every
channel of the layer on one image and see whether the logits move. :func:`depth_layers`
lists, in forward order, every backbone stage output (as ``backbone:i`` where the head or
neck reads it, else as the outermost module whose output *is* that tensor), every neck
output the prediction reads, and the tensor the decode head reads.

Usage::

    inputs = first_batch_inputs(model, dataloader)          # one preprocessed image
    depth_layers(model, inputs)
    # ['backbone.layer1', 'backbone.layer2', 'backbone.layer3', 'backbone:3'] on DeepLabv3
    prediction_reads(model, 'backbone:0', inputs)           # False on DeepLabv3
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import nn

from ..channels.layers import default_layer, resolve_layer, unwrap_model
from ..channels.removal import ChannelRemoval


def first_batch_inputs(model: nn.Module, dataloader) -> torch.Tensor:
    """The dataset's first image, preprocessed as mmseg's test loop does: (1, 3, H, W)."""
    batch = dataloader.collate_fn([dataloader.dataset[0]])
    with torch.no_grad():
        return model.data_preprocessor(batch, False)['inputs'][:1]


def _logits(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    return model(inputs, None, mode='tensor')


def prediction_reads(model: nn.Module, layer: str, inputs: torch.Tensor,
                     clean_logits: Optional[torch.Tensor] = None) -> bool:
    """Whether zeroing all channels of ``layer`` changes the logits on ``inputs``.

    False too when the layer never runs at inference (an auxiliary head's input).
    """
    model = unwrap_model(model)
    with torch.no_grad():
        clean = _logits(model, inputs) if clean_logits is None else clean_logits
        with ChannelRemoval(model, layer, lambda count: list(range(count))) as removal:
            removed = _logits(model, inputs)
    return removal.num_calls > 0 and not torch.equal(clean, removed)


class _OutputRecorder:
    """Forward hooks on every module: (module path, output, order of completion)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.outputs: list[tuple] = []
        self._handles = []

    def __enter__(self):
        for path, module in self.model.named_modules():
            if path:
                self._handles.append(module.register_forward_hook(
                    lambda m, i, o, path=path: self.outputs.append((path, o))))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        return False


def _outermost_producer(outputs: Sequence[tuple], tensor: torch.Tensor,
                        exclude: str) -> Optional[str]:
    """The shortest module path whose output is ``tensor`` itself (not a copy)."""
    paths = [path for path, output in outputs if output is tensor and path != exclude]
    return min(paths, key=lambda p: (p.count('.'), p)) if paths else None


def depth_layers(model: nn.Module, inputs: torch.Tensor) -> list[str]:
    """The default layers of a profile, shallowest first; see the module docstring."""
    model = unwrap_model(model)
    with torch.no_grad(), _OutputRecorder(model) as recorder:
        clean = _logits(model, inputs)
    finished: dict[str, int] = {}
    for position, (path, _) in enumerate(recorder.outputs):
        finished.setdefault(path, position)
    candidates: list[tuple] = []  # (completion position, name)
    for top in ('backbone', 'neck'):
        produced = [output for path, output in recorder.outputs if path == top]
        if not produced or not isinstance(produced[-1], (tuple, list)):
            continue
        for index, tensor in enumerate(produced[-1]):
            if not isinstance(tensor, torch.Tensor) or tensor.ndim < 2:
                continue
            name = f'{top}:{index}'
            producer = _outermost_producer(recorder.outputs, tensor, exclude=top)
            position = finished.get(producer, finished[top]) if producer else finished[top]
            if prediction_reads(model, name, inputs, clean):
                candidates.append((position, index, name))
            elif producer is not None and prediction_reads(model, producer, inputs, clean):
                candidates.append((position, index, producer))
    head_input = default_layer(model)
    names = [name for _, _, name in sorted(candidates)]
    if head_input not in names:
        names.append(head_input)
    return list(dict.fromkeys(names))


def check_layers_read(model: nn.Module, layers: Sequence[str], inputs: torch.Tensor,
                      candidates: Sequence[str]) -> None:
    """Refuse, in one line, a layer name that does not exist or that the prediction ignores."""
    model = unwrap_model(model)
    with torch.no_grad():
        clean = _logits(model, inputs)
    for layer in layers:
        resolve_layer(model, layer)  # an unknown name raises, naming the nearest valid ones
        if not prediction_reads(model, layer, inputs, clean):
            raise ValueError(
                f'layer {layer!r} is not read by the prediction (zeroing all its channels '
                f'leaves the logits unchanged), so removing its channels measures nothing: '
                f'pick layers the prediction reads, e.g. {" ".join(candidates)}.')
