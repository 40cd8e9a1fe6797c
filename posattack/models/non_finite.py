"""Refuse a model whose logits hold NaN or inf, naming the module that made them first.

A checkpoint with NaN in its decode head still "works": argmax of NaN logits is a
constant label, so every attack setting scores the same (mIoU 2.38) and every pair of
shifted crops agrees (Cons.8 = 100), exit 0. :class:`NonFiniteWatch` hooks every module
for one forward pass and records, in the order outputs are produced, the first module
whose output is not finite; the tools run it on their first image and stop there.

    with NonFiniteWatch(model) as watch:
        model.predict(inputs, data_samples)
    watch.raise_if_logits_non_finite('the first test image')
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

__all__ = ['NonFiniteModelError', 'NonFiniteWatch', 'non_finite_parameters']


class NonFiniteModelError(RuntimeError):
    """The model produces NaN or inf logits."""


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.is_floating_point() and not bool(torch.isfinite(value).all())
    if isinstance(value, (list, tuple)):
        return any(_has_non_finite(item) for item in value)
    if isinstance(value, dict):
        return any(_has_non_finite(item) for item in value.values())
    return False


def non_finite_parameters(model: nn.Module) -> list[str]:
    """Names of the parameters and buffers (BN statistics) that hold NaN or inf."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    return [name for name, tensor in tensors if _has_non_finite(tensor)]


class NonFiniteWatch:
    """Forward hooks on every submodule of ``model`` while the ``with`` block runs.

    The verdict is on the logits: an mmseg segmentor hands them to ``postprocess_result``
    (the decode head's own ``forward`` is called directly, so no hook sees its output), so
    the watch shadows that method for the block. A model without it is judged by any
    module output.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.first: Optional[str] = None  # 'decode_head.conv_seg (Conv2d)'
        self.logits_non_finite = False
        self._handles = []
        self._watches_logits = callable(getattr(model, 'postprocess_result', None))
        self._shadowed = None

    def _hook_for(self, name: str):
        def hook(module, inputs, output):
            if self.first is None and _has_non_finite(output):
                self.first = f'{name} ({type(module).__name__})'
        return hook

    def _postprocess_checking(self, original):
        def postprocess_result(seg_logits, *args, **kwargs):
            if _has_non_finite(seg_logits):
                self.logits_non_finite = True
            return original(seg_logits, *args, **kwargs)
        return postprocess_result

    def __enter__(self) -> 'NonFiniteWatch':
        for name, module in self.model.named_modules():
            if name:
                self._handles.append(module.register_forward_hook(self._hook_for(name)))
        if self._watches_logits:
            self._shadowed = vars(self.model).get('postprocess_result')
            self.model.postprocess_result = self._postprocess_checking(
                self.model.postprocess_result)  # an instance attribute shadows the method
        return self

    def __exit__(self, *exc_info) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self._watches_logits:
            if self._shadowed is None:
                del self.model.postprocess_result
            else:
                self.model.postprocess_result = self._shadowed

    @property
    def failed(self) -> bool:
        """Logits not finite; for a model without postprocess_result, any module output."""
        if self._watches_logits:
            return self.logits_non_finite
        return self.first is not None

    def raise_if_logits_non_finite(self, where: str) -> None:
        if not self.failed:
            return
        weights = non_finite_parameters(self.model)
        cause = (f'; its weights hold NaN/inf in {", ".join(weights[:3])}'
                 + (f' and {len(weights) - 3} more' if len(weights) > 3 else '')
                 if weights else '')
        raise NonFiniteModelError(
            f'the model produces NaN/inf logits on {where}, '
            + (f'first in module {self.first}' if self.first else
               'though no module output holds any (an operation between modules)')
            + f'{cause}: every score would be meaningless. Use a checkpoint without NaN '
            '(e.g. an earlier one of the training run), or fix the layer named.')
