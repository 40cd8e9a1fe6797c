"""AntialiasedResNetV1c: mmseg's ResNetV1c with BlurPool before every subsampling, as in
Zhang, "Making Convolutional Networks Shift-Invariant Again" (ICML 2019).

The paper's Table 2 sets AugShift against this standard defence. Zhang's recipe (the
``antialiased_cnns`` package's models/resnet.py, ``pool_only=True``): evaluate densely, blur,
then subsample.

- max-pool (stride 2) -> max-pool (stride 1) + BlurPool (stride 2);
- a strided convolution -> the same convolution at stride 1, its norm and ReLU, then
  BlurPool (stride 2): BasicBlock's conv1, Bottleneck's strided conv (conv2 in the
  'pytorch' style, conv1 in 'caffe');
- a strided 1x1 projection shortcut -> BlurPool (stride 2) + the 1x1 convolution at stride 1;
- the stem's first strided convolution is left as it is by default (Zhang's ``pool_only``:
  at full resolution it is the costliest to blur); ``antialias_stem=True`` blurs it too
  (Zhang's ``pool_only=False``), the only way a one-pixel shift of a detailed image can be
  met: the stem's stride 2 alone turns it into a half-pixel shift that later blurs cannot
  undo.

One deliberate difference: Zhang's ResNets also change the max-pool kernel from 3 (padding
1) to 2 (no padding). Here the max keeps ResNetV1c's 3x3 window, so that the subsampling is
the only change and a filter of size 1 (no blur) is ResNetV1c itself, output for output.

Weights: no parameter is added or renamed (the blur filters are fixed, non-persistent
buffers; a blur inside a shortcut or the stem is an entry named ``blur`` beside the numbered
ones, which keep their names, though not their positions: index them by name), so a ResNetV1c
checkpoint loads strictly, and so does this backbone's own into a plain ResNetV1c.

BlurPool comes from Zhang's own ``antialiased-cnns`` package (pinned in requirements.txt),
not kornia's ``BlurPool2D``: it is the reference implementation behind the paper's numbers,
it pads by reflection (kornia's always zero-pads, and zero padding is itself a source of
the absolute position this toolkit measures), and its even-sized filters (the default 4)
give the strided layer's output size on odd sizes too (kornia's pad (k - 1) // 2 on both
sides loses a row there). Its licence is CC BY-NC-SA 4.0 (posattack's is MIT), so it is
imported only when this backbone is built, and setup.py lists it as the ``antialiased``
extra, not as a requirement of the package.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import torch.nn as nn
import torch.utils.checkpoint as cp
from mmseg.models.backbones import ResNetV1c
from mmseg.models.backbones.resnet import BasicBlock, Bottleneck
from mmseg.registry import MODELS

__all__ = ['AntialiasedResNetV1c', 'SUPPORTED_FILTER_SIZES', 'blur_pool']

# antialiased_cnns.BlurPool's binomial filters: [1], [1, 1], [1, 2, 1], ... [1, 6, 15, 20, 15, 6, 1]
SUPPORTED_FILTER_SIZES = (1, 2, 3, 4, 5, 6, 7)
PAD_TYPES = ('reflect', 'replicate', 'zero')


def check_blur_options(filter_size, pad_type: str = 'reflect') -> None:
    """One-line ValueErrors for what antialiased_cnns.BlurPool would otherwise fail on
    obscurely (an undefined filter for other sizes, a print for other paddings)."""
    if isinstance(filter_size, bool) or filter_size not in SUPPORTED_FILTER_SIZES:
        raise ValueError(f'filter_size={filter_size!r} is not supported; choose one of '
                         f'{", ".join(map(str, SUPPORTED_FILTER_SIZES))} (1: no blur)')
    if pad_type not in PAD_TYPES:
        raise ValueError(f'pad_type={pad_type!r} is not supported; choose one of '
                         f'{", ".join(PAD_TYPES)}')


def blur_pool(channels: int, filter_size: int, stride: int = 2,
              pad_type: str = 'reflect') -> nn.Module:
    """antialiased_cnns.BlurPool whose filter is not saved in checkpoints: it is fixed, and
    leaving it out keeps the state dict ResNetV1c's."""
    check_blur_options(filter_size, pad_type)
    try:
        from antialiased_cnns import BlurPool
    except ImportError as error:  # an optional dependency (its licence: see the docstring)
        raise ImportError('AntialiasedResNetV1c needs the antialiased-cnns package: '
                          'pip install antialiased-cnns==0.3 (or posattack[antialiased])'
                          ) from error
    layer = BlurPool(channels, pad_type=pad_type, filt_size=filter_size, stride=stride)
    layer.register_buffer('filt', layer.filt, persistent=False)
    return layer


def _to_stride_one(conv: nn.Conv2d) -> int:
    """Set a convolution's stride to 1; return the stride it had (square strides only)."""
    stride = conv.stride[0]
    if conv.stride != (stride, stride):
        raise ValueError(f'AntialiasedResNetV1c: unequal strides {conv.stride} are not supported')
    conv.stride = (1, 1)
    return stride


def _antialias_downsample(downsample: Optional[nn.Sequential], filter_size: int,
                          pad_type: str) -> Optional[nn.Sequential]:
    """ResLayer's projection shortcut (conv 1x1 stride s, norm) -> (blur stride s, conv 1x1,
    norm), keeping the entries' names ``0`` and ``1`` so that its weights keep theirs."""
    if downsample is None:
        return None
    conv = downsample[0]
    if not isinstance(conv, nn.Conv2d) or conv.stride == (1, 1):
        return downsample  # not strided (or avg_down's AvgPool, itself a box blur)
    stride = _to_stride_one(conv)
    blur = blur_pool(conv.in_channels, filter_size, stride, pad_type)
    return nn.Sequential(OrderedDict([('blur', blur)] + list(downsample.named_children())))


class AntialiasedBasicBlock(BasicBlock):
    """BasicBlock whose strided conv1 runs at stride 1, followed (after its norm and ReLU)
    by BlurPool at the block's stride."""

    def __init__(self, *args, filter_size: int = 4, pad_type: str = 'reflect', **kwargs):
        super().__init__(*args, **kwargs)
        self.blur = None
        if self.stride != 1:
            stride = _to_stride_one(self.conv1)
            self.blur = blur_pool(self.conv1.out_channels, filter_size, stride, pad_type)
        self.downsample = _antialias_downsample(self.downsample, filter_size, pad_type)

    def forward(self, x):
        def _inner_forward(x):  # BasicBlock's, with the blur after the first ReLU
            identity = x
            out = self.relu(self.norm1(self.conv1(x)))
            if self.blur is not None:
                out = self.blur(out)
            out = self.norm2(self.conv2(out))
            if self.downsample is not None:
                identity = self.downsample(x)
            out += identity
            return out

        out = (cp.checkpoint(_inner_forward, x, use_reentrant=False)
               if self.with_cp and x.requires_grad else _inner_forward(x))
        return self.relu(out)


class AntialiasedBottleneck(Bottleneck):
    """Bottleneck whose strided conv (conv2 in the 'pytorch' style, conv1 in 'caffe') runs
    at stride 1, followed (after its norm and ReLU) by BlurPool at the block's stride."""

    def __init__(self, *args, filter_size: int = 4, pad_type: str = 'reflect', **kwargs):
        super().__init__(*args, **kwargs)
        if self.with_plugins:
            raise ValueError('AntialiasedResNetV1c does not support block plugins')
        self.blur = None
        self.blur_after = None
        if self.stride != 1:
            self.blur_after = 'conv1' if self.style == 'caffe' else 'conv2'
            conv = getattr(self, self.blur_after)
            stride = _to_stride_one(conv)
            self.blur = blur_pool(conv.out_channels, filter_size, stride, pad_type)
        self.downsample = _antialias_downsample(self.downsample, filter_size, pad_type)

    def forward(self, x):
        def _inner_forward(x):  # Bottleneck's, with the blur after the strided conv's ReLU
            identity = x
            out = self.relu(self.norm1(self.conv1(x)))
            if self.blur_after == 'conv1':
                out = self.blur(out)
            out = self.relu(self.norm2(self.conv2(out)))
            if self.blur_after == 'conv2':
                out = self.blur(out)
            out = self.norm3(self.conv3(out))
            if self.downsample is not None:
                identity = self.downsample(x)
            out += identity
            return out

        out = (cp.checkpoint(_inner_forward, x, use_reentrant=False)
               if self.with_cp and x.requires_grad else _inner_forward(x))
        return self.relu(out)


@MODELS.register_module()
class AntialiasedResNetV1c(ResNetV1c):
    """ResNetV1c with BlurPool before each subsampling (Zhang, ICML 2019; module docstring).

    Args:
        filter_size: side of the binomial blur filter, one of 1..7 (Zhang's default 4;
            1 is no blur: ResNetV1c itself).
        pad_type: how the blur pads: 'reflect' (Zhang's default), 'replicate' or 'zero'.
        antialias_stem: also blur the stem's first (strided) convolution (Zhang's
            ``pool_only=False``); off by default, as in Zhang's models.
        **kwargs: ResNetV1c's arguments.
    """

    arch_settings = {
        18: (AntialiasedBasicBlock, (2, 2, 2, 2)),
        34: (AntialiasedBasicBlock, (3, 4, 6, 3)),
        50: (AntialiasedBottleneck, (3, 4, 6, 3)),
        101: (AntialiasedBottleneck, (3, 4, 23, 3)),
        152: (AntialiasedBottleneck, (3, 8, 36, 3)),
    }

    def __init__(self, filter_size: int = 4, pad_type: str = 'reflect',
                 antialias_stem: bool = False, **kwargs):
        check_blur_options(filter_size, pad_type)  # before the network is built
        # read by make_res_layer, which ResNet.__init__ calls: set before it
        self.filter_size = filter_size
        self.pad_type = pad_type
        self._default_init = kwargs.get('pretrained') is None and kwargs.get('init_cfg') is None
        super().__init__(**kwargs)
        pool = self.maxpool  # the stem's: MaxPool2d(3, stride=2, padding=1), stem_channels
        self.maxpool = nn.Sequential(
            nn.MaxPool2d(pool.kernel_size, stride=1, padding=pool.padding),
            blur_pool(self.stem_channels, filter_size, pool.stride, pad_type))
        self.antialias_stem = antialias_stem
        if antialias_stem:  # the deep stem: (conv stride 2, norm, ReLU), 2 x (conv, norm, ReLU)
            conv = self.stem[0]
            stride = _to_stride_one(conv)
            children = list(self.stem.named_children())
            blur = blur_pool(conv.out_channels, filter_size, stride, pad_type)
            self.stem = nn.Sequential(OrderedDict(children[:3] + [('blur', blur)]
                                                  + children[3:]))

    def make_res_layer(self, **kwargs):
        # ResNet zero-initialises each block's last norm (zero_init_residual) only when the
        # block class *is* BasicBlock or Bottleneck; these subclasses get the same here, so
        # that a training seed gives this backbone ResNetV1c's initial weights.
        if kwargs.get('init_cfg') is None and self.zero_init_residual and self._default_init:
            last_norm = 'norm2' if issubclass(kwargs['block'], BasicBlock) else 'norm3'
            kwargs['init_cfg'] = dict(type='Constant', val=0, override=dict(name=last_norm))
        return super().make_res_layer(filter_size=self.filter_size, pad_type=self.pad_type,
                                      **kwargs)
