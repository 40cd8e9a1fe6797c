"""AugShiftEncoderDecoder: the two AugShift loss terms, their data path, and the configs.

The loss terms are checked against values worked out by hand, on models built so that the
answer is known: a per-pixel model whose features include each pixel's row and column in its
crop (position-dependent: its outputs disagree more the larger the shift), and a per-pixel
model without them (shift-equivariant: its outputs agree exactly on the crops' overlap).
The source image encodes position too (channel 0 = row, channel 1 = column), so the pooled
latents of two crops differ by the offset itself.
"""
from __future__ import annotations

import copy
import math
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn as nn
from helpers import REPO_ROOT
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.model import BaseModule
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.models.decode_heads import FCNHead
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from posattack.training.aug_shift import (AugShiftDataPreProcessor, AugShiftEncoderDecoder,
                                          dense_disagreement, overlap_disagreement,
                                          pooled_latent_distance)
from posattack.training.shift_crops import AugShiftPair, crop_packed_sample

AUGSHIFT_CONFIG = osp.join(REPO_ROOT, 'configs', 'demo',
                           'deeplabv3_r18-tiny_augshift_synthetic-cityscapes.py')
SHIFT_CROPS_CONFIG = osp.join(REPO_ROOT, 'configs', 'demo',
                              'deeplabv3_r18-tiny_shift-crops_synthetic-cityscapes.py')
AUG_SHIFT_KEYS = {'aug_shift.loss_latent', 'aug_shift.loss_dense'}

H, W = 12, 16  # source image of the hand-built models
CROP = (8, 12)  # one crop size for every offset, so that the offsets are comparable
NUM_CLASSES = 3
RAMP = 0.2  # logit per pixel of position in the position-dependent model


# ----------------------------------------------------------------------------- tiny models
class PixelBackbone(BaseModule):
    """A backbone with no spatial mixing (1x1 convolution, stride 1, no padding).

    ``with_coords``: the output is [image, row, column], the last two channels holding each
    pixel's position in its input (crop): a position-dependent model. Without, the output is
    a fixed random 1x1 convolution of the image: exactly shift-equivariant.
    """

    def __init__(self, with_coords=True):
        super().__init__()
        self.with_coords = with_coords
        self.conv = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            generator = torch.Generator().manual_seed(0)
            self.conv.weight.copy_(torch.randn(3, 3, 1, 1, generator=generator))
            self.conv.bias.copy_(torch.randn(3, generator=generator))

    def forward(self, x):
        if not self.with_coords:
            return (self.conv(x), )
        n, _, h, w = x.shape
        rows = torch.arange(h, dtype=x.dtype).view(1, 1, h, 1).expand(n, 1, h, w)
        cols = torch.arange(w, dtype=x.dtype).view(1, 1, 1, w).expand(n, 1, h, w)
        return (torch.cat([x, rows, cols], dim=1), )


class GlobalPoolHead(FCNHead):
    """A head that returns one logit vector per image: (N, K, 1, 1)."""

    def forward(self, inputs):
        return super().forward(inputs).mean(dim=(2, 3), keepdim=True)


def _tiny_model(with_coords=True, head=FCNHead, **kwargs):
    """AugShiftEncoderDecoder on PixelBackbone and a 1x1-conv FCNHead; no normalisation, so
    the features are the image's pixel values."""
    init_default_scope('mmseg')
    channels = 5 if with_coords else 3
    cfg = dict(
        type='AugShiftEncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', size_divisor=1),
        backbone=dict(type=PixelBackbone, with_coords=with_coords),
        decode_head=dict(type=head, in_channels=channels, channels=channels, num_convs=0,
                         concat_input=False, num_classes=NUM_CLASSES, dropout_ratio=0,
                         norm_cfg=None, align_corners=False))
    cfg.update(kwargs)
    model = MODELS.build(cfg)
    with torch.no_grad():
        weight = model.decode_head.conv_seg.weight
        if with_coords:
            # class 0 follows the row, class 1 the column, class 2 is flat: logits depend on
            # position only
            weight.zero_()
            weight[0, 3] = weight[1, 4] = RAMP
        else:
            weight.copy_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(1)))
        model.decode_head.conv_seg.bias.zero_()
    return model.eval()


def _packed(height=H, width=W, seed=None):
    """A packed sample: image channels (row, column, 7) or random; labels < NUM_CLASSES."""
    if seed is None:
        rows = torch.arange(height).view(height, 1).expand(height, width)
        cols = torch.arange(width).view(1, width).expand(height, width)
        image = torch.stack([rows, cols, torch.full_like(rows, 7)]).to(torch.uint8)
        labels = ((rows + cols) % NUM_CLASSES).unsqueeze(0).long()
    else:
        generator = torch.Generator().manual_seed(seed)
        image = torch.randint(0, 256, (3, height, width), generator=generator, dtype=torch.uint8)
        labels = torch.randint(0, 19, (1, height, width), generator=generator)
    sample = SegDataSample(metainfo=dict(img_path='scene.png', img_shape=(height, width),
                                         ori_shape=(height, width)))
    sample.gt_sem_seg = PixelData(data=labels)
    return dict(inputs=image, data_samples=sample)


def _pair_at(offset, origin_a=(0, 0)):
    """One AugShiftPair output with crop B `offset` pixels below-right of crop A."""
    packed = _packed()
    origin_b = (origin_a[0] + offset, origin_a[1] + offset)
    crops, samples = [], []
    for member, origin in enumerate((origin_a, origin_b)):
        info = dict(max_shift=4, trial=0, member=member, source_shape=(H, W))
        crop, sample = crop_packed_sample(packed['inputs'], packed['data_samples'], origin,
                                          CROP, info)
        crops.append(crop)
        samples.append(sample)
    return dict(inputs=crops, data_samples=samples)


def _losses(model, pairs):
    """The model's losses on a batch of AugShiftPair outputs, collated as a dataloader does."""
    data = model.data_preprocessor(pseudo_collate(pairs), training=True)
    with torch.no_grad():
        return model.loss(data['inputs'], data['data_samples'])


def _terms(model, pairs):
    losses = _losses(model, pairs)
    return losses['aug_shift.loss_latent'].item(), losses['aug_shift.loss_dense'].item()


# ----------------------------------------------------------------------------- the distances
def test_pooled_latent_mse_hand_computed():
    a = torch.zeros(1, 2, 2, 2)
    b = torch.stack([torch.tensor([[0., 2.], [0., 2.]]),  # mean 1
                     torch.tensor([[1., 5.], [3., 3.]])]).unsqueeze(0)  # mean 3
    # pooled difference (1, 3): mean of squares over the 2 channels = (1 + 9) / 2
    assert pooled_latent_distance(a, b, 'mse').item() == pytest.approx(5.0)
    # a second pair with identical latents halves the average over pairs
    pair_a, pair_b = torch.cat([a, b]), torch.cat([b, b])
    assert pooled_latent_distance(pair_a, pair_b, 'mse').item() == pytest.approx(2.5)


def test_pooled_latent_cosine_hand_computed():
    a = torch.tensor([1., 0.]).view(1, 2, 1, 1).expand(2, 2, 3, 3)
    b = torch.stack([torch.tensor([1., 1.]), torch.tensor([-2., 0.])]).view(2, 2, 1, 1)
    # pair 1: 1 - cos 45 degrees; pair 2: opposite vectors, 1 - (-1) = 2
    expected = ((1 - 1 / math.sqrt(2)) + 2) / 2
    assert pooled_latent_distance(a, b, 'cosine').item() == pytest.approx(expected)
    assert pooled_latent_distance(a, 3 * a, 'cosine').item() == pytest.approx(0, abs=1e-7)


def test_pooled_latent_unknown_distance():
    with pytest.raises(ValueError, match='latent_distance'):
        pooled_latent_distance(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1), 'l1')


def test_dense_disagreement_hand_computed():
    # p_a = (1/2, 1/2), p_b = (3/4, 1/4): 0.5 * [(-1/4) ln(2/3) + (1/4) ln 2] = ln(3) / 8
    logits_a = torch.tensor([0., 0.]).view(2, 1, 1)
    logits_b = torch.tensor([math.log(3), 0.]).view(2, 1, 1)
    assert dense_disagreement(logits_a, logits_b).item() == pytest.approx(math.log(3) / 8)
    assert dense_disagreement(logits_b, logits_a).item() == pytest.approx(math.log(3) / 8)
    # averaged over pixels: a second, agreeing pixel halves it
    two_a = torch.cat([logits_a, logits_a], dim=2)
    two_b = torch.cat([logits_b, logits_a], dim=2)
    assert dense_disagreement(two_a, two_b).item() == pytest.approx(math.log(3) / 16)


def test_dense_disagreement_zero_only_for_agreeing_logits():
    logits = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(0))
    assert dense_disagreement(logits, logits).item() == 0
    # adding a constant per pixel leaves the class distribution unchanged
    assert dense_disagreement(logits, logits + 2.5).item() == pytest.approx(0, abs=1e-6)
    other = logits.clone()
    other[1, 2, 3] += 1.0  # one logit of one pixel
    assert dense_disagreement(logits, other).item() > 1e-4


def _ramp_logits(origin, cells, stride, slope=0.3):
    """Logits a stride-`stride` head gives a crop at `origin` when class 0's logit is linear
    in the SOURCE column (class 1's in the source row): cell j sits at crop pixel
    (j + 0.5) * stride - 0.5, as mmseg's bilinear resize (align_corners=False) places it."""
    rows, cols = cells
    y = (torch.arange(rows) + 0.5) * stride - 0.5 + origin[0]
    x = (torch.arange(cols) + 0.5) * stride - 0.5 + origin[1]
    return torch.stack([slope * x.view(1, cols).expand(rows, cols),
                        slope * y.view(rows, 1).expand(rows, cols),
                        torch.zeros(rows, cols)]).unsqueeze(0)


@pytest.mark.parametrize('shift', [(0, 2), (2, 0), (4, 4), (-2, 6)])
def test_overlap_disagreement_aligns_cells_at_a_stride(shift):
    # A consistent model on a linear logit field: B's map sampled at A's cells reproduces A's
    # values exactly only if cells are placed where mmseg's resize puts them (bilinear
    # interpolation is exact on linear functions), including shifts of half a cell.
    stride, crop, cells = 4, (12, 20), (3, 5)
    origin_a, origin_b = (6, 6), (6 + shift[0], 6 + shift[1])
    a, b = _ramp_logits(origin_a, cells, stride), _ramp_logits(origin_b, cells, stride)
    assert overlap_disagreement(a, b, [origin_a], [origin_b], [crop]).item() < 1e-10
    # a map that ignores the offset (a position-dependent model) disagrees
    assert overlap_disagreement(a, a, [origin_a], [origin_b], [crop]).item() > 1e-3


def test_overlap_disagreement_ignores_the_padding():
    # the batch was padded from 12x20 to 16x24 (4x6 cells): the cells over the padding hold
    # garbage the crops never saw, and the value is that of the unpadded maps
    stride, crop, origin_a, origin_b = 4, (12, 20), (0, 0), (2, 4)
    padded_a = _ramp_logits(origin_a, (4, 6), stride)
    padded_b = _ramp_logits(origin_b, (4, 6), stride)
    padded_b[..., 3:, :] = 50.0
    padded_b[..., :, 5:] = -50.0
    value = overlap_disagreement(padded_a, padded_b, [origin_a], [origin_b], [crop],
                                 input_shape=(16, 24))
    assert value.item() < 1e-10
    # and a disagreement inside the crops still counts
    padded_b[0, 0, 1, 1] += 5.0
    assert overlap_disagreement(padded_a, padded_b, [origin_a], [origin_b], [crop],
                                input_shape=(16, 24)).item() > 1e-3


# ----------------------------------------------------------------------------- the data path
def test_data_preprocessor_lays_pairs_out_a_first():
    preprocessor = AugShiftDataPreProcessor(size_divisor=1)
    pairs = [_pair_at(1, origin_a=(0, 0)), _pair_at(2, origin_a=(1, 0))]
    data = preprocessor(pseudo_collate(pairs), training=True)
    expected = [pairs[0]['inputs'][0], pairs[1]['inputs'][0],
                pairs[0]['inputs'][1], pairs[1]['inputs'][1]]
    assert data['inputs'].shape == (4, 3) + CROP
    for got, crop in zip(data['inputs'], expected):
        assert torch.equal(got, crop.float())
    members = [s.metainfo['shift_crop']['member'] for s in data['data_samples']]
    assert members == [0, 0, 1, 1]
    # an un-paired batch (validation) passes through as SegDataPreProcessor gives it
    plain = preprocessor(pseudo_collate([_packed(), _packed()]), training=False)
    assert plain['inputs'].shape == (2, 3, H, W)


def test_data_preprocessor_refuses_three_views_per_image():
    triple = dict(inputs=[[torch.zeros(3, 4, 4)]] * 3, data_samples=[[SegDataSample()]] * 3)
    with pytest.raises(ValueError, match='AugShiftPair'):
        AugShiftDataPreProcessor(size_divisor=1)(triple, training=True)


def test_segmentor_swaps_in_the_pair_preprocessor():
    model = _tiny_model()
    assert type(model.data_preprocessor) is AugShiftDataPreProcessor
    assert model.data_preprocessor.size_divisor == 1  # the rest of the config is kept


# ----------------------------------------------------------------------------- the loss
def _demo_model(demo_cfg):
    """The demo model as an AugShiftEncoderDecoder, seeded random weights, eval mode."""
    cfg = copy.deepcopy(demo_cfg.model)
    cfg.type = 'AugShiftEncoderDecoder'
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.eval()  # dropout off: in train mode it alone makes identical crops disagree


def test_identical_crops_give_zero_loss_on_the_demo_model(demo_cfg):
    model = _demo_model(demo_cfg)
    np.random.seed(0)
    pair = AugShiftPair(max_shift=0)(_packed(64, 128, seed=0))
    losses = _losses(model, [pair])
    assert losses['aug_shift.loss_latent'].item() < 1e-7
    assert losses['aug_shift.loss_dense'].item() < 1e-7
    assert losses['decode.loss_ce'].item() > 0  # the decode loss is still there


def test_shifted_crops_disagree_on_the_demo_model(demo_cfg):
    # a zero-padded, strided ResNet is not shift-equivariant: both terms are positive
    model = _demo_model(demo_cfg)
    np.random.seed(3)
    pair = AugShiftPair(max_shift=8)(_packed(64, 128, seed=0))
    a, b = (s.metainfo['shift_crop']['origin'] for s in pair['data_samples'])
    assert a != b
    latent, dense = _terms(model, [pair])
    assert latent > 0 and dense > 0


def _expected_position_dense(offset):
    """Symmetric KL of the position model's two outputs on the overlap, pixel by pixel.

    A crop at (y0, x0) gives source pixel (r, c) the logits (RAMP*(r - y0), RAMP*(c - x0), 0).
    """
    total = []
    for r in range(offset, CROP[0]):  # source rows both crops see (A at 0, B at offset)
        for c in range(offset, CROP[1]):
            la = np.array([RAMP * r, RAMP * c, 0.0])
            lb = np.array([RAMP * (r - offset), RAMP * (c - offset), 0.0])
            pa, pb = np.exp(la) / np.exp(la).sum(), np.exp(lb) / np.exp(lb).sum()
            total.append(0.5 * np.sum((pa - pb) * (np.log(pa) - np.log(pb))))
    return float(np.mean(total))


def test_position_dependent_model_loss_grows_with_the_shift():
    model = _tiny_model(with_coords=True)
    zero = _terms(model, [_pair_at(0)])
    assert max(zero) < 1e-9  # the same crop twice
    terms = {offset: _terms(model, [_pair_at(offset)]) for offset in (1, 2, 4)}
    latents = [terms[o][0] for o in (1, 2, 4)]
    denses = [terms[o][1] for o in (1, 2, 4)]
    assert latents[0] < latents[1] < latents[2]
    assert denses[0] < denses[1] < denses[2]
    for offset in (1, 2, 4):
        # pooled latents [row, col, 7, row in crop, col in crop] differ by (d, d, 0, 0, 0)
        assert terms[offset][0] == pytest.approx(2 * offset ** 2 / 5, rel=1e-5)
        assert terms[offset][1] == pytest.approx(_expected_position_dense(offset), rel=1e-4)


def test_weights_scale_the_terms():
    plain = _terms(_tiny_model(), [_pair_at(2)])
    weighted = _terms(_tiny_model(latent_weight=0.5, dense_weight=3.0), [_pair_at(2)])
    assert weighted[0] == pytest.approx(0.5 * plain[0])
    assert weighted[1] == pytest.approx(3.0 * plain[1])
    assert not AUG_SHIFT_KEYS & set(_losses(_tiny_model(latent_weight=0, dense_weight=0),
                                            [_pair_at(2)]))


def test_equivariant_model_agrees_on_the_overlap():
    model = _tiny_model(with_coords=False)
    conv = model.backbone.conv.weight.detach().view(3, 3)
    for offset in (1, 2, 4):
        latent, dense = _terms(model, [_pair_at(offset)])
        assert dense < 1e-9  # the same source pixel gets the same logits in both crops
        # but the crops see different content: the pooled image differs by (d, d, 0), and
        # the pooled latent by conv @ (d, d, 0) (the bias cancels)
        difference = conv @ torch.tensor([offset, offset, 0.])
        assert latent == pytest.approx(difference.pow(2).mean().item(), rel=1e-5)
        assert latent > 0


def test_cosine_latent_distance():
    model = _tiny_model(latent_distance='cosine')
    latent, _ = _terms(model, [_pair_at(2)])
    # pooled crops: A = (3.5, 5.5, 7, 3.5, 5.5), B = A + (2, 2, 0, 0, 0)
    a = torch.tensor([3.5, 5.5, 7., 3.5, 5.5])
    b = a + torch.tensor([2., 2., 0., 0., 0.])
    expected = 1 - (a @ b / (a.norm() * b.norm())).item()
    assert latent == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------------------- bad input
def test_head_without_a_fixed_stride_is_refused():
    # (N, K, 1, 1) logits for 8x12 crops: 8x and 12x, no one stride to align the crops by
    model = _tiny_model(head=GlobalPoolHead)
    with pytest.raises(ValueError, match=r'GlobalPoolHead returned 1x1 logits for 8x12'):
        _losses(model, [_pair_at(1)])
    # without the dense term it trains: the latent term does not need aligned logits
    model.dense_weight = 0.0
    assert set(_losses(model, [_pair_at(1)])) >= {'aug_shift.loss_latent', 'decode.loss_ce'}


def test_head_without_per_pixel_logits_is_refused(monkeypatch):
    model = _tiny_model()
    monkeypatch.setattr(model.decode_head, 'forward', lambda feats: torch.zeros(2, NUM_CLASSES))
    with pytest.raises(ValueError, match=r'FCNHead returned \(2, 3\)'):
        _losses(model, [_pair_at(1)])


def test_other_data_preprocessor_is_refused():
    with pytest.raises(ValueError, match='SegDataPreProcessor'):
        _tiny_model(data_preprocessor=dict(type='BaseDataPreprocessor'))


def test_unpaired_batch_is_refused():
    model = _tiny_model()
    plain = model.data_preprocessor(pseudo_collate([_packed(), _packed()]), training=True)
    with pytest.raises(ValueError, match='AugShiftPair'):
        model.loss(plain['inputs'], plain['data_samples'])


def test_pairs_out_of_order_are_refused():
    # [A_1, B_1, A_2, B_2] (pairs side by side) instead of [A_1, A_2, B_1, B_2]
    model = _tiny_model()
    pairs = [_pair_at(1), _pair_at(2)]
    inputs = torch.stack([c.float() for p in pairs for c in p['inputs']])
    samples = [s for p in pairs for s in p['data_samples']]
    with pytest.raises(ValueError, match='AugShiftPair'):
        model.loss(inputs, samples)


@pytest.mark.parametrize('kwargs, words', [
    (dict(latent_weight=-1.0), 'latent_weight'),
    (dict(dense_weight=-0.5), 'dense_weight'),
    (dict(dense_weight=float('nan')), 'dense_weight'),
    (dict(latent_weight=True), 'latent_weight'),
    (dict(latent_distance='l1'), 'latent_distance'),
])
def test_bad_settings_are_refused(kwargs, words):
    with pytest.raises(ValueError, match=words):
        AugShiftEncoderDecoder(backbone=dict(), decode_head=dict(), **kwargs)


# ----------------------------------------------------------------------------- the configs
def _tiny_config(path, synthetic_root, work_dir):
    """`path` on the tiny synthetic data, as conftest's demo_cfg does for the demo config
    (64x128 images, batch 2, no workers), the AugShiftPair left at the pipeline's end."""
    from conftest import point_dataloaders_at_tiny_data
    cfg = Config.fromfile(path)
    point_dataloaders_at_tiny_data(cfg, synthetic_root)
    cfg.work_dir = str(work_dir)
    return cfg


def test_augshift_config_trains_and_validates(synthetic_root, tmp_path):
    from mmengine.runner import Runner
    cfg = _tiny_config(AUGSHIFT_CONFIG, synthetic_root, tmp_path / 'work_dir')
    assert cfg.train_dataloader.dataset.pipeline[-1] == dict(type='posattack.AugShiftPair',
                                                             max_shift=8)
    cfg.train_cfg.max_iters = 2
    cfg.train_cfg.val_interval = 2
    cfg.default_hooks.checkpoint.interval = 2
    cfg.default_hooks.logger.interval = 1
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    model = runner.train()
    assert type(model) is AugShiftEncoderDecoder
    assert type(model.data_preprocessor) is AugShiftDataPreProcessor
    hub = runner.message_hub
    for key in AUG_SHIFT_KEYS | {'decode.loss_ce'}:
        values, _ = hub.get_scalar(f'train/{key}').data
        assert len(values) == 2 and np.isfinite(values).all(), key
    # 64x128 images -> 56x120 crops; the latent term is positive for shifted crops unless
    # both draws coincide, which the seeded run does not do
    assert hub.get_scalar('train/aug_shift.loss_latent').current() > 0
    # validation ran on whole, un-paired images after the last iteration
    assert np.isfinite(hub.get_scalar('val/mIoU').current())


def test_shift_crops_config_has_no_aug_shift_terms(synthetic_root, tmp_path):
    from mmengine.runner import Runner
    cfg = _tiny_config(SHIFT_CROPS_CONFIG, synthetic_root, tmp_path / 'work_dir')
    assert cfg.model.latent_weight == 0 and cfg.model.dense_weight == 0
    assert cfg.train_dataloader.dataset.pipeline[-1].type == 'posattack.AugShiftPair'
    init_default_scope('mmseg')
    torch.manual_seed(0)
    np.random.seed(0)
    model = MODELS.build(cfg.model)
    assert type(model) is AugShiftEncoderDecoder
    batch = next(iter(Runner.build_dataloader(cfg.train_dataloader, seed=0)))
    data = model.data_preprocessor(batch, training=True)
    assert data['inputs'].shape == (4, 3, 56, 120)  # 2 pairs of crops, no padding
    losses = model.loss(data['inputs'], data['data_samples'])
    assert not AUG_SHIFT_KEYS & set(losses)
    assert torch.isfinite(losses['decode.loss_ce'])
