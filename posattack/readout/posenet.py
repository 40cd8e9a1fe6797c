"""The read-out of Islam, Jia & Bruce (ICLR 2020), as their ``models/decoder.py`` builds it.

Each layer's features are resized to one working size (1/8 of the image, the authors' 28 for
224), then one 3x3 convolution *without padding* (padding would itself tell the read-out
where the border is) maps all of them to one channel, then BatchNorm, a sigmoid, and a
bilinear upsampling to the image size. The authors concatenate the layers and convolve the
concatenation; here each layer has its own 3x3 convolution and the outputs are summed, which
is the same function (a convolution over stacked channels is the sum of the convolutions over
each part) and initialised the same way (Xavier-uniform over all input channels, zero bias),
but lets the weights be read per layer.

Usage::

    readout = build_readout('posenet', channels=[16, 32], feature_size=(16, 32),
                            output_size=(128, 256))
    maps = readout([f1, f2])        # f_i (N, C_i, 16, 32) -> (N, 1, 128, 256)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .base import PositionReadout, register_readout

__all__ = ['PosENetReadout']

KERNEL_SIZE = 3


@register_readout('posenet')
class PosENetReadout(PositionReadout):
    """Per layer a 3x3 convolution to one channel (no padding), summed, BN, sigmoid, upsampled."""

    def __init__(self, channels: Sequence[int], feature_size: Sequence[int],
                 output_size: Sequence[int]):
        super().__init__(channels, feature_size, output_size)
        if min(self.feature_size) < KERNEL_SIZE:
            raise ValueError(f'read-out working size {self.feature_size} is below the '
                             f'{KERNEL_SIZE}x{KERNEL_SIZE} kernel; use a larger --image-size.')
        self.convs = nn.ModuleList(
            nn.Conv2d(c, 1, KERNEL_SIZE, padding=0, bias=False) for c in self.channels)
        self.bias = nn.Parameter(torch.zeros(1))
        self.norm = nn.BatchNorm2d(1)
        # Xavier-uniform over the concatenation, as the authors' single convolution is
        # initialised, then cut into the per-layer parts
        whole = torch.empty(1, sum(self.channels), KERNEL_SIZE, KERNEL_SIZE)
        nn.init.xavier_uniform_(whole)
        with torch.no_grad():
            for conv, part in zip(self.convs, whole.split(self.channels, dim=1)):
                conv.weight.copy_(part)
        low = (self.feature_size[0] - KERNEL_SIZE + 1, self.feature_size[1] - KERNEL_SIZE + 1)
        self.register_buffer('rows', upsampling_matrix(low[0], self.output_size[0]), False)
        self.register_buffer('cols', upsampling_matrix(low[1], self.output_size[1]), False)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.convs):
            raise ValueError(f'read-out built for {len(self.convs)} layers got {len(features)}.')
        fused = _valid_conv3x3([conv.weight for conv in self.convs], features) + self.bias
        out = torch.sigmoid(self.norm(fused))
        # bilinear upsampling as two matrix products: the same map as F.interpolate, and on
        # CPU its backward is several times faster than interpolate's
        return torch.matmul(torch.matmul(self.rows, out), self.cols.t())


def _valid_conv3x3(weights: Sequence[torch.Tensor],
                   features: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum_i conv2d(features[i], weights[i]) (3x3, one output channel, no padding), computed
    as one 1x1 convolution to the 9 kernel offsets, summed over layers, then the 9 shifted
    maps added: the same sums in another order, about 2.5x faster on CPU forward and
    backward than a convolution with a single output channel."""
    offsets = None
    for weight, feature in zip(weights, features):
        per_offset = weight.permute(2, 3, 0, 1).reshape(KERNEL_SIZE * KERNEL_SIZE, -1, 1, 1)
        part = F.conv2d(feature, per_offset)
        offsets = part if offsets is None else offsets + part
    height = offsets.shape[-2] - KERNEL_SIZE + 1
    width = offsets.shape[-1] - KERNEL_SIZE + 1
    return sum(offsets[:, k:k + 1, k // KERNEL_SIZE:k // KERNEL_SIZE + height,
                       k % KERNEL_SIZE:k % KERNEL_SIZE + width]
               for k in range(KERNEL_SIZE * KERNEL_SIZE))


def upsampling_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """(size_out, size_in): 1-D bilinear interpolation (align_corners=False) as a matrix,
    taken from F.interpolate itself; bilinear 2-D is this along rows, then along columns."""
    eye = torch.eye(size_in)[:, None, :]        # size_in signals of length size_in
    return F.interpolate(eye, size_out, mode='linear', align_corners=False)[:, 0, :].t()
