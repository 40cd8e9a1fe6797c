"""Reuse the clean output of convolutions that read the attacked tensor directly.

A convolution is linear in its input, so when only the channels S of its input x change
(x' = x + d, d zero outside S):

    conv(x') = conv(x) + conv_without_bias(d[:, S]) with the weights of S only.

The first term is the same for every setting of a batch; the second costs |S|/C of the
full convolution. In DeepLabv3's ASPP head, the convolutions that read the backbone output
are most of the head's cost, so this is where a sweep over many settings spends its time.

The answer is the same maths in another order, so logits agree to float rounding, not bit
for bit; ``FeatureSplit(exact=True)`` turns the shortcut off.
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


def _linear_in_input(conv: nn.Conv2d) -> bool:
    return type(conv) is nn.Conv2d and conv.groups == 1 and conv.padding_mode == 'zeros' \
        and isinstance(conv.padding, tuple)


class LinearShortcut:
    """Per batch, cache ``conv(clean)`` for every conv fed the attacked tensor itself."""

    def __init__(self, modules: Sequence[nn.Module]):
        self.convs: list[nn.Conv2d] = [
            m for root in modules if root is not None
            for m in root.modules() if isinstance(m, nn.Conv2d) and _linear_in_input(m)]
        self._clean = None
        self._cache: dict[nn.Conv2d, torch.Tensor] = {}

    def _clean_output(self, conv: nn.Conv2d, clean: torch.Tensor) -> torch.Tensor:
        if self._clean is not clean:  # a new batch
            self._clean, self._cache = clean, {}
        if conv not in self._cache:
            self._cache[conv] = conv._conv_forward(clean, conv.weight, conv.bias)
        return self._cache[conv]

    @contextmanager
    def applied(self, edited: torch.Tensor, clean: torch.Tensor, channels: Sequence[int]):
        """While active, convs whose input *is* ``edited`` answer from the clean cache."""
        index = self.channel_index(channels, clean.device)

        def shortcut_forward(conv: nn.Conv2d, original):
            def forward(x):
                if x is not edited:
                    return original(x)
                return self.output_for(conv, edited, clean, index)
            return forward

        for conv in self.convs:
            conv.forward = shortcut_forward(conv, conv.forward)
        try:
            yield
        finally:
            for conv in self.convs:
                del conv.forward

    def output_for(self, conv: nn.Conv2d, edited: torch.Tensor, clean: torch.Tensor,
                   index: torch.Tensor) -> torch.Tensor:
        """``conv(edited)`` as the clean output plus the contribution of the channels in
        ``index`` (sorted ids, a long tensor), the only ones where ``edited`` differs."""
        out = self._clean_output(conv, clean)
        if index.numel() == 0:
            return out
        delta = (edited.index_select(1, index) - clean.index_select(1, index))
        weight = conv.weight.index_select(1, index)
        return out + F.conv2d(delta, weight, None, conv.stride, conv.padding, conv.dilation)

    @staticmethod
    def channel_index(channels: Sequence[int], device) -> torch.Tensor:
        return torch.as_tensor(sorted(set(int(c) for c in channels)), dtype=torch.long,
                               device=device)

    def release(self) -> None:
        """Drop the cached batch (memory stays flat between batches anyway)."""
        self._clean, self._cache = None, {}
