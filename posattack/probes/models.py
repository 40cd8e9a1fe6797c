"""GAPNet and PermuteNet (Islam et al., ICCV 2021, Table 1) on any MMSeg backbone.

Both read a backbone's feature map only through global average pooling, so whatever they know
about *where* a patch lies must be carried by *which channel* is active:

* ``GAPNet``: backbone -> convolution with one output channel per class -> global average
  pooling -> logits; no fully connected layer. With the default 1x1 kernel this is a linear
  read-out of the pooled channels, so position must be encoded channel-wise to be read at all.
* ``PermuteNet``: backbone -> global average pooling -> a fresh random permutation of the
  channel order (drawn at every forward, in training and in test: independently per image by
  default, or one for the whole batch as in the authors' code) -> linear layer. Channel
  identity is destroyed, so position is lost while semantic content, which survives as the
  distribution of channel values, is not.

Both are MMEngine ``BaseModel``\\ s registered in mmseg's MODELS: the Runner trains them with
``forward(inputs, data_samples, mode)`` returning losses ('loss'), per-image predictions
('predict', read by :class:`posattack.probes.accuracy.ProbeAccuracy`) or logits ('tensor').

Usage::

    model = MODELS.build(dict(type='GAPNet', num_classes=9, padding='reflect', backbone=dict(
        type='ResNetV1c', depth=18, base_channels=16, stem_channels=16)))
    logits = model(torch.zeros(2, 3, 48, 48))          # (2, 9)
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmseg.registry import MODELS
from torch import nn

from .padding import normalize_padding_mode, set_padding_mode

__all__ = ['GAPNet', 'PERMUTATION_KINDS', 'PermuteNet', 'PooledProbe', 'shuffle_channels']

# Small enough to be cheap, large enough for stride-32 backbones to keep a 2x2 map.
_CHANNEL_PROBE_SIZE = (64, 64)
# 'image': an independent permutation per image; 'batch': one per forward (the authors' code).
PERMUTATION_KINDS = ('image', 'batch')


def shuffle_channels(pooled: torch.Tensor,
                     generator: Optional[torch.Generator] = None,
                     per: str = 'image') -> torch.Tensor:
    """The C values of every row of ``pooled`` (B, C) in a random order.

    ``per='image'`` draws an independent order for every row; ``per='batch'`` draws one order
    and applies it to every row, as the authors' PermuteNet does (one ``torch.randperm`` per
    forward). Either way each row, taken alone, gets a uniformly random permutation.

    Usage::

        shuffled = shuffle_channels(torch.arange(6.).view(2, 3))  # rows: permutations of themselves
        same_order = shuffle_channels(torch.arange(6.).view(2, 3), per='batch')
    """
    if pooled.dim() != 2:
        raise ValueError(
            f'shuffle_channels expects pooled activations (B, C), got {tuple(pooled.shape)}.')
    if per not in PERMUTATION_KINDS:
        raise ValueError(f'Unknown permutation kind {per!r}; choose one of '
                         f'{", ".join(map(repr, PERMUTATION_KINDS))}.')
    shape = pooled.shape if per == 'image' else (1, pooled.shape[1])
    if generator is None:
        keys = torch.rand(shape, device=pooled.device)
    else:
        keys = torch.rand(shape, generator=generator,
                          device=generator.device).to(pooled.device)
    return pooled.gather(1, keys.argsort(dim=1).expand(pooled.shape))


def _labels_tensor(data_samples: Any, device: torch.device) -> torch.Tensor:
    """Class ids from a collated batch: a LongTensor (default_collate) or a list of ints."""
    if data_samples is None:
        raise ValueError("mode='loss' needs data_samples: the class id of every input.")
    if isinstance(data_samples, torch.Tensor):
        return data_samples.to(device=device, dtype=torch.long).view(-1)
    return torch.as_tensor([int(s) for s in data_samples], dtype=torch.long, device=device)


class PooledProbe(BaseModel):
    """What GAPNet and PermuteNet share: a backbone, its padding mode, a pooled read-out.

    ``backbone`` is an MMSeg backbone config (or a built module); ``feature_index`` picks the
    output of a backbone that returns several (default: the last, deepest one). ``padding`` is
    applied to every padded convolution of the backbone (see
    :func:`posattack.probes.padding.set_padding_mode`). ``in_channels`` is the feature map's
    channel count, found by one dry forward when not given.
    """

    def __init__(self, backbone: Union[dict, nn.Module], num_classes: int, padding: str = 'zero',
                 feature_index: int = -1, in_channels: Optional[int] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor or dict(type='ImgDataPreprocessor'),
                         init_cfg=init_cfg)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f'num_classes must be an integer >= 2, got {num_classes!r} '
                             f'(location on a g x g grid: g*g).')
        self.num_classes = num_classes
        self.backbone = backbone if isinstance(backbone, nn.Module) else MODELS.build(backbone)
        self.feature_index = int(feature_index)
        self.padding = normalize_padding_mode(padding)
        self.in_channels = int(in_channels) if in_channels is not None else self._infer_channels()
        # after the dry run: that one used the config's own padding, which fits any input
        self.num_padded_convs = set_padding_mode(self.backbone, self.padding)

    def _backbone_name(self) -> str:
        return type(self.backbone).__name__

    def _select_feature(self, output: Any) -> torch.Tensor:
        if isinstance(output, (tuple, list)):
            if not -len(output) <= self.feature_index < len(output):
                raise ValueError(f'feature_index={self.feature_index} is out of range: backbone '
                                 f'{self._backbone_name()} returns {len(output)} tensors.')
            output = output[self.feature_index]
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            got = (f'shape {tuple(output.shape)}' if isinstance(output, torch.Tensor)
                   else type(output).__name__)
            raise ValueError(
                f'{type(self).__name__} pools a feature map (B, C, H, W) over H and W, but '
                'backbone '
                f'{self._backbone_name()} (output {self.feature_index}) gives {got}, which cannot '
                'be '
                'pooled spatially. Use a backbone (or feature_index) that returns 4-D feature '
                'maps, '
                f'e.g. a vision transformer with out_type="featmap".')
        return output

    def _infer_channels(self) -> int:
        was_training = self.backbone.training
        self.backbone.eval()  # a dry run must not move BatchNorm statistics
        try:
            with torch.no_grad():
                feature = self._select_feature(
                    self.backbone(torch.zeros(1, 3, *_CHANNEL_PROBE_SIZE)))
        finally:
            self.backbone.train(was_training)
        return int(feature.shape[1])

    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        """The backbone's feature map (B, C, H, W) that the read-out pools."""
        try:
            output = self.backbone(inputs)
        except RuntimeError as error:
            if 'Padding size should be less than' not in str(error):
                raise
            raise ValueError(
                f'{self.padding!r} padding needs every padded feature map to be larger than its '
                f'padding, but inputs of {tuple(inputs.shape[-2:])} shrink below that inside '
                f'{self._backbone_name()}. Use larger canvases (bigger patches or cells) or zero '
                f'padding. ({error})') from None
        return self._select_feature(output)

    def _logits(self, inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, inputs: torch.Tensor, data_samples: Optional[Sequence[Any]] = None,
                mode: str = 'tensor') -> Union[torch.Tensor, dict, list]:
        logits = self._logits(inputs)
        if mode == 'tensor':
            return logits
        if mode == 'loss':
            labels = _labels_tensor(data_samples, logits.device)
            accuracy = (logits.detach().argmax(dim=1) == labels).float().mean() * 100
            return {'loss': F.cross_entropy(logits, labels), 'accuracy': accuracy}
        if mode == 'predict':
            predictions = logits.argmax(dim=1).tolist()
            labels = (_labels_tensor(data_samples, logits.device).tolist()
                      if data_samples is not None else [None] * len(predictions))
            return [{'pred_label': p, 'gt_label': g} for p, g in zip(predictions, labels)]
        raise ValueError(f"Unknown mode {mode!r}; use 'loss', 'predict' or 'tensor'.")


@MODELS.register_module()
class GAPNet(PooledProbe):
    """Backbone -> conv to ``num_classes`` channels -> global average pooling; no FC layer.

    ``head_kernel_size`` 1 (default) reads the channels alone; 3 adds a padded conv whose own
    border (in the chosen padding mode) could carry position as well.

    Usage::

        net = GAPNet(dict(type='ResNetV1c', depth=18, base_channels=16, stem_channels=16), 25)
        net(torch.zeros(1, 3, 80, 80)).shape        # torch.Size([1, 25])
    """

    def __init__(self, backbone: Union[dict, nn.Module], num_classes: int, padding: str = 'zero',
                 head_kernel_size: int = 1, **kwargs):
        super().__init__(backbone, num_classes, padding=padding, **kwargs)
        if head_kernel_size < 1 or head_kernel_size % 2 == 0:
            raise ValueError(f'head_kernel_size must be odd and positive, got {head_kernel_size}.')
        self.class_conv = nn.Conv2d(self.in_channels, num_classes, head_kernel_size,
                                    padding=head_kernel_size // 2)
        set_padding_mode(self.class_conv, self.padding)

    def _logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.class_conv(self.extract_feat(inputs)).mean(dim=(2, 3))


@MODELS.register_module()
class PermuteNet(PooledProbe):
    """Backbone -> global average pooling -> random channel permutation -> linear layer.

    The permutation is drawn afresh at every forward, in training and in test (eval mode
    shuffles too, as the authors' test does). ``permutation='image'`` (default) draws one per
    image; ``'batch'`` draws one per forward for the whole batch, as the authors' code does.
    Each image's logits then follow the same distribution either way, and so does the expected
    loss; per-batch draws only correlate the images of a batch (and the noise of its gradient).
    ``shuffle_channels=False`` gives the plain GAP + FC control.

    Usage::

        net = PermuteNet(dict(type='ResNetV1c', depth=18, base_channels=16, stem_channels=16), 25)
        net(torch.zeros(1, 3, 80, 80)).shape        # torch.Size([1, 25])
        PermuteNet(backbone, 25, permutation='batch')  # the authors' one permutation per batch
    """

    def __init__(self, backbone: Union[dict, nn.Module], num_classes: int, padding: str = 'zero',
                 shuffle_channels: bool = True, permutation: str = 'image', **kwargs):
        if permutation not in PERMUTATION_KINDS:
            raise ValueError(f'Unknown permutation {permutation!r}; choose one of '
                             f'{", ".join(map(repr, PERMUTATION_KINDS))} (one per image or one '
                             f'per batch).')
        super().__init__(backbone, num_classes, padding=padding, **kwargs)
        self.shuffle = bool(shuffle_channels)
        self.permutation = permutation
        self.fc = nn.Linear(self.in_channels, num_classes)

    def _logits(self, inputs: torch.Tensor) -> torch.Tensor:
        pooled = self.extract_feat(inputs).mean(dim=(2, 3))
        if self.shuffle:
            pooled = shuffle_channels(pooled, per=self.permutation)
        return self.fc(pooled)
