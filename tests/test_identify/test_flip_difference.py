"""Flip-difference identification against hand-computed scores, and tools/identify.py end to end.

The toy model's channels read the grey image g through fixed position weights, so the flip
differences of its pooled activations follow by hand. On a 4x8 image that is b inside the
top-left 2x4 block and 0 elsewhere:

* channel 0, g (content):                 h-diff 0,       v-diff 0
* channel 1, g * (W-1-col)/(W-1) (left):   h-diff b/7,     v-diff 0
* channel 2, g * (H-1-row)/(H-1) (top):    h-diff 0,       v-diff b/6
* channel 3, 0.5 * g * col/(W-1) (right):  h-diff -b/14,   v-diff 0
* channel 4, 0.5 * g * row/(H-1) (bottom): h-diff 0,       v-diff -b/12

e.g. channel 1: the block's ramp weights sum to 2*(7+6+5+4)/7 = 44/7, flipped 2*(3+2+1+0)/7 =
12/7, so z(x) - z(hflip x) = b*(44/7 - 12/7)/32 = b/7.
"""
from __future__ import annotations

import hashlib
import json
import os.path as osp
import shutil

import pytest
import torch
from helpers import load_tool
from torch import nn

from posattack.channels.forward import forward_to_layer
from posattack.channels.ranking import ChannelRanking
from posattack.data.dataloader import build_split_dataloader
from posattack.identify import FlipDifferenceAccumulator, flip_images, identify_channels


# ----------------------------------------------------------------------------- toy model
class RampFeatures(nn.Module):
    def forward(self, x):
        g = x.mean(1, keepdim=True)
        height, width = g.shape[-2:]
        cols = torch.arange(width, dtype=g.dtype)
        rows = torch.arange(height, dtype=g.dtype)
        left = ((width - 1 - cols) / (width - 1)).view(1, 1, 1, width)
        top = ((height - 1 - rows) / (height - 1)).view(1, 1, height, 1)
        return torch.cat([g, g * left, g * top, 0.5 * g * (1 - left), 0.5 * g * (1 - top)], 1)


class ToyBackbone(nn.Module):
    out_indices = (0,)

    def __init__(self):
        super().__init__()
        self.stem = RampFeatures()

    def forward(self, x):
        return (self.stem(x),)


class ExpensiveHead(nn.Module):
    in_index = 0

    def forward(self, feats):
        raise AssertionError('identification must not run the decode head')


class ToySegmentor(nn.Module):
    """Shaped like mmseg's EncoderDecoder: data_preprocessor, backbone tuple, extract_feat."""

    def __init__(self):
        super().__init__()
        from mmseg.models import SegDataPreProcessor
        self.data_preprocessor = SegDataPreProcessor()
        self.backbone = ToyBackbone()
        self.decode_head = ExpensiveHead()

    def extract_feat(self, inputs):
        return self.backbone(inputs)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.decode_head(self.extract_feat(inputs))


def blob_image(brightness, height=4, width=8, corner='top-left'):
    image = torch.zeros(3, height, width)
    cols = slice(0, width // 2) if corner == 'top-left' else slice(width // 2, width)
    image[:, :2, cols] = brightness
    return image


def mmseg_batch(images):
    from mmseg.structures import SegDataSample
    samples = [SegDataSample(metainfo=dict(img_shape=tuple(im.shape[-2:]),
                                           ori_shape=tuple(im.shape[-2:]))) for im in images]
    return dict(inputs=list(images), data_samples=samples)


def assert_scores(ranking, expected, atol=1e-6):
    for key, values in expected.items():
        torch.testing.assert_close(torch.tensor(ranking.scores[key], dtype=torch.float64),
                                   torch.tensor(values, dtype=torch.float64), atol=atol, rtol=0)


# ------------------------------------------------------------------ hand-computed scores
def test_position_detectors_lead_their_orders():
    loader = [mmseg_batch([blob_image(1.0), blob_image(2.0)])]
    ranking = identify_channels(ToySegmentor(), loader, progress=False)
    b = 1.5  # mean brightness of the two images
    assert_scores(ranking, {
        'overall': [0, b / 7, 0, b / 14, 0],
        'horizontal': [0, b / 7, 0, -b / 14, 0],
        'vertical': [0, 0, b / 6, 0, -b / 12],
    })
    assert ranking.layer == 'backbone:0' and ranking.num_images == 2
    assert ranking.method == 'flip_difference'
    assert ranking.regions == ['overall', 'left', 'right', 'top', 'bottom']
    assert ranking.top('overall', num_channels=2) == [1, 3]
    assert ranking.orders['left'][0] == 1 and ranking.orders['left'][-1] == 3
    assert ranking.orders['right'][0] == 3 and ranking.orders['right'][-1] == 1
    assert ranking.orders['top'][0] == 2 and ranking.orders['top'][-1] == 4
    assert ranking.orders['bottom'][0] == 4 and ranking.orders['bottom'][-1] == 2
    assert ranking.model['tensor_shape'] == [5, 4, 8]


def test_overall_is_mean_of_absolute_not_absolute_of_mean():
    loader = [mmseg_batch([blob_image(1.0), blob_image(1.0, corner='top-right')])]
    ranking = identify_channels(ToySegmentor(), loader, progress=False, vertical=False)
    # channel 1: +1/7 on one image, -1/7 on the other
    assert ranking.scores['overall'][1] == pytest.approx(1 / 7, abs=1e-6)
    assert ranking.scores['horizontal'][1] == pytest.approx(0, abs=1e-6)
    assert ranking.regions == ['overall', 'left', 'right'] and 'vertical' not in ranking.scores


def test_content_channel_scores_zero_on_random_images():
    torch.manual_seed(0)
    loader = [mmseg_batch([torch.rand(3, 4, 8) for _ in range(3)]) for _ in range(2)]
    ranking = identify_channels(ToySegmentor(), loader, progress=False)
    assert ranking.scores['overall'][0] < 1e-6
    assert ranking.scores['overall'][1] > 1e-3
    assert ranking.num_images == 6


def test_layer_names_and_bare_modules_agree():
    images = [blob_image(1.0), blob_image(2.0)]
    reference = identify_channels(ToySegmentor(), [mmseg_batch(images)], progress=False)
    by_module = identify_channels(ToySegmentor(), [mmseg_batch(images)], layer='backbone.stem',
                                  progress=False)
    bare = identify_channels(nn.Sequential(RampFeatures()), [torch.stack(images)], layer='0',
                             progress=False)
    for other in (by_module, bare):
        assert other.orders['overall'][:2] == reference.orders['overall'][:2]
        assert_scores(other, reference.scores)
    assert by_module.layer == 'backbone.stem' and bare.layer == '0'


def test_num_images_caps_across_batches():
    loader = [mmseg_batch([blob_image(1.0), blob_image(2.0)]), mmseg_batch([blob_image(4.0)])]
    two = identify_channels(ToySegmentor(), loader, num_images=2, progress=False)
    assert two.num_images == 2
    assert two.scores['horizontal'][1] == pytest.approx(1.5 / 7, abs=1e-6)
    three = identify_channels(ToySegmentor(), loader, num_images=10, progress=False)
    assert three.num_images == 3
    assert three.scores['horizontal'][1] == pytest.approx(7 / 3 / 7, abs=1e-6)
    with pytest.raises(ValueError, match='num_images'):
        identify_channels(ToySegmentor(), loader, num_images=0, progress=False)


def test_mixed_image_sizes_in_one_batch():
    # 4x8: channel 1 h-diff = 1/7; 6x8: the same block over 48 pixels, (32/7)/48 = 2/21.
    loader = [mmseg_batch([blob_image(1.0), blob_image(1.0, height=6)])]
    ranking = identify_channels(ToySegmentor(), loader, progress=False)
    assert ranking.num_images == 2
    assert ranking.scores['horizontal'][1] == pytest.approx((1 / 7 + 2 / 21) / 2, abs=1e-6)


def test_flip_images_keeps_padding_in_place():
    image = torch.arange(6.).view(1, 1, 2, 3)
    padded = torch.full((1, 1, 3, 4), -1.)
    padded[..., :2, :3] = image
    hflip, vflip = flip_images(padded, [(2, 3)])
    assert hflip[0, 0].tolist() == [[2, 1, 0, -1], [5, 4, 3, -1], [-1, -1, -1, -1]]
    assert vflip[0, 0].tolist() == [[3, 4, 5, -1], [0, 1, 2, -1], [-1, -1, -1, -1]]
    hflip, vflip = flip_images(image)
    assert hflip[0, 0].tolist() == [[2, 1, 0], [5, 4, 3]]


def test_layer_never_reached_is_an_error():
    model = ToySegmentor()
    model.decode_head = nn.Identity()  # a head that may run: the forward goes through it
    model.auxiliary_head = nn.Conv2d(5, 2, 1)  # exists but is not on the inference path
    with pytest.raises(RuntimeError, match='did not run'):
        forward_to_layer(model, 'auxiliary_head', torch.zeros(1, 3, 4, 8))


def test_non_finite_activations_are_refused_not_ranked():
    """NaN scores would sort anywhere, and the ranking would look like any other."""
    image = blob_image(1.0)
    image[0, 1, 2] = float('nan')
    with pytest.raises(ValueError, match='z holds NaN or infinite values: the model output '
                       'is not finite'):
        identify_channels(ToySegmentor(), [mmseg_batch([image])], progress=False)


def test_empty_loader_is_an_error():
    with pytest.raises(ValueError, match='no images'):
        identify_channels(ToySegmentor(), [], progress=False)


# --------------------------------------------------------------------------- accumulator
def test_accumulator_by_hand():
    acc = FlipDifferenceAccumulator(2)
    acc.update(torch.tensor([[1., 2.]]), torch.tensor([[0., 3.]]))
    acc.update(torch.tensor([[3., 4.]]), torch.tensor([[3., 1.]]))
    # differences [1, -1] and [0, 3]
    assert acc.count == 2 and acc.vertical_count == 0
    assert acc.scores() == {'overall': [0.5, 2.0], 'horizontal': [0.5, 1.0]}
    ranking = acc.to_ranking('backbone:3', {'config': 'x.py'})
    assert ranking.orders == {'overall': [1, 0], 'left': [1, 0], 'right': [0, 1]}
    assert ranking.model == {'config': 'x.py'} and ranking.num_images == 2

    other = FlipDifferenceAccumulator(2)
    other.update(torch.tensor([[1., 2.]]), torch.tensor([[0., 3.]]))
    rest = FlipDifferenceAccumulator(2)
    rest.update(torch.tensor([[3., 4.]]), torch.tensor([[3., 1.]]))
    assert other.merge(rest).all_reduce().scores() == acc.scores()  # all_reduce: no-op alone


def test_accumulator_ties_follow_channel_ids():
    acc = FlipDifferenceAccumulator(4)
    acc.update(torch.tensor([[1., 1., 1., 1.]]), torch.tensor([[1., 0., 1., 0.]]),
               torch.tensor([[1., 1., 1., 1.]]))
    ranking = acc.to_ranking('x')
    assert ranking.orders['overall'] == [1, 3, 0, 2]
    assert ranking.orders['right'] == [0, 2, 1, 3]
    assert ranking.orders['top'] == [0, 1, 2, 3] == ranking.orders['bottom']


def test_accumulator_rejects_bad_input():
    acc = FlipDifferenceAccumulator(3)
    with pytest.raises(ValueError, match=r'\(B, 3\)'):
        acc.update(torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match='same shape'):
        acc.update(torch.zeros(2, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match='NaN'):
        acc.update(torch.full((1, 3), float('nan')), torch.zeros(1, 3))
    with pytest.raises(ValueError, match='No images'):
        acc.to_ranking('x')
    acc.update(torch.zeros(1, 3), torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match='every batch or for none'):
        acc.update(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match='positive integer'):
        FlipDifferenceAccumulator(0)


# ------------------------------------------------------------------------ the demo model
def test_demo_model_matches_direct_computation(demo_cfg, tiny_segmentor):
    loader = build_split_dataloader(demo_cfg, 'val')
    ranking = identify_channels(tiny_segmentor, loader, progress=False)
    # Independent: the backbone on each flip, pooled by hand, no hooks.
    diffs_h, diffs_v = [], []
    with torch.no_grad():
        for data in build_split_dataloader(demo_cfg, 'val', batch_size=1):
            x = tiny_segmentor.data_preprocessor(data, False)['inputs']
            pooled = [tiny_segmentor.backbone(v)[3].mean((2, 3)).double()
                      for v in (x, x.flip(-1), x.flip(-2))]
            diffs_h.append(pooled[0] - pooled[1])
            diffs_v.append(pooled[0] - pooled[2])
    diffs_h, diffs_v = torch.cat(diffs_h), torch.cat(diffs_v)
    assert ranking.num_images == 4 and ranking.num_channels == 128
    assert ranking.layer == 'backbone:3'
    assert ranking.model['tensor_shape'] == [128, 8, 16]
    assert_scores(ranking, {'overall': diffs_h.abs().mean(0).tolist(),
                            'horizontal': diffs_h.mean(0).tolist(),
                            'vertical': diffs_v.mean(0).tolist()}, atol=1e-5)
    assert max(ranking.scores['overall']) > 1e-4  # random weights, zero padding: not trivial


def load_cli():
    return load_tool('identify')


@pytest.fixture
def cli_inputs(tmp_path, demo_cfg, tiny_segmentor):
    config = tmp_path / 'demo_config.py'
    demo_cfg.dump(str(config))
    checkpoint = tmp_path / 'random_weights.pth'
    torch.save({'state_dict': tiny_segmentor.state_dict(), 'meta': {}}, checkpoint)
    return str(config), str(checkpoint)


def test_cli_end_to_end(tmp_path, cli_inputs, demo_cfg, tiny_segmentor):
    config, checkpoint = cli_inputs
    out = tmp_path / 'out' / 'ranking.json'
    written = load_cli().main([config, checkpoint, '--out', str(out), '--num-images', '3',
                               '--batch-size', '2'])
    assert osp.samefile(written, out)
    data = json.loads(out.read_text())
    assert data['format'] == 'posattack.ranking/1' and data['num_images'] == 3
    ranking = ChannelRanking.load(out)
    assert ranking.num_channels == 128 and ranking.layer == 'backbone:3'
    assert ranking.regions == ['overall', 'left', 'right', 'top', 'bottom']
    with open(checkpoint, 'rb') as handle:
        assert ranking.model['checkpoint_sha256'] == hashlib.sha256(handle.read()).hexdigest()
    assert ranking.model['split'] == 'val' and ranking.model['tensor_shape'] == [128, 8, 16]
    # The checkpoint reproduces the in-memory model: same scores as identifying directly.
    direct = identify_channels(tiny_segmentor, build_split_dataloader(demo_cfg, 'val'),
                               num_images=3, progress=False)
    assert_scores(ranking, direct.scores, atol=1e-5)


def test_cli_train_split_uses_test_pipeline(tmp_path, cli_inputs):
    config, checkpoint = cli_inputs
    out = tmp_path / 'train.json'
    load_cli().main([config, checkpoint, '--out', str(out), '--split', 'train',
                     '--layer', 'backbone:2', '--no-vertical'])
    ranking = ChannelRanking.load(out)
    assert ranking.num_images == 4 and ranking.num_channels == 64
    assert ranking.regions == ['overall', 'left', 'right'] and ranking.model['split'] == 'train'


@pytest.mark.parametrize('layer, error, message', [
    ('backbone.layr4', ValueError, 'backbone.layer4'),
    ('backbone:7', IndexError, 'returns 4 tensors'),
])
def test_cli_bad_layer(tmp_path, cli_inputs, layer, error, message):
    config, checkpoint = cli_inputs
    out = tmp_path / 'ranking.json'
    with pytest.raises(error, match=message):
        load_cli().main([config, checkpoint, '--out', str(out), '--layer', layer])
    assert not out.exists()


def test_cli_empty_dataset(tmp_path, cli_inputs):
    config, checkpoint = cli_inputs
    empty = tmp_path / 'empty_root'
    (empty / 'leftImg8bit' / 'val').mkdir(parents=True)
    (empty / 'gtFine' / 'val').mkdir(parents=True)
    out = tmp_path / 'ranking.json'
    with pytest.raises(ValueError, match='empty'):
        load_cli().main([config, checkpoint, '--out', str(out), '--cfg-options',
                         f'val_dataloader.dataset.data_root={empty}'])
    assert not out.exists()


def test_cli_unreadable_image_is_named(tmp_path, cli_inputs, synthetic_root):
    config, checkpoint = cli_inputs
    root = tmp_path / 'copy'
    shutil.copytree(synthetic_root, root)
    broken = sorted((root / 'leftImg8bit' / 'val').rglob('*_leftImg8bit.png'))[1]
    broken.write_bytes(b'not a png')
    out = tmp_path / 'ranking.json'
    with pytest.raises(RuntimeError, match=broken.name):
        load_cli().main([config, checkpoint, '--out', str(out), '--cfg-options',
                         f'val_dataloader.dataset.data_root={root}'])
    assert not out.exists()
