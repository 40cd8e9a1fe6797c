"""The position read-out (posattack.readout): metrics against scipy, the read-out against the
authors' shape written out in torch, and constructed backbones whose answer is known:

* coordinates appended to the features: every gradient is a monotone function of a feature
  channel, so SPC is ~1 on every input, black and white included;
* translation-equivariant by construction (3x3 convolutions with circular padding, no
  position input): on a black or white image every feature map is constant, so the read-out
  draws a constant map and SPC is 0 (scipy would answer NaN there; posattack says 0 and
  counts it). Switched to zero padding, the same weights see the border: SPC rises.
"""
from __future__ import annotations

import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from helpers import load_tool, one_torch_thread  # noqa: F401
from mmengine import ConfigDict
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from scipy.stats import spearmanr
from torch import nn
from torch.nn import functional as F

from posattack.readout import (ReadoutOptions, TargetRanks, build_readout, image_scores,
                               readout_model)
from posattack.readout import run as readout_run
from posattack.readout import spearman, target_map, target_map_names
from posattack.readout.metrics import mean_with_interval

SIZE = (64, 128)


# ----------------------------------------------------------------------------- constructed nets
@MODELS.register_module(name='ReadoutTestCoordinateNet', force=True)
class CoordinateNet(nn.Module):
    """Image pooled to stride 8, with the pixel's x and y appended as two more channels."""

    def forward(self, x):
        pooled = F.avg_pool2d(x, 8)
        n, _, height, width = pooled.shape
        ys = torch.linspace(-1, 1, height)[None, None, :, None].expand(n, 1, height, width)
        xs = torch.linspace(-1, 1, width)[None, None, None, :].expand(n, 1, height, width)
        return (torch.cat([pooled, xs, ys], dim=1), )


@MODELS.register_module(name='ReadoutTestCircularNet', force=True)
class CircularNet(nn.Module):
    """Three 3x3 convolutions (stride 1, 2, 2) with circular padding: a shift of the input by
    a multiple of 4 pixels shifts every map; nothing in it knows where the border is."""

    def __init__(self, channels: int = 8):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1, padding_mode='circular'), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1, padding_mode='circular'),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1, padding_mode='circular'))

    def forward(self, x):
        return (self.body(x), )


def build_segmentor(backbone: dict, channels: int) -> nn.Module:
    init_default_scope('mmseg')
    torch.manual_seed(0)
    return MODELS.build(ConfigDict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0,
                               seg_pad_val=255),
        backbone=backbone,
        decode_head=dict(type='FCNHead', in_channels=channels, channels=channels, num_convs=0,
                         concat_input=False, kernel_size=1, in_index=0, num_classes=2,
                         norm_cfg=None, align_corners=False),
        train_cfg=dict(), test_cfg=dict(mode='whole'))).eval()


@pytest.fixture(scope='module')
def image_folders(tmp_path_factory):
    """Random-content images: 12 to train on, 4 held out."""
    root = tmp_path_factory.mktemp('readout_images')
    rng = np.random.default_rng(0)
    for split, count in (('train', 12), ('test', 4)):
        for i in range(count):
            image = rng.integers(0, 256, SIZE + (3, ), dtype=np.uint8)
            mmcv.imwrite(image, str(root / split / 'city' / f'{i:02d}.png'))
    return str(root / 'train'), str(root / 'test')


def options(tmp_path, folders, **kwargs) -> ReadoutOptions:
    values = dict(images=folders[0], test_images=folders[1], epochs=40, readout_batch_size=4,
                  bootstrap=200, num_noise=3, layers=['backbone:0'])
    values.update(kwargs)
    return ReadoutOptions('constructed.py', 'none.pth', str(tmp_path / 'work'), **values)


def score(result, variant, target, kind):
    row = next(r for r in result['rows'] if r['variant'] == variant and r['target'] == target)
    return row['scores'][kind]


# ----------------------------------------------------------------------------- metrics
@pytest.mark.parametrize('name', target_map_names())
def test_spc_is_scipy_spearmanr_on_every_target_map(name):
    target = target_map(name, *SIZE)   # gradients and stripes: many tied pixels
    ranks = TargetRanks(target)
    rng = np.random.default_rng(1)
    for prediction in (rng.random(SIZE), np.round(rng.random(SIZE), 1),   # ties in both
                       target.numpy() ** 2 + 0.01 * rng.random(SIZE)):
        expected = spearmanr(prediction.ravel(), target.numpy().ravel())[0]
        assert spearman(prediction, ranks)[0] == pytest.approx(expected, abs=1e-12)


def test_a_constant_prediction_scores_zero_and_is_counted():
    ranks = TargetRanks(target_map('gradient_h', *SIZE))
    maps = torch.stack([torch.full(SIZE, 0.3), torch.linspace(0, 1, SIZE[1]).expand(SIZE)])
    scores = image_scores(maps, ranks)
    assert scores['spc'].tolist() == [0.0, pytest.approx(1.0)]
    assert scores['constant'].tolist() == [True, False]
    expected_mae = np.abs(0.3 - target_map('gradient_h', *SIZE).numpy()).mean()
    assert scores['mae'][0] == pytest.approx(expected_mae)


def test_interval_over_images():
    values = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    summary = mean_with_interval(values, 500, seed=0)
    assert summary['estimate'] == pytest.approx(0.35)
    assert 0.1 < summary['ci95'][0] < 0.35 < summary['ci95'][1] < 0.6
    assert mean_with_interval(values[:1], 500, seed=0)['ci95'] is None


def test_target_maps_by_hand():
    h = target_map('gradient_h', 3, 5)
    assert h[0].tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1]) and torch.equal(h[0], h[2])
    v = target_map('gradient_v', 3, 5)
    assert v[:, 0].tolist() == pytest.approx([0, 0.5, 1])
    g = target_map('gaussian', 5, 5)
    assert g[2, 2] == 1 and g[0, 0] == 0 and g[0, 2] == g[2, 0]
    stripes = target_map('stripes_h', 11, 4)   # 2.5 periods over 10 steps: period 4 rows
    assert stripes[:, 0].tolist() == pytest.approx([1, .5, 0, .5, 1, .5, 0, .5, 1, .5, 0],
                                                   abs=1e-6)
    assert torch.equal(target_map('stripes_v', 4, 11), stripes.t())
    with pytest.raises(ValueError, match="unknown target map 'diagonal'; choose among"):
        target_map('diagonal', 4, 4)


def test_posenet_is_the_authors_decoder():
    """Concatenate, one 3x3 convolution without padding, BN, sigmoid, bilinear upsampling."""
    torch.manual_seed(0)
    readout = build_readout('posenet', [5, 3], (8, 12), (32, 64)).eval()
    with torch.no_grad():
        readout.norm.running_mean.fill_(0.2)
        readout.norm.running_var.fill_(1.7)
    features = [torch.randn(2, 5, 8, 12), torch.randn(2, 3, 8, 12)]
    weight = torch.cat([conv.weight for conv in readout.convs], dim=1)
    expected = F.conv2d(torch.cat(features, 1), weight, readout.bias)
    expected = torch.sigmoid((expected - 0.2) / torch.sqrt(torch.tensor(1.7 + 1e-5)))
    expected = F.interpolate(expected, (32, 64), mode='bilinear', align_corners=False)
    assert torch.allclose(readout(features), expected, atol=1e-5)


# ----------------------------------------------------------------------------- known answers
@pytest.mark.slow
def test_coordinate_channels_give_spc_near_one_on_gradients(tmp_path, image_folders):
    model = build_segmentor(dict(type='ReadoutTestCoordinateNet'), channels=5)
    result = readout_model(model, Config(), options(
        tmp_path, image_folders, targets=['gradient_h', 'gradient_v']))
    for target in ('gradient_h', 'gradient_v'):
        for kind in ('natural', 'black', 'white', 'noise'):
            assert score(result, 'trained', target, kind)['spc']['estimate'] > 0.99, (target, kind)
    assert osp.isfile(tmp_path / 'work' / 'readout.png')


def test_translation_equivariant_backbone_gives_spc_zero_on_black_and_white(
        tmp_path, image_folders):
    model = build_segmentor(dict(type='ReadoutTestCircularNet'), channels=8)
    result = readout_model(model, Config(), options(
        tmp_path, image_folders, targets=['gradient_h', 'gradient_v']))
    for target in ('gradient_h', 'gradient_v'):
        for kind in ('black', 'white'):
            entry = score(result, 'trained', target, kind)
            assert entry['constant'] == 1 and entry['spc']['estimate'] == 0.0, (target, kind)


def test_zero_padding_lets_the_same_weights_see_the_border(tmp_path, image_folders):
    model = build_segmentor(dict(type='ReadoutTestCircularNet'), channels=8)
    result = readout_model(model, Config(), options(
        tmp_path, image_folders, targets=['gradient_h'], paddings=['zero'],
        train_inputs=['natural', 'black', 'white']))
    black = score(result, 'trained_zero', 'gradient_h', 'black')
    assert black['constant'] == 0 and black['spc']['estimate'] > 0.3


# ----------------------------------------------------------------------------- runs and errors
def test_seeded_and_resumable(tmp_path, image_folders, monkeypatch):
    model = build_segmentor(dict(type='ReadoutTestCircularNet'), channels=8)
    opts = options(tmp_path, image_folders, targets=['gaussian'], epochs=3)
    first = readout_model(model, Config(), opts)
    again = readout_model(model, Config(), options(tmp_path / 'b', image_folders,
                                                   targets=['gaussian'], epochs=3))
    assert first['rows'][0]['scores'] == again['rows'][0]['scores']

    def no_training(*args, **kwargs):
        raise AssertionError('a finished read-out was trained again')

    monkeypatch.setattr(readout_run, 'fit_readout', no_training)
    kept = readout_model(model, Config(), opts.__class__(**dict(vars(opts), resume=True)))
    assert kept['rows'][0]['scores'] == first['rows'][0]['scores']
    with pytest.raises(ValueError, match='--resume refused: .* epochs|--resume refused'):
        readout_model(model, Config(), opts.__class__(**dict(vars(opts), resume=True, epochs=4)))


@pytest.mark.parametrize('change, message', [
    (dict(layers=['backbone.nope']), "Unknown layer 'backbone.nope'"),
    (dict(targets=['gradient_h', 'spiral']), "unknown target map 'spiral'"),
    (dict(images='EMPTY'), 'holds no image'),
    (dict(test_images='TRAIN'), 'both training and held-out images'),
])
def test_bad_input_fails_in_one_line_before_training(tmp_path, image_folders, monkeypatch,
                                                     change, message):
    model = build_segmentor(dict(type='ReadoutTestCoordinateNet'), channels=5)
    (tmp_path / 'empty').mkdir()
    values = {k: (str(tmp_path / 'empty') if v == 'EMPTY' else image_folders[0] if v == 'TRAIN'
                  else v) for k, v in change.items()}
    monkeypatch.setattr(readout_run, 'layer_features', lambda *a, **k: pytest.fail('ran'))
    with pytest.raises(ValueError, match=message) as error:
        readout_model(model, Config(), options(tmp_path, image_folders, **values))
    assert '\n' not in str(error.value)


def test_cli_refuses_an_unknown_target_before_loading(capsys):
    tool = load_tool('position_readout')
    assert tool.main(['missing.py', 'missing.pth', '--targets', 'spiral']) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown target map 'spiral'") and '\n' not in err


def test_a_folder_of_the_users_is_refused_as_work_dir(tmp_path, image_folders):
    model = build_segmentor(dict(type='ReadoutTestCoordinateNet'), channels=5)
    (tmp_path / 'work').mkdir()
    (tmp_path / 'work' / 'notes.md').write_text('mine')
    with pytest.raises(ValueError, match='is not empty and posattack did not write it'):
        readout_model(model, Config(), options(tmp_path, image_folders))
    assert (tmp_path / 'work' / 'notes.md').read_text() == 'mine'
