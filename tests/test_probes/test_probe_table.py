"""Position probes: padding switch, grid data, GAPNet / PermuteNet, Table 1 runs, frozen probe.

Independent expectations: hand-placed canvases and hand-made Cityscapes crops with known
majority classes, convolutions computed with torch's functional padding, GAPNet's 1x1 read-out
computed as a linear map of pooled channels, and the orderings the paper reports (Islam et
al., ICCV 2021, Table 1) reproduced at a reduced scale with MMEngine's Runner.
"""
from __future__ import annotations

import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import REPO_ROOT, one_torch_thread  # noqa: F401  (one_torch_thread: a fixture)
from torch import nn

import posattack.probes  # noqa: F401 - registers GAPNet, PermuteNet, GridPatchDataset, ...
from posattack.channels import ChannelRemoval, select_channels
from posattack.channels.ranking import ChannelRanking
from posattack.identify.grid_probe import (build_probe_datasets, frozen_grid_probe,
                                           grid_probe_ranking, segmentor_normalization)
from posattack.probes.accuracy import ProbeAccuracy, accuracy_summary
from posattack.probes.grid_data import (GridPatchDataset, PackGridInputs, PlacePatchInGrid,
                                        cell_names, crop_cityscapes_patches, load_patch_folder)
from posattack.probes.models import GAPNet, PermuteNet, shuffle_channels
from posattack.probes.padding import padding_modes, set_padding_mode
from posattack.probes.table import (configure_probe, format_runs, format_table1, load_results,
                                    network_label, row_key, run_probe, run_table)

PROBE_CONFIG = osp.join(REPO_ROOT, 'configs', 'probes',
                        'gapnet_r18-w16_grid3-location_synthetic.py')
TINY_BACKBONE = dict(type='ResNetV1c', depth=18, base_channels=8, stem_channels=8, num_stages=4,
                     out_indices=(3, ), norm_cfg=dict(type='BN', requires_grad=True))



@pytest.fixture(autouse=True)
def mmseg_scope():
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')


def _build(cfg):
    from mmseg.registry import MODELS
    return MODELS.build(cfg)


# ----------------------------------------------------------------------------- padding
def _padded_convs(module):
    return [
        m for m in module.modules() if isinstance(m, nn.Conv2d) and any(p > 0 for p in m.padding)
    ]


@pytest.mark.parametrize('mode, torch_mode', [('reflect', 'reflect'), ('replicate', 'replicate'),
                                              ('zero', 'zeros')])
def test_padding_mode_reaches_every_padded_conv_of_a_resnet(mode, torch_mode):
    backbone = _build(TINY_BACKBONE)
    padded = _padded_convs(backbone)
    unpadded = [m for m in backbone.modules() if isinstance(m, nn.Conv2d) and m not in padded]
    assert len(padded) == 19 and unpadded  # 3 stem + 16 block convs; 1x1 shortcuts unpadded

    assert set_padding_mode(backbone, mode) == len(padded)
    assert {m.padding_mode for m in padded} == {torch_mode}
    assert {m.padding_mode for m in unpadded} == {'zeros'}
    assert padding_modes(backbone) == {mode: len(padded)}


def test_padding_mode_changes_the_convolution_as_functional_padding_does():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 6, 7)
    zero_output = conv(x)
    for mode in ('reflect', 'replicate'):
        set_padding_mode(conv, mode)
        expected = F.conv2d(F.pad(x, (1, 1, 1, 1), mode=mode), conv.weight, conv.bias)
        assert torch.allclose(conv(x), expected, atol=1e-6)
        assert not torch.allclose(conv(x), zero_output, atol=1e-4)
    set_padding_mode(conv, 'zero')
    assert torch.allclose(conv(x), zero_output)


def test_padding_mode_on_mmcv_convmodule_backbones():
    from mmcv.cnn import ConvModule

    # ConvModule with a native padding: the inner nn.Conv2d gets the mode (mmseg MobileNetV2)
    backbone = _build(dict(type='MobileNetV2', widen_factor=0.25, out_indices=(6, )))
    padded = _padded_convs(backbone)
    x = torch.randn(1, 3, 32, 32)
    backbone.eval()
    before = backbone(x)[0]
    assert set_padding_mode(backbone, 'replicate') == len(padded) > 10
    assert padding_modes(backbone) == {'replicate': len(padded)}
    assert not torch.allclose(backbone(x)[0], before)

    # ConvModule built with an explicit padding layer: the layer is swapped
    torch.manual_seed(0)
    module = ConvModule(3, 4, 3, padding=1, padding_mode='reflect', norm_cfg=None, act_cfg=None)
    x = torch.randn(1, 3, 5, 5)
    assert torch.allclose(module(x), F.conv2d(F.pad(x, (1, 1, 1, 1), mode='reflect'),
                                              module.conv.weight, module.conv.bias), atol=1e-6)
    assert set_padding_mode(module, 'zero') == 1 and padding_modes(module) == {'zero': 1}
    assert torch.allclose(module(x), F.conv2d(x, module.conv.weight, module.conv.bias, padding=1),
                          atol=1e-6)


def test_padding_mode_bad_input():
    from mmcv.cnn.bricks.conv2d_adaptive_padding import Conv2dAdaptivePadding

    with pytest.raises(ValueError, match="Unknown padding mode 'circle'.*'zero', 'reflect'"):
        set_padding_mode(nn.Conv2d(1, 1, 3, padding=1), 'circle')
    net = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), Conv2dAdaptivePadding(3, 3, 3))
    with pytest.raises(ValueError,
                       match=r"Cannot switch to 'reflect'.*1 \(Conv2dAdaptivePadding\)"):
        set_padding_mode(net, 'reflect')
    assert set_padding_mode(net, 'zero') == 1  # zero is what it does anyway


# ----------------------------------------------------------------------------- grid data
def test_place_patch_in_grid_by_hand():
    patch = np.zeros((2, 2, 3), np.uint8)
    patch[..., 0], patch[..., 1], patch[..., 2] = 10, 20, 30
    patch[0, 0] = (50, 60, 70)
    place = PlacePatchInGrid(mean=(10, 20, 30), std=(2, 4, 5))
    out = place(dict(patch=patch, cell=5, grid_size=3, cell_size=4))  # row 1, col 2
    canvas = out['img']
    assert canvas.shape == (12, 12, 3) and canvas.dtype == np.float32
    # centred in cell (1, 2): rows 4+1..4+2, cols 8+1..8+2; (50-10)/2, (60-20)/4, (70-30)/5
    assert canvas[5, 9].tolist() == [20.0, 10.0, 8.0]
    assert np.count_nonzero(canvas) == 3  # everything else normalises to exactly zero
    bgr = PlacePatchInGrid(mean=(30, 20, 10), std=(5, 4, 2), to_bgr=True)(
        dict(patch=patch, cell=5, grid_size=3, cell_size=4))['img']
    assert bgr[5, 9].tolist() == [8.0, 10.0, 20.0]
    packed = PackGridInputs()(dict(out, gt_label=5))
    assert packed['inputs'].shape == (3, 12, 12) and packed['data_samples'] == 5
    with pytest.raises(ValueError, match='does not fit a grid cell'):
        place(dict(patch=np.zeros((5, 5, 3), np.uint8), cell=0, grid_size=3, cell_size=4))


@pytest.fixture(scope='module')
def hand_cityscapes(tmp_path_factory):
    """Two 32x64 scenes in the Cityscapes layout whose 16x16 crops have known majority classes.

    Scene 0: train ids road (0) on the left half, vegetation (8) on the right half except a
    car (13) block covering 3/4 of the crop at rows 16..32, cols 48..64. Scene 1 (city 2):
    all sky (10), with the top-left crop half ignored (255) and half sky.
    """
    root = tmp_path_factory.mktemp('hand_cityscapes')
    scenes = []
    ids = np.zeros((32, 64), np.uint8)
    ids[:, 32:] = 8
    ids[16:, 52:] = 13  # 12 of 16 columns of the last bottom crop
    scenes.append(('aachen', ids))
    ids = np.full((32, 64), 10, np.uint8)
    ids[:8, :16] = 255
    scenes.append(('bochum', ids))
    for index, (city, train_ids) in enumerate(scenes):
        stem = f'{city}_{index:06d}_000019'
        image_dir = root / 'leftImg8bit' / 'train' / city
        label_dir = root / 'gtFine' / 'train' / city
        image_dir.mkdir(parents=True)
        label_dir.mkdir(parents=True)
        image = np.stack([train_ids * 10, train_ids * 5, np.full_like(train_ids, 7)], axis=-1)
        cv2.imwrite(str(image_dir / f'{stem}_leftImg8bit.png'), image[..., ::-1])  # RGB on disk
        cv2.imwrite(str(label_dir / f'{stem}_gtFine_labelTrainIds.png'), train_ids)
    return root


def test_cityscapes_crops_carry_their_majority_class(hand_cityscapes):
    patches = crop_cityscapes_patches(hand_cityscapes, 'train', patch_size=16)
    # scene 0: 2 rows x 4 crops: road road veg veg / road road veg car; scene 1: 8 x sky
    # (the half-ignored crop is still sky: 128 of 256 pixels >= 50 %)
    assert patches.labels.tolist() == [0, 0, 8, 8, 0, 0, 8, 13] + [10] * 8
    assert patches.patches.shape == (16, 16, 16, 3)
    assert patches.patches[7, 0, 15].tolist() == [130, 65, 7]  # car pixel in RGB order
    assert len(patches.class_names) == 19 and patches.class_names[13] == 'car'

    chosen = crop_cityscapes_patches(hand_cityscapes, 'train', patch_size=8, crop_size=16,
                                     classes=['car', 'road'], min_class_fraction=0.75)
    assert chosen.labels.tolist() == [1, 1, 1, 1, 0] and chosen.patches.shape[1:] == (8, 8, 3)
    assert chosen.class_names == ['car', 'road']
    strict = crop_cityscapes_patches(hand_cityscapes,
                                     'train',
                                     patch_size=16,
                                     min_class_fraction=0.6)
    assert len(strict) == 15  # the half-ignored crop is dropped
    balanced = crop_cityscapes_patches(hand_cityscapes, 'train', 16, max_patches_per_class=2)
    assert sorted(balanced.labels.tolist()) == [0, 0, 8, 8, 10, 10, 13]


def test_grid_dataset_location_and_classification_labels(hand_cityscapes):
    location = GridPatchDataset(grid_size=3, patch_size=16, cityscapes_root=hand_cityscapes,
                                placements_per_patch=9)
    assert len(location) == 16 * 9
    assert location.metainfo['classes'] == tuple(cell_names(3))
    assert location.metainfo['classes'][5] == 'cell_1_2' and location.metainfo['task'] == 'location'
    assert np.bincount(location.labels()).tolist() == [16] * 9  # every cell equally often
    for index in (0, 37, 143):
        sample = location[index]
        label = sample['data_samples']
        row, col = divmod(label, 3)
        mask = sample['inputs'].abs().sum(0) > 0
        assert mask.shape == (48, 48)
        rows, cols = torch.nonzero(mask, as_tuple=True)  # patch pixels lie inside its cell
        assert rows.min() >= 16 * row and rows.max() < 16 * (row + 1)
        assert cols.min() >= 16 * col and cols.max() < 16 * (col + 1)

    every_cell = GridPatchDataset(grid_size=2, patch_size=16, cityscapes_root=hand_cityscapes,
                                  placements_per_patch='all')
    assert every_cell.labels().tolist() == [0, 1, 2, 3] * 16

    classification = GridPatchDataset(grid_size=2, patch_size=16, task='classification',
                                      cityscapes_root=hand_cityscapes, classes=['road', 'car'])
    assert classification.metainfo['classes'] == ('road', 'car')
    assert classification.labels().tolist() == [0, 0, 0, 0, 1]


def test_patch_folders(tmp_path):
    for name, colour in (('cats', 40), ('dogs', 200)):
        (tmp_path / 'labelled' / name).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(tmp_path / 'labelled' / name / f'{i}.png'),
                        np.full((20, 24, 3), colour + i, np.uint8))
    patches = load_patch_folder(tmp_path / 'labelled', patch_size=8)
    assert patches.class_names == ['cats', 'dogs'] and patches.labels.tolist() == [0, 0, 1, 1]
    assert patches.patches.shape == (4, 8, 8, 3) and patches.patches[3, 0, 0, 0] == 201
    dataset = GridPatchDataset(grid_size=2, patch_size=8, cell_size=10, task='classification',
                               patch_dir=str(tmp_path / 'labelled'))
    assert dataset.metainfo['classes'] == ('cats', 'dogs') and dataset[0]['inputs'].shape == (3, 20,
                                                                                              20)

    (tmp_path / 'flat').mkdir()
    cv2.imwrite(str(tmp_path / 'flat' / 'a.jpg'), np.zeros((9, 9, 3), np.uint8))
    assert GridPatchDataset(grid_size=2, patch_size=8,
                            patch_dir=str(tmp_path / 'flat'))[0]['inputs'].shape == (3, 16, 16)
    with pytest.raises(ValueError, match='classification task needs labelled patches'):
        GridPatchDataset(grid_size=2, patch_size=8, task='classification',
                         patch_dir=str(tmp_path / 'flat'))


@pytest.mark.parametrize('kwargs, message', [
    (dict(grid_size=1), 'grid_size must be an integer >= 2'),
    (dict(grid_size=2.5), 'grid_size must be an integer >= 2'),
    (dict(patch_size=20, cell_size=16), 'patch_size 20 is larger than the grid cell'),
    (dict(task='depth'), "Unknown task 'depth'"),
    (dict(placements_per_patch=0), 'placements_per_patch must be a positive integer'),
    (dict(patch_dir='EMPTY'), 'holds no images'),
    (dict(patch_dir='MISSING'), 'Patch folder not found'),
    (dict(patch_dir='MIXED'), 'mixes images'),
    (dict(cityscapes_root=None), 'Give exactly one patch source'),
    (dict(classes=['road', 'spaceship']), "unknown: \\['spaceship'\\]"),
    (dict(classes=['car'], min_class_fraction=1.0), 'No crop of 16x16'),
])
def test_grid_dataset_bad_input(kwargs, message, hand_cityscapes, tmp_path):
    (tmp_path / 'EMPTY').mkdir()
    (tmp_path / 'MIXED' / 'cls').mkdir(parents=True)
    for path in (tmp_path / 'MIXED' / 'a.png', tmp_path / 'MIXED' / 'cls' / 'b.png'):
        cv2.imwrite(str(path), np.zeros((4, 4, 3), np.uint8))
    arguments = dict(grid_size=3, patch_size=16, cityscapes_root=str(hand_cityscapes))
    arguments.update(kwargs)
    if isinstance(arguments.get('patch_dir'), str):
        arguments['patch_dir'] = str(tmp_path / arguments['patch_dir'])
        arguments.pop('cityscapes_root')
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        GridPatchDataset(**arguments)


# ----------------------------------------------------------------------------- models
def test_gapnet_is_a_linear_readout_of_pooled_channels():
    torch.manual_seed(0)
    model = GAPNet(TINY_BACKBONE, num_classes=9).eval()
    x = torch.randn(2, 3, 48, 48)
    features = model.backbone(x)[-1]
    assert model.in_channels == features.shape[1] == 64
    weight = model.class_conv.weight[:, :, 0, 0]
    expected = features.mean(dim=(2, 3)) @ weight.T + model.class_conv.bias
    assert torch.allclose(model(x), expected, atol=1e-5)
    labels = torch.tensor([3, 7])
    losses = model(x, labels, mode='loss')
    assert torch.allclose(losses['loss'], F.cross_entropy(expected, labels), atol=1e-5)
    predictions = model(x, [3, 7], mode='predict')  # pseudo_collate gives a list of ints
    assert [p['gt_label'] for p in predictions] == [3, 7]
    assert [p['pred_label'] for p in predictions] == expected.argmax(1).tolist()


def test_permutenet_shuffles_channels_afresh_for_every_image_and_forward():
    rows = torch.arange(12.).view(2, 6)
    shuffled = shuffle_channels(rows)
    assert sorted(shuffled[0].tolist()) == rows[0].tolist()
    assert sorted(shuffled[1].tolist()) == rows[1].tolist()
    draws = {tuple(shuffle_channels(rows[:1])[0].tolist()) for _ in range(20)}
    assert len(draws) > 10  # 720 permutations: fresh ones

    torch.manual_seed(0)
    model = PermuteNet(TINY_BACKBONE, num_classes=4).eval()
    x = torch.randn(1, 3, 32, 32).repeat(2, 1, 1, 1)  # the same image twice
    pooled = model.backbone(x)[-1].mean(dim=(2, 3))
    logits = model(x)
    assert not torch.allclose(logits[0], logits[1])  # independent permutations per image
    assert not torch.allclose(model(x), logits)  # and per forward, in eval mode too
    control = PermuteNet(TINY_BACKBONE, num_classes=4, shuffle_channels=False).eval()
    control.load_state_dict(model.state_dict())
    assert torch.allclose(control(x), model.fc(pooled), atol=1e-6)
    # the order is all a shuffle changes: an FC with equal weights per class cannot tell
    with torch.no_grad():
        model.fc.weight.copy_(torch.arange(4.).view(4, 1).expand(4, model.in_channels))
    assert torch.allclose(model(x)[0], model(x)[1], atol=1e-4)


def test_permutenet_per_batch_permutation_gives_every_row_the_same_order():
    # row b holds 100*b + (0..5): after a shuffle, subtracting the offsets shows each row's order
    offsets = 100. * torch.arange(8.).view(8, 1)
    rows = offsets + torch.arange(6.)
    orders = shuffle_channels(rows, per='batch') - offsets
    assert (orders == orders[0]).all()  # one order for the whole batch (the authors' choice)
    assert sorted(orders[0].tolist()) == list(range(6))  # still a permutation
    draws = {tuple((shuffle_channels(rows, per='batch') - offsets)[0].tolist()) for _ in range(20)}
    assert len(draws) > 10  # a fresh one at every call
    per_image = shuffle_channels(rows, per='image') - offsets
    assert len({tuple(order.tolist()) for order in per_image}) > 1  # rows differ (else p = 720^-7)
    assert all(sorted(order.tolist()) == list(range(6)) for order in per_image)
    seeded = [shuffle_channels(rows, torch.Generator().manual_seed(3), per='batch')
              for _ in range(2)]
    assert torch.equal(*seeded)
    with pytest.raises(ValueError, match="Unknown permutation kind 'pixel'"):
        shuffle_channels(rows, per='pixel')

    torch.manual_seed(0)
    batch = PermuteNet(TINY_BACKBONE, num_classes=4, permutation='batch').eval()
    image = PermuteNet(TINY_BACKBONE, num_classes=4).eval()
    image.load_state_dict(batch.state_dict())
    assert (batch.permutation, image.permutation) == ('batch', 'image')
    x = torch.randn(1, 3, 32, 32).repeat(3, 1, 1, 1)  # the same image three times
    logits = batch(x)
    assert torch.allclose(logits[0], logits[1]) and torch.allclose(logits[0], logits[2])
    assert not torch.allclose(image(x)[0], image(x)[1])
    assert not torch.allclose(batch(x), logits)  # fresh per forward, in eval mode too
    # each row is the FC of its pooled channels in some order: with equal weights per class
    # (logit k = k * sum of channels) every order gives the same logits
    with torch.no_grad():
        batch.fc.weight.copy_(torch.arange(4.).view(4, 1).expand(4, batch.in_channels))
        pooled = batch.backbone(x)[-1].mean(dim=(2, 3))
    assert torch.allclose(batch(x), batch.fc(pooled), atol=1e-4)
    with pytest.raises(ValueError, match="Unknown permutation 'pixel'"):
        PermuteNet(TINY_BACKBONE, num_classes=4, permutation='pixel')


class TokenBackbone(nn.Module):
    """A backbone giving tokens (B, N, C): nothing to pool over H and W."""

    def forward(self, x):
        return (x.flatten(2).transpose(1, 2), )


@pytest.mark.parametrize('network', [GAPNet, PermuteNet])
def test_probe_models_bad_input(network):
    with pytest.raises(ValueError, match=r'gives shape \(1, 4096, 3\), which cannot be pooled'):
        network(TokenBackbone(), num_classes=4)
    with pytest.raises(ValueError, match='num_classes must be an integer >= 2'):
        network(TINY_BACKBONE, num_classes=1)
    with pytest.raises(ValueError, match='feature_index=3 is out of range'):
        network(TINY_BACKBONE, num_classes=4, feature_index=3)
    model = network(TINY_BACKBONE, num_classes=4, padding='reflect').eval()
    with pytest.raises(ValueError, match="'reflect' padding needs every padded feature map"):
        model(torch.zeros(2, 3, 16, 16))  # stage 3 sees 1x1 maps: nothing to reflect


def test_probe_accuracy_metric_by_hand():
    metric = ProbeAccuracy()
    metric.process({}, [dict(pred_label=1, gt_label=1), dict(pred_label=0, gt_label=1)])
    metric.process({}, [dict(pred_label=2, gt_label=2), dict(pred_label=2, gt_label=0)])
    results = metric.compute_metrics(metric.results)
    # 2 of 4 right; per class: 0 -> 0/1, 1 -> 1/2, 2 -> 1/1
    assert results == {'accuracy': 50.0, 'mean_class_accuracy': pytest.approx(50.0),
                       'num_samples': 4}
    assert accuracy_summary([0, 1], [1, 1])['mean_class_accuracy'] == 50.0
    with pytest.raises(ValueError, match='needs ground-truth labels'):
        metric.process({}, [dict(pred_label=1, gt_label=None)])


# ----------------------------------------------------------------------------- frozen probe
class CellEnergyBackbone(nn.Module):
    """Channel CELL_CHANNELS[k] marks where the input is non-zero inside grid cell k; 3 channels
    are the input's energy everywhere (content, no position). Position is purely channel-wise."""
    out_indices = (0, )

    def __init__(self, grid_size=3):
        super().__init__()
        self.grid_size = grid_size
        self.scale = nn.Parameter(torch.ones(()))  # something to freeze

    def forward(self, x):
        energy = x.abs().mean(1, keepdim=True) * self.scale
        height, width = energy.shape[-2:]
        rows = torch.arange(height) * self.grid_size // height
        cols = torch.arange(width) * self.grid_size // width
        cell_of_pixel = (rows[:, None] * self.grid_size + cols[None, :]).to(x.device)
        present = (energy > 0).float()
        cells = [present * (cell_of_pixel == k) for k in range(self.grid_size ** 2)]
        channels = [None] * 12
        for k, channel in enumerate(CELL_CHANNELS):
            channels[channel] = cells[k]
        for channel in CONTENT_CHANNELS:
            channels[channel] = energy
        return (torch.cat(channels, 1), )


CELL_CHANNELS = [7, 2, 10, 0, 5, 11, 3, 8, 1]  # channel of cell k (row-major)
CONTENT_CHANNELS = [4, 6, 9]


class CellEnergySegmentor(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = CellEnergyBackbone()
        self.decode_head = nn.Module()
        self.decode_head.in_index = 0

    def extract_feat(self, inputs):
        return self.backbone(inputs)


@pytest.mark.slow
def test_frozen_probe_finds_channel_wise_position_and_ranks_each_cell(hand_cityscapes):
    model = CellEnergySegmentor()
    normalization = segmentor_normalization(model)
    assert normalization == {'mean': (0.0, 0.0, 0.0), 'std': (1.0, 1.0, 1.0), 'to_bgr': False}
    pipeline = [PlacePatchInGrid(**normalization), PackGridInputs()]
    train_set = GridPatchDataset(grid_size=3, patch_size=16, cityscapes_root=hand_cityscapes,
                                 placements_per_patch=4, pipeline=pipeline)
    test_set = GridPatchDataset(grid_size=3, patch_size=16, cityscapes_root=hand_cityscapes,
                                placements_per_patch='all', pipeline=pipeline, test_mode=True)
    before = model.backbone.scale.detach().clone()
    result = frozen_grid_probe(model, train_set, test_set, steps=300)

    assert result.layer == 'backbone:0' and result.tensor_shape == [12, 48, 48]
    assert result.gapnet_accuracy == 100.0
    # shuffled, every cell gives the same multiset of channel values: chance (1/9), at most
    assert result.permutenet_accuracy < 30 and result.accuracy_gap > 70
    assert result.chance_accuracy == pytest.approx(100 / 9)
    assert torch.equal(model.backbone.scale, before)  # frozen

    ranking = result.ranking
    assert ranking.method == 'grid_probe' and ranking.num_channels == 12
    assert ranking.regions == ['overall'] + cell_names(3)
    for k, name in enumerate(cell_names(3)):
        assert ranking.top(name, num_channels=1) == [CELL_CHANNELS[k]]
        # the score is the (centred) read-out weight of that cell's output
        weight = result.readouts['gapnet'].conv.weight[k, :, 0, 0]
        assert ranking.scores[name] == pytest.approx(weight.tolist())
    assert sorted(ranking.top('overall', num_channels=9)) == sorted(CELL_CHANNELS)
    assert ranking.model['readout_accuracy']['gapnet'] == 100.0
    assert ranking.model['tensor_shape'] == [12, 48, 48]

    # the removal hook reads cell orders like any other region
    ids = select_channels('targeted', 12, ranking=ranking, region='cell_2_1', num_channels=1)
    assert ids == [CELL_CHANNELS[7]]
    x = torch.randn(1, 3, 48, 48)
    with ChannelRemoval(model, 'backbone:0', ids):
        removed = model.extract_feat(x)[0]
    assert removed[:,
                   CELL_CHANNELS[7]].abs().sum() == 0 and removed[:,
                                                                  CELL_CHANNELS[0]].abs().sum() > 0


def test_probe_datasets_are_normalised_as_the_segmentor_expects(tiny_segmentor, synthetic_root):
    normalization = segmentor_normalization(tiny_segmentor)  # demo: mmseg's mean/std, bgr_to_rgb
    assert normalization == {'mean': pytest.approx((123.675, 116.28, 103.53)),
                             'std': pytest.approx((58.395, 57.12, 57.375)), 'to_bgr': False}
    train_set, test_set = build_probe_datasets(tiny_segmentor, str(synthetic_root), grid_size=2,
                                               patch_size=16, max_patches=50)
    assert (len(train_set), len(test_set)) == (50, 50)
    assert train_set.metainfo['patch_source'].endswith('(train)')
    assert test_set.metainfo['patch_source'].endswith('(val)') and test_set.test_mode
    sample = train_set[0]
    patch = train_set.patch_set.patches[train_set.get_data_info(0)['patch_index']]
    row, col = divmod(sample['data_samples'], 2)
    expected = (patch[0, 0].astype(np.float32) - np.array([123.675, 116.28, 103.53])) / np.array(
        [58.395, 57.12, 57.375])
    assert sample['inputs'][:, 16 * row, 16 * col].numpy() == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match='Give exactly one patch source'):
        build_probe_datasets(tiny_segmentor)
    with pytest.raises(ValueError, match='give test_patch_dir too'):
        build_probe_datasets(tiny_segmentor, patch_dir=str(synthetic_root))


def test_grid_probe_ranking_centres_weights_and_round_trips(tmp_path):
    readout = posattack.identify.grid_probe.GridReadout(torch.zeros(3),
                                                        torch.ones(3),
                                                        num_classes=4)
    with torch.no_grad():
        readout.conv.weight.copy_(
            torch.tensor([[1., 0, 2], [3, 0, 2], [1, 4, 2], [3, 0, 2]])[:, :, None, None])
    x = torch.randn(5, 3)
    before = readout(x)
    readout.centre_weights()  # column means 2, 1, 2 removed: same softmax
    after = readout(x)
    assert not torch.allclose(after, before)
    assert torch.allclose(torch.softmax(after, 1), torch.softmax(before, 1), atol=1e-6)
    ranking = grid_probe_ranking(readout, 'backbone:3', grid_size=2, num_images=5)
    # centred weights: cell_0_0 [-1, -1, 0], cell_0_1 [1, -1, 0], cell_1_0 [-1, 3, 0],
    # cell_1_1 [1, -1, 0]
    assert ranking.scores['cell_0_0'] == [-1.0, -1.0, 0.0]
    assert ranking.orders['cell_0_0'] == [2, 0, 1] and ranking.orders['cell_1_0'] == [1, 2, 0]
    assert ranking.scores['overall'] == pytest.approx([1.0, (12 / 4) ** 0.5, 0.0])
    path = ranking.save(tmp_path / 'probe_ranking.json')
    loaded = ChannelRanking.load(path)
    assert loaded.method == 'grid_probe' and loaded.orders == ranking.orders
    assert loaded.order_rules['cell_1_1'] == {'score': 'cell_1_1', 'descending': True}
    data = json.loads(path.read_text())
    data['orders']['cell_0_0'] = [0, 2, 1]  # no longer sorted by its score
    with pytest.raises(ValueError, match="Order 'cell_0_0' is not sorted descending"):
        ChannelRanking.from_dict(data)
    with pytest.raises(ValueError, match='a 3x3 grid has 9 cells'):
        grid_probe_ranking(readout, 'backbone:3', grid_size=3)


# ----------------------------------------------------------------------------- Table 1, reduced
# The paper trains ResNet-18 for 20 epochs on CIFAR-10 grids; here ResNetV1c-18 at 1/4 width
# trains 50-150 iterations on 16x16 crops of 16 synthetic scenes (seed 0, one CPU thread),
# a few seconds per run. Image classification is reduced to two classes (road, vegetation):
# a PermuteNet can only read class from permutation-invariant statistics of its pooled
# channels, which takes far longer to learn for more classes (see docs/probes.md).
@pytest.fixture(scope='module')
def probe_scenes(tmp_path_factory):
    from posattack.data.synthetic import generate_cityscapes
    root = tmp_path_factory.mktemp('probe_scenes')
    generate_cityscapes(root, num_train=16, num_val=8, size=(64, 128), seed=0)
    return str(root)


def _accuracy(rows, network, task, grid_size):
    return rows[row_key('zero', network, task, grid_size)]['accuracy']


@pytest.mark.slow
@pytest.mark.parametrize('padding', ['zero', 'reflect'])
def test_gapnet_locates_a_patch_on_a_3x3_grid(padding, probe_scenes, tmp_path):
    cfg = configure_probe(PROBE_CONFIG, 'GAPNet', 'location', 3, padding, data_root=probe_scenes,
                          work_dir=str(tmp_path), max_iters=50)
    assert cfg.model.num_classes == 9 and cfg.test_dataloader.dataset.grid_size == 3
    metrics = run_probe(cfg)
    assert metrics['probe/accuracy'] >= 95  # the paper: 100 with every padding
    assert metrics['probe/num_samples'] >= 300


@pytest.mark.slow
def test_permutenet_loses_location_and_the_table_resumes(probe_scenes, tmp_path, monkeypatch):
    rows = run_table(PROBE_CONFIG, tmp_path, paddings=['zero'], grid_sizes=[5],
                     tasks=['location'], data_root=probe_scenes, max_iters=60)
    gapnet, permutenet = (_accuracy(rows, 'GAPNet', 'location', 5),
                          _accuracy(rows, 'PermuteNet', 'location', 5))
    assert gapnet >= permutenet + 15  # the paper: 100 vs 37.8
    assert gapnet >= 90 and permutenet <= 40

    saved = load_results(tmp_path / 'results.json')
    assert saved == json.loads(json.dumps(rows))
    assert saved[row_key('zero', 'GAPNet', 'location', 5)]['num_classes'] == 25
    table = (tmp_path / 'table.md').read_text()
    assert f'| zero | GAPNet | – (100) | {gapnet:.1f} (100) | – (100) |' in table
    assert f'| zero | PermuteNet | – (78.8) | {permutenet:.1f} (37.8) | – (21.4) |' in table
    assert list(tmp_path.glob('.*.tmp')) == []

    def must_not_run(cfg):
        raise AssertionError('a finished row was trained again')
    monkeypatch.setattr('posattack.probes.table.run_probe', must_not_run)
    again = run_table(PROBE_CONFIG, tmp_path, paddings=['zero'], grid_sizes=[5],
                      tasks=['location'], data_root=probe_scenes, max_iters=60)
    assert again == saved
    with pytest.raises(AssertionError, match='trained again'):  # other settings: a new run
        run_table(PROBE_CONFIG, tmp_path, paddings=['zero'], grid_sizes=[5],
                  tasks=['location'], data_root=probe_scenes, max_iters=61)


@pytest.mark.slow
def test_permutenet_keeps_image_classification(probe_scenes, tmp_path):
    rows = run_table(PROBE_CONFIG, tmp_path, paddings=['zero'], grid_sizes=[3],
                     tasks=['classification'], data_root=probe_scenes, max_iters=150,
                     cfg_options={'classification_classes': ['road', 'vegetation']})
    gapnet, permutenet = (_accuracy(rows, 'GAPNet', 'classification', 3),
                          _accuracy(rows, 'PermuteNet', 'classification', 3))
    assert rows[row_key('zero', 'PermuteNet', 'classification', 3)]['num_classes'] == 2
    assert gapnet >= 90
    assert permutenet >= gapnet - 10  # the paper: 73.6 vs 82.6


def test_configure_probe_switches_network_task_and_schedule(tmp_path):
    cfg = configure_probe(PROBE_CONFIG, 'PermuteNet', 'classification', 7, 'replicate',
                          data_root='/data/cs', max_iters=50, seed=3)
    assert cfg.model.type == 'PermuteNet' and cfg.model.padding == 'replicate'
    assert cfg.model.num_classes == len(cfg.classification_classes) == 6
    for dataset in (cfg.train_dataloader.dataset, cfg.test_dataloader.dataset):
        assert dataset.grid_size == 7 and dataset.task == 'classification'
        assert dataset.cityscapes_root == '/data/cs'
        assert dataset.classes == cfg.classification_classes
    assert cfg.train_cfg.max_iters == 50 and cfg.randomness.seed == 3
    warmup, decay = cfg.param_scheduler
    assert (warmup.begin, warmup.end) == (0, 10)
    assert (decay.begin, decay.end, decay.T_max) == (10, 50, 40)
    assert cfg.default_hooks.checkpoint.interval == 50
    location = configure_probe(cfg, 'GAPNet', 'location', 4, 'zero')
    assert location.model.type == 'GAPNet' and 'shuffle_channels' not in location.model
    assert location.model.num_classes == 16 and location.train_dataloader.dataset.classes is None
    variants = dict(head_kernel_size=3, permutation='batch')  # each reaches its own network only
    gapnet = configure_probe(PROBE_CONFIG, 'GAPNet', 'location', 3, 'zero', **variants)
    permutenet = configure_probe(gapnet, 'PermuteNet', 'location', 3, 'zero', **variants)
    assert gapnet.model.head_kernel_size == 3 and 'permutation' not in gapnet.model
    assert permutenet.model.permutation == 'batch' and 'head_kernel_size' not in permutenet.model
    assert network_label(gapnet.model) == 'GAPNet (3x3 head)'
    assert network_label(permutenet.model) == 'PermuteNet (per-batch permutation)'
    assert network_label(location.model) == 'GAPNet'
    plain = configure_probe(gapnet, 'PermuteNet', 'location', 3, 'zero')
    assert network_label(plain.model) == 'PermuteNet'
    with pytest.raises(ValueError, match="Unknown network 'ViT'"):
        configure_probe(PROBE_CONFIG, 'ViT', 'location', 3, 'zero')
    with pytest.raises(ValueError, match='grid_size must be an integer >= 2'):
        configure_probe(PROBE_CONFIG, 'GAPNet', 'location', 1, 'zero')
    with pytest.raises(ValueError, match="Unknown padding mode 'same'"):
        configure_probe(PROBE_CONFIG, 'GAPNet', 'location', 3, 'same')


def test_format_table1_puts_the_paper_beside_ours():
    rows = {row_key('reflect', 'GAPNet', 'classification', 7): {'accuracy': 80.04, 'seconds': 60},
            row_key('reflect', 'PermuteNet', 'location', 3): {'accuracy': 12.5, 'seconds': 30}}
    lines = format_table1(rows).splitlines()
    assert lines[0] == ('| padding | network | location 3x3 | location 5x5 | location 7x7 | '
                        'image cls 3x3 | image cls 5x5 | image cls 7x7 |')
    assert lines[2] == ('| reflect | GAPNet | – (100) | – (100) | – (100) | – (83.8) | – (83.4) '
                        '| 80.0 (82.9) |')
    assert lines[3] == ('| reflect | PermuteNet | 12.5 (78.3) | – (36.3) | – (23.2) | – (71.1) '
                        '| – (71.4) | – (65.7) |')
    assert '2 runs, 1.5 min' in lines[-1]
    label = 'PermuteNet (per-batch permutation)'
    rows[row_key('reflect', 'PermuteNet', 'location', 3)]['network_label'] = label
    assert format_table1(rows).splitlines()[3].startswith(f'| reflect | {label} | 12.5 (78.3) |')


def test_format_runs_puts_settings_side_by_side():
    at_400 = {'settings': {'max_iters': 400}}
    small = {row_key('zero', 'PermuteNet', 'location', 3): dict(at_400, accuracy=33.04),
             row_key('zero', 'PermuteNet', 'location', 5): dict(at_400, accuracy=7.8),
             row_key('reflect', 'GAPNet', 'classification', 7): dict(at_400, accuracy=70)}
    wide = {row_key('zero', 'GAPNet', 'location', 3): {
        'accuracy': 100, 'network_label': 'GAPNet (3x3 head)', 'settings': {'max_iters': 300}}}
    lines = format_runs([('small', small), ('wide', wide)]).splitlines()
    assert lines[0] == ('| setting | iterations | padding | network | location 3x3 | '
                        'location 5x5 | location 7x7 | image cls 3x3 | image cls 5x5 | '
                        'image cls 7x7 |')
    assert lines[2:] == [
        '| small | 400 | zero | PermuteNet | 33.0 (78.8) | 7.8 (37.8) | – (21.4) | – (73.6) | '
        '– (72.2) | – (69.9) |',
        '| small | 400 | reflect | GAPNet | – (100) | – (100) | – (100) | – (83.8) | – (83.4) | '
        '70.0 (82.9) |',
        '| wide | 300 | zero | GAPNet (3x3 head) | 100.0 (100) | – (100) | – (100) | – (82.6) | '
        '– (82.4) | – (82.1) |']


def test_full_width_config_is_resnet18_width_on_96_pixel_canvases():
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'probes',
                                   'gapnet_r18-w64-p32_grid3-location_synthetic.py'))
    assert cfg.train_dataloader.dataset.patch_size == cfg.test_dataloader.dataset.patch_size == 32
    cfg = configure_probe(cfg, 'PermuteNet', 'location', 3, 'zero', permutation='batch')
    model = _build(cfg.model).eval()
    assert model.in_channels == 512  # ResNet-18's last stage, as the authors'
    assert [m.out_channels for m in model.backbone.stem if isinstance(m, nn.Conv2d)][-1] == 64
    assert model(torch.zeros(2, 3, 96, 96)).shape == (2, 9)


def test_probe_tables_md_stamps_the_tables(tmp_path):
    from helpers import load_tool

    from posattack.utils.machine import describe_machine
    tool = load_tool('probe_tables_md')
    done = tmp_path / 'done'
    done.mkdir()
    rows = {row_key('zero', 'GAPNet', 'location', 3): {
        'accuracy': 99.96, 'seconds': 90, 'finished_utc': '2026-12-03 07:40',
        'load_average_at_start': 2.5, 'num_test_samples': 625,
        'network_label': 'GAPNet (3x3 head)', 'settings': {'max_iters': 400}}}
    (done / 'results.json').write_text(json.dumps({'meta': {}, 'rows': rows}))
    out = tmp_path / 'one.md'
    assert tool.main(['--out', str(out), '--command', 'bash run.sh', '--seconds', '120',
                      '--part', f'small={done}']) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith('<!-- generated by tools/tables/probe_tables_md.py')
    assert (f'on {describe_machine()}, torch on 1 thread, by `bash run.sh`, 2.0 min for this'
            in lines[1])
    assert ('1 run, 1.5 min of training and testing in all, finished 2026-12-03 07:40 to '
            '2026-12-03 07:40 UTC, load average 2.5 to 2.5 at their starts. One seed per run; '
            '625 to 625 test patches per run, so one accuracy has a binomial standard error of '
            'at most 2.0 '
            'points (test sampling only, not training).') in lines[1]
    assert '| zero | GAPNet (3x3 head) | 100.0 (100) | – (100) |' in out.read_text()
    out = tmp_path / 'two.md'
    assert tool.main(['--out', str(out), '--command', 'c', '--part', f'small={done}',
                      '--part', f'big={tmp_path / "missing"}', '--note', 'one seed']) == 0
    text = out.read_text()
    assert '| small | 400 | zero | GAPNet (3x3 head) | 100.0 (100) |' in text
    assert f'**big: not run** (no {tmp_path / "missing" / "results.json"}).' in text
    assert text.rstrip().endswith('one seed')


# ----------------------------------------------------------------------------- command line
def _probe_cli():
    import importlib.util
    spec = importlib.util.spec_from_file_location('posattack_probe_cli',
                                                  osp.join(REPO_ROOT, 'tools', 'probe.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def segmentor_files(synthetic_root, tmp_path_factory):
    from helpers import make_checkpoint, write_tiny_config
    root = tmp_path_factory.mktemp('probe_segmentor')
    config = write_tiny_config(root / 'tiny.py', synthetic_root)
    return config, make_checkpoint(config, root / 'model.pth')


@pytest.mark.slow
def test_frozen_probe_cli_ranking_drives_a_cell_attack(segmentor_files, synthetic_root, tmp_path):
    from helpers import load_cli, run_cli
    config, checkpoint = segmentor_files
    out = tmp_path / 'probe' / 'probe_ranking.json'
    result = _probe_cli().run(['frozen', config, checkpoint, '--data-root', str(synthetic_root),
                               '--grid-size', '3', '--patch-size', '16', '--steps', '60',
                               '--max-patches', '100', '--out', str(out)])
    ranking = ChannelRanking.load(out)
    assert ranking.method == 'grid_probe' and ranking.layer == 'backbone:3'
    # --max-patches caps the patch count; how many a tiny dataset yields depends on its scenes
    assert ranking.num_channels == 128 and ranking.num_images == result.num_train
    assert 0 < result.num_train <= 100
    assert ranking.regions == ['overall'] + cell_names(3)
    assert ranking.model['tensor_shape'] == [128, 6, 6]  # 48x48 canvas, output stride 8
    assert ranking.model['checkpoint'] == osp.abspath(checkpoint)
    summary = json.loads((tmp_path / 'probe' / 'probe_ranking_summary.json').read_text())
    assert summary['gapnet_readout_accuracy'] == result.gapnet_accuracy
    assert summary['accuracy_gap'] == pytest.approx(result.gapnet_accuracy -
                                                    result.permutenet_accuracy)
    assert 0 <= result.permutenet_accuracy <= 100 and 0 < result.num_test <= 100

    work_dir = tmp_path / 'attack'
    code, stderr = run_cli(load_cli(), [
        config, checkpoint, '--work-dir', work_dir, '--ranking', out, '--attack-region', 'cell_0_0',
        '--num-channels', 8, '--seeds', 1, '--max-images', 2, '--no-overlays', '--regions',
        'grid=3x3'
    ])
    assert code == 0, stderr
    results = json.loads((work_dir / 'results.json').read_text())
    settings = {s['key']: s for s in results['settings']}
    assert set(settings) == {'clean', 'targeted/cell_0_0/N=8', 'random/N=8/seed=0'}
    assert settings['targeted/cell_0_0/N=8']['attack_region'] == 'cell_0_0'
    assert 'cell_0_0.mIoU' in settings['clean']['metrics']


@pytest.mark.slow
def test_probe_cli_trains_the_permutenet_config(probe_scenes, tmp_path):
    config = osp.join(REPO_ROOT, 'configs', 'probes',
                      'permutenet_r18-w16_grid3-location_synthetic.py')
    metrics = _probe_cli().run([
        'train', config, '--work-dir', str(tmp_path), '--max-iters', '5', '--cfg-options',
        f'train_dataloader.dataset.cityscapes_root={probe_scenes}',
        f'test_dataloader.dataset.cityscapes_root={probe_scenes}', 'model.padding=replicate'])
    assert 0 <= metrics['probe/accuracy'] <= 100 and metrics['probe/num_samples'] >= 300
    assert (tmp_path / 'iter_5.pth').is_file()
    logs = ''.join(p.read_text() for p in tmp_path.glob('*/*.log'))
    assert "type='PermuteNet'" in logs and "padding='replicate'" in logs


@pytest.mark.slow
def test_probe_cli_table_runs_the_authors_variants(probe_scenes, tmp_path):
    rows = _probe_cli().run([
        'table', '--work-dir', str(tmp_path), '--data-root', probe_scenes, '--paddings', 'zero',
        '--grid-sizes', '3', '--tasks', 'location', '--max-iters', '4', '--gapnet-head-kernel', '3',
        '--permutation', 'batch', '--num-threads', '1'])
    assert rows[row_key('zero', 'GAPNet', 'location', 3)]['network_label'] == 'GAPNet (3x3 head)'
    assert (rows[row_key('zero', 'PermuteNet', 'location', 3)]['network_label']
            == 'PermuteNet (per-batch permutation)')
    logs = ''.join(p.read_text() for p in tmp_path.glob('zero_*/*/*.log'))
    assert 'head_kernel_size=3' in logs and "permutation='batch'" in logs
    table = (tmp_path / 'table.md').read_text()
    assert '| zero | PermuteNet (per-batch permutation) |' in table


@pytest.mark.parametrize('argv, message', [
    (['frozen', 'CONFIG', 'missing.pth', '--data-root', 'DATA'], 'Checkpoint file not found'),
    (['frozen', 'CONFIG', 'CHECKPOINT', '--data-root', 'DATA', '--layer', 'backbone:9'],
     'index 9 is out of range'),
    (['frozen', 'CONFIG', 'CHECKPOINT', '--data-root', 'DATA', '--patch-size', '20',
      '--cell-size', '16'], 'patch_size 20 is larger than the grid cell'),
    (['frozen', 'CONFIG', 'CHECKPOINT', '--patch-dir', 'EMPTY', '--test-patch-dir', 'EMPTY'],
     'holds no images'),
    (['train', 'missing_config.py'], 'Config file not found'),
])
def test_probe_cli_bad_input_fails_with_one_clear_line(argv, message, segmentor_files,
                                                       synthetic_root, tmp_path, capsys):
    (tmp_path / 'EMPTY').mkdir()
    replacements = {'CONFIG': segmentor_files[0], 'CHECKPOINT': segmentor_files[1],
                    'DATA': str(synthetic_root), 'EMPTY': str(tmp_path / 'EMPTY')}
    argv = [replacements.get(a, a)
            for a in argv] + ['--out', str(tmp_path / 'r.json')] * (argv[0] == 'frozen')
    assert _probe_cli().main(argv) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith('probe.py: error: ') and stderr.count('\n') == 1, stderr
    assert message in stderr
    assert not (tmp_path / 'r.json').exists()


@pytest.mark.parametrize('argv, message', [
    (['table', '--grid-sizes', '3', '1'], 'grid sizes must be at least 2'),
    (['table', '--gapnet-head-kernel', '2'], '--gapnet-head-kernel must be odd and positive'),
    (['table', '--permutation', 'pixel'], "invalid choice: 'pixel'"),
])
def test_probe_cli_rejects_bad_table_options(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _probe_cli().parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
