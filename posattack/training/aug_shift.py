"""AugShift for MMSeg: train on two shifted crops of each image and pull them together.

Islam et al. (ICCV 2021) train on two crops of the same image at a random offset with a loss
between their global-average-pooled latents, which makes outputs far more consistent under
small shifts. :class:`AugShiftEncoderDecoder` is mmseg's EncoderDecoder plus two terms:

* ``latent``: distance between the pooled latents of the two crops (the paper's loss);
* ``dense``: disagreement of the two outputs on the pixels both crops see (symmetric KL
  between the per-pixel class distributions), the segmentation counterpart.

The pairs come from :class:`posattack.AugShiftPair` at the end of the train pipeline; the
segmentor's data preprocessor (:class:`AugShiftDataPreProcessor`, put in place by the
segmentor) lays a batch of N pairs out as 2N crops, all A crops first. Inference is
EncoderDecoder's, unchanged. ``configs/_base_/posattack/aug_shift.py`` has the settings.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS
from mmseg.utils import add_prefix

from .shift_crops import SHIFT_CROP_KEY

__all__ = ['AugShiftDataPreProcessor', 'AugShiftEncoderDecoder', 'dense_disagreement',
           'overlap_disagreement', 'pooled_latent_distance']

LATENT_DISTANCES = ('mse', 'cosine')
_PIPELINE_FIX = ("append dict(type='posattack.AugShiftPair', max_shift=8) after PackSegInputs "
                 'in the train pipeline (configs/_base_/posattack/aug_shift.py shows how)')


@MODELS.register_module()
class AugShiftDataPreProcessor(SegDataPreProcessor):
    """SegDataPreProcessor that lays crop pairs out as one batch: [A_1..A_N, B_1..B_N].

    mmengine's default collate turns each sample's ``[crop_a, crop_b]`` into
    ``[[A_1..A_N], [B_1..B_N]]``; other batches (validation, test) pass through unchanged.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        inputs = data.get('inputs')
        if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], (list, tuple)):
            samples = data.get('data_samples')
            if len(inputs) != 2 or samples is None or len(samples) != 2:
                raise ValueError(f'AugShift batches hold two crops per image, got {len(inputs)} '
                                 'views per image: ' + _PIPELINE_FIX + '.')
            data = dict(data, inputs=list(inputs[0]) + list(inputs[1]),
                        data_samples=list(samples[0]) + list(samples[1]))
        return super().forward(data, training)


def _pair_preprocessor(cfg):
    """The segmentor's data preprocessor config, as the pair-aware subclass."""
    if cfg is None:
        return dict(type=AugShiftDataPreProcessor)
    cfg = dict(cfg)
    kind = cfg.get('type')
    if isinstance(kind, type) and issubclass(kind, AugShiftDataPreProcessor):
        return cfg
    if kind in ('SegDataPreProcessor', 'mmseg.SegDataPreProcessor', SegDataPreProcessor,
                'AugShiftDataPreProcessor', 'posattack.AugShiftDataPreProcessor'):
        cfg['type'] = AugShiftDataPreProcessor
        return cfg
    raise ValueError(f'AugShiftEncoderDecoder needs a SegDataPreProcessor (it swaps in '
                     f'AugShiftDataPreProcessor, which batches crop pairs), got type={kind!r}: '
                     'use SegDataPreProcessor, or subclass posattack.AugShiftDataPreProcessor.')


def pooled_latent_distance(latent_a: torch.Tensor, latent_b: torch.Tensor,
                           distance: str = 'mse') -> torch.Tensor:
    """Mean distance between the global average pools of two (N, C, h, w) latents.

    ``'mse'``: mean over channels of the squared difference; ``'cosine'``: 1 - cosine
    similarity. Averaged over the N pairs.
    """
    pooled_a, pooled_b = latent_a.mean(dim=(2, 3)), latent_b.mean(dim=(2, 3))
    if distance == 'mse':
        return (pooled_a - pooled_b).pow(2).mean(dim=1).mean()
    if distance == 'cosine':
        return (1 - F.cosine_similarity(pooled_a, pooled_b, dim=1)).mean()
    raise ValueError(f'latent_distance must be one of {LATENT_DISTANCES}, got {distance!r}.')


def dense_disagreement(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Symmetric KL between the class distributions of two aligned (K, h, w) logit maps.

    0.5 * (KL(p_a || p_b) + KL(p_b || p_a)) = 0.5 * sum_k (p_a - p_b)(log p_a - log p_b), per
    pixel, averaged over pixels: zero exactly when the two predictions agree everywhere.
    """
    return _symmetric_kl(logits_a, logits_b, dim=0).mean()


def _symmetric_kl(logits_p: torch.Tensor, logits_q: torch.Tensor, dim: int) -> torch.Tensor:
    """Per-pixel 0.5 * (KL(p || q) + KL(q || p)) of the softmaxes along `dim`."""
    log_p, log_q = F.log_softmax(logits_p, dim=dim), F.log_softmax(logits_q, dim=dim)
    return 0.5 * ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(dim=dim)


def _cell_positions(cells: int, pixels: int, align_corners: bool) -> torch.Tensor:
    """Where each logit cell sits, in input pixels, under mmseg's bilinear resize."""
    index = torch.arange(cells, dtype=torch.float32)
    if align_corners:
        return index * ((pixels - 1) / max(cells - 1, 1))
    return (index + 0.5) * (pixels / cells) - 0.5


def _to_grid(position: torch.Tensor, pixels: int, align_corners: bool) -> torch.Tensor:
    """Input-pixel positions -> grid_sample coordinates in [-1, 1] of a map of that crop."""
    if align_corners:
        return 2 * position / max(pixels - 1, 1) - 1
    return 2 * (position + 0.5) / pixels - 1


def overlap_disagreement(logits_a: torch.Tensor, logits_b: torch.Tensor,
                         origins_a: Sequence[Sequence[int]], origins_b: Sequence[Sequence[int]],
                         crop_shapes: Sequence[Sequence[int]],
                         input_shape: Optional[Sequence[int]] = None,
                         align_corners: bool = False) -> torch.Tensor:
    """Disagreement of two crops' outputs where both crops see, at the logits' resolution.

    ``logits_a``/``logits_b``: (N, K, h, w) maps of N crop pairs; pair i's crops are
    ``crop_shapes[i]`` pixels with top-left corners ``origins_a[i]``/``origins_b[i]`` in their
    source image; the maps cover ``input_shape`` (the batch's size, crops padded at the
    bottom/right; default: the crop size). Each cell of one map is compared
    (:func:`dense_disagreement`, per cell) with the other map bilinearly sampled at the same
    source position, exactly where mmseg's resize to the input size would take it from;
    cells outside either crop are left out. Both directions are averaged, so the value is
    symmetric in A and B. At the logits' resolution it costs stride^2 times less than
    comparing maps upsampled to the input.
    """
    num_pairs, _, rows, cols = logits_a.shape
    crop_hw = torch.as_tensor(crop_shapes, dtype=torch.float32).view(-1, 2).expand(num_pairs, 2)
    height, width = (int(v) for v in (input_shape if input_shape is not None
                                      else crop_hw[0].tolist()))
    cell_y = _cell_positions(rows, height, align_corners).view(1, rows, 1)
    cell_x = _cell_positions(cols, width, align_corners).view(1, 1, cols)
    last_y, last_x = (crop_hw[:, 0] - 1).view(-1, 1, 1), (crop_hw[:, 1] - 1).view(-1, 1, 1)
    shifts = (torch.as_tensor(origins_a, dtype=torch.float32)
              - torch.as_tensor(origins_b, dtype=torch.float32))  # A's pixel p is B's p + shift

    def one_way(source, other, shift):
        y = cell_y + shift[:, 0].view(-1, 1, 1)
        x = cell_x + shift[:, 1].view(-1, 1, 1)
        seen = ((cell_y <= last_y) & (cell_x <= last_x)  # a pixel of the source crop...
                & (y >= 0) & (y <= last_y) & (x >= 0) & (x <= last_x))  # ...the other sees
        grid = torch.stack([_to_grid(x, width, align_corners).expand(-1, rows, -1),
                            _to_grid(y, height, align_corners).expand(-1, -1, cols)], dim=-1)
        sampled = F.grid_sample(other, grid.to(other), mode='bilinear', padding_mode='border',
                                align_corners=align_corners)
        per_cell = _symmetric_kl(source, sampled, dim=1)
        return per_cell[seen].mean() if seen.any() else per_cell.sum() * 0

    return 0.5 * (one_way(logits_a, logits_b, shifts) + one_way(logits_b, logits_a, -shifts))


def _shift_info(data_sample) -> Optional[dict]:
    return data_sample.metainfo.get(SHIFT_CROP_KEY)


def _check_pairs(data_samples: Sequence) -> tuple[int, list[tuple[dict, dict]]]:
    """Number of pairs and each pair's crop infos; clear errors for unpaired batches."""
    infos = [_shift_info(sample) for sample in data_samples]
    if any(info is None for info in infos):
        raise ValueError('AugShiftEncoderDecoder trains on crop pairs, but this batch has '
                         'samples without shift-crop metainfo: ' + _PIPELINE_FIX + '.')
    num_pairs = len(infos) // 2
    pairs = list(zip(infos[:num_pairs], infos[num_pairs:]))
    paths = [sample.metainfo.get('img_path') for sample in data_samples]
    if len(infos) % 2 or any(a['member'] != 0 or b['member'] != 1 for a, b in pairs) \
            or any(paths[i] != paths[i + num_pairs] for i in range(num_pairs)):
        raise ValueError('AugShiftEncoderDecoder expects a batch [A_1..A_N, B_1..B_N] of crop '
                         'pairs, as AugShiftDataPreProcessor lays it out; this batch is not: '
                         'keep model.data_preprocessor a SegDataPreProcessor (the segmentor '
                         'swaps in the pair-aware one) and ' + _PIPELINE_FIX + '.')
    return num_pairs, pairs


@MODELS.register_module()
class AugShiftEncoderDecoder(EncoderDecoder):
    """EncoderDecoder trained with AugShift (two shifted crops per image).

    Args (besides EncoderDecoder's):
        latent_weight: weight of the pooled-latent distance (the paper's AugShift loss).
        dense_weight: weight of the per-pixel disagreement on the crops' overlap.
        latent_index: which extracted feature map is "the latent" (default -1: the last
            backbone/neck output, the tensor the decode head reads in DeepLabv3-style models).
        latent_distance: ``'mse'`` or ``'cosine'`` between the pooled latents.

    Example (child of any EncoderDecoder config)::

        _base_ = ['./my_model.py', 'posattack::_base_/posattack/aug_shift.py']
        model = _base_.aug_shift_model  # merged into the base model: type and weights
        train_dataloader = dict(dataset=dict(
            pipeline=_base_.train_dataloader.dataset.pipeline + [_base_.aug_shift_pair]))
    """

    def __init__(self, *args, latent_weight: float = 1.0, dense_weight: float = 1.0,
                 latent_index: int = -1, latent_distance: str = 'mse',
                 data_preprocessor=None, **kwargs):
        for name, value in (('latent_weight', latent_weight), ('dense_weight', dense_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f'{name} must be a number >= 0, got {value!r}.')
        if latent_distance not in LATENT_DISTANCES:
            raise ValueError(f'latent_distance must be one of {LATENT_DISTANCES}, '
                             f'got {latent_distance!r}.')
        super().__init__(*args, data_preprocessor=_pair_preprocessor(data_preprocessor),
                         **kwargs)
        self.latent_weight = float(latent_weight)
        self.dense_weight = float(dense_weight)
        self.latent_index = int(latent_index)
        self.latent_distance = latent_distance

    def loss(self, inputs: torch.Tensor, data_samples: Sequence) -> dict[str, torch.Tensor]:
        """Decode (and auxiliary) losses on all 2N crops, plus the two AugShift terms."""
        num_pairs, pairs = _check_pairs(data_samples)
        feats = self.extract_feat(inputs)
        seg_logits = self.decode_head.forward(feats)
        self._check_logits(seg_logits, inputs)
        losses = add_prefix(self.decode_head.loss_by_feat(seg_logits, data_samples), 'decode')
        if self.with_auxiliary_head:
            losses.update(self._auxiliary_head_forward_train(feats, data_samples))
        losses.update(self.aug_shift_losses(feats, seg_logits, inputs, data_samples, num_pairs,
                                            pairs))
        return losses

    def aug_shift_losses(self, feats, seg_logits: torch.Tensor, inputs: torch.Tensor,
                         data_samples: Sequence, num_pairs: int,
                         pairs: Sequence[tuple[dict, dict]]) -> dict[str, torch.Tensor]:
        """The weighted AugShift terms (``aug_shift.loss_latent``, ``aug_shift.loss_dense``)."""
        losses = {}
        crop_shapes = [tuple(sample.metainfo['img_shape']) for sample in data_samples]
        input_shape = tuple(inputs.shape[-2:])
        if self.latent_weight > 0:
            latent = self._latent(feats)
            # pool over the crop only, not the padding the preprocessor may have added
            rows = math.ceil(crop_shapes[0][0] * latent.shape[-2] / input_shape[0])
            cols = math.ceil(crop_shapes[0][1] * latent.shape[-1] / input_shape[1])
            latent = latent[..., :rows, :cols]
            losses['aug_shift.loss_latent'] = self.latent_weight * pooled_latent_distance(
                latent[:num_pairs], latent[num_pairs:], self.latent_distance)
        if self.dense_weight > 0:
            losses['aug_shift.loss_dense'] = self.dense_weight * overlap_disagreement(
                seg_logits[:num_pairs], seg_logits[num_pairs:],
                [info_a['origin'] for info_a, _ in pairs],
                [info_b['origin'] for _, info_b in pairs], crop_shapes[:num_pairs], input_shape,
                self.align_corners)
        return losses

    def _latent(self, feats) -> torch.Tensor:
        maps = feats if isinstance(feats, (list, tuple)) else [feats]
        try:
            latent = maps[self.latent_index]
        except IndexError:
            raise ValueError(f'latent_index={self.latent_index} but the model extracts '
                             f'{len(maps)} feature maps: use -{len(maps)}..{len(maps) - 1}.'
                             ) from None
        if latent.dim() != 4:
            raise ValueError(f'the latent (feature {self.latent_index}) is '
                             f'{tuple(latent.shape)}; AugShift pools an (N, C, h, w) map.')
        return latent

    def _check_logits(self, seg_logits, inputs: torch.Tensor) -> None:
        """The dense term and the decode loss need (2N, K, h, w) logits at a fixed stride."""
        head = type(self.decode_head).__name__
        expected = (inputs.shape[0], self.out_channels)
        if not isinstance(seg_logits, torch.Tensor) or seg_logits.dim() != 4 \
                or tuple(seg_logits.shape[:2]) != expected:
            shape = tuple(seg_logits.shape) if isinstance(seg_logits, torch.Tensor) \
                else type(seg_logits).__name__
            raise ValueError(
                f'AugShiftEncoderDecoder needs a decode head whose forward returns per-pixel '
                f'logits (N, num_classes, h, w) = ({expected[0]}, {expected[1]}, h, w); {head} '
                f'returned {shape}. Use a head of that kind (FCN, ASPP, PSP, UPer, SegFormer...).')
        height, width = inputs.shape[-2:]
        rows, cols = seg_logits.shape[-2:]
        if self.dense_weight > 0 and round(height / rows) != round(width / cols):
            raise ValueError(
                f'{head} returned {rows}x{cols} logits for {height}x{width} inputs: not one '
                'stride on both axes, so the two crops\' outputs cannot be aligned pixel by '
                'pixel. The dense term needs logits that resize to the input\'s size (set '
                'dense_weight=0 to train without it).')
