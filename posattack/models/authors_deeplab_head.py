"""TorchvisionDeepLabHead: torchvision's DeepLabv3 head, layer for layer, as an mmseg decode head.

The paper's authors (Islam et al., ICCV 2021) attacked a DeepLabv3-R50 built from
torchvision's segmentation code (through the DeepLabV3Plus-Pytorch layout). Its head, with
the names its state dict uses (``classifier.classifier.<i>`` in their file)::

    0  ASPP
         convs.0     1x1 conv -> BN -> ReLU                    reads the backbone output
         convs.1..3  3x3 conv, dilation 6/12/18 -> BN -> ReLU  reads the backbone output
         convs.4     global avg pool -> 1x1 conv -> BN -> ReLU -> bilinear back to size
         project     concat (5 x 256 = 1280) -> 1x1 conv -> BN -> ReLU -> Dropout(0.1)
    1  3x3 conv 256 -> 256, no bias
    2  BN
    3  ReLU
    4  1x1 conv 256 -> num_classes, with bias

mmseg's ASPPHead is a different network, not a config away: it concatenates the pooled
branch first, fuses the concat with one 3x3 conv where torchvision uses a 1x1 projection
*and then* a 3x3 conv, and its convolutions are ConvModules. So this head rebuilds
torchvision's tree under these names: ``aspp.convs.*`` and ``aspp.project.*`` as in their
file, ``refine.0``/``refine.1`` for their ``1``/``2``, and ``conv_seg`` (mmseg's classifier,
which ``BaseDecodeHead.cls_seg`` applies) for their ``4``. posattack/models/authors_checkpoint.py
maps one naming onto the other.

The convolutions are plain ``nn.Conv2d`` and the ASPP branches receive the head's input
tensor itself (no copy): posattack's linear shortcut (posattack/attack/linear_shortcut.py) then
recognises the four convolutions that read the attacked tensor and reuses their clean
output across removal settings, as it does for mmseg's own heads. The pooled branch reads a
pooled copy, so it always runs in full.

Activations are fixed ReLUs and the upsampling of the pooled branch is bilinear with
align_corners=False, as torchvision has them; ``act_cfg`` and ``align_corners`` do not change
them (``align_corners`` still governs mmseg's final resize of the logits, False for this model).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from torch import nn

__all__ = ['TorchvisionASPP', 'TorchvisionDeepLabHead']


def _norm(norm_cfg: dict, channels: int) -> nn.Module:
    return build_norm_layer(norm_cfg, channels)[1]


class _ImagePooling(nn.Sequential):
    """ASPP's image-level branch: pool to 1x1, 1x1 conv + BN + ReLU, spread back to size."""

    def __init__(self, in_channels: int, channels: int, norm_cfg: dict):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, channels, 1, bias=False),
                         _norm(norm_cfg, channels), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = super().forward(x)
        # From 1x1, bilinear upsampling is a broadcast; kept as torchvision writes it.
        return F.interpolate(pooled, size=size, mode='bilinear', align_corners=False)


class TorchvisionASPP(nn.Module):
    """torchvision's ASPP: 1x1, atrous 3x3 at ``dilations``, image pooling; concat, 1x1 project."""

    def __init__(self, in_channels: int, channels: int, dilations: Sequence[int],
                 norm_cfg: dict, project_dropout: float):
        super().__init__()
        branches = [nn.Sequential(nn.Conv2d(in_channels, channels, 1, bias=False),
                                  _norm(norm_cfg, channels), nn.ReLU(inplace=True))]
        for dilation in dilations:
            branches.append(nn.Sequential(
                nn.Conv2d(in_channels, channels, 3, padding=dilation, dilation=dilation,
                          bias=False),
                _norm(norm_cfg, channels), nn.ReLU(inplace=True)))
        branches.append(_ImagePooling(in_channels, channels, norm_cfg))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            nn.Conv2d(len(branches) * channels, channels, 1, bias=False),
            _norm(norm_cfg, channels), nn.ReLU(inplace=True), nn.Dropout(project_dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


@MODELS.register_module()
class TorchvisionDeepLabHead(BaseDecodeHead):
    """torchvision's ``DeepLabHead``: ASPP, then 3x3 conv + BN + ReLU, then a 1x1 classifier.

    Args:
        dilations: the three atrous rates (the authors' output stride 16: 6, 12, 18;
            torchvision's default, for output stride 8: 12, 24, 36).
        project_dropout: dropout after the ASPP projection (the authors' code: 0.1;
            torchvision's: 0.5). Inactive at test time.
        **kwargs: BaseDecodeHead's (in_channels, channels, num_classes, in_index, norm_cfg,
            align_corners, ...). ``dropout_ratio`` (dropout right before ``conv_seg``)
            defaults to 0: torchvision's head has none there. ``norm_cfg`` None means BN.

    Usage (in a config)::

        decode_head=dict(type='TorchvisionDeepLabHead', in_channels=2048, in_index=3,
                         channels=256, dilations=(6, 12, 18), num_classes=19,
                         norm_cfg=dict(type='BN', requires_grad=True), align_corners=False)
    """

    def __init__(self, dilations: Sequence[int] = (6, 12, 18), project_dropout: float = 0.1,
                 **kwargs):
        kwargs.setdefault('dropout_ratio', 0.0)
        super().__init__(**kwargs)
        if self.input_transform is not None:
            raise ValueError('TorchvisionDeepLabHead reads one tensor; leave input_transform '
                             f'unset (got {self.input_transform!r}) and pick it with in_index.')
        norm_cfg = self.norm_cfg or dict(type='BN')
        self.dilations = tuple(dilations)
        self.aspp = TorchvisionASPP(self.in_channels, self.channels, self.dilations, norm_cfg,
                                    project_dropout)
        self.refine = nn.Sequential(
            nn.Conv2d(self.channels, self.channels, 3, padding=1, bias=False),
            _norm(norm_cfg, self.channels), nn.ReLU(inplace=True))

    def forward(self, inputs):
        # _transform_inputs returns inputs[in_index] itself, so the ASPP convolutions see
        # the very tensor the attack edits (what the linear shortcut checks by identity).
        x = self._transform_inputs(inputs)
        return self.cls_seg(self.refine(self.aspp(x)))
