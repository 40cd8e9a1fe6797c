"""The frozen grid probe (posattack.identify.grid_probe) on a constructed segmentor whose
position channels are known: it finds them and ranks each cell."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import one_torch_thread  # noqa: F401  (one_torch_thread: a fixture)
from torch import nn

import posattack.probes  # noqa: F401 - registers GAPNet, PermuteNet, GridPatchDataset, ...
from posattack.channels import ChannelRemoval, select_channels
from posattack.channels.ranking import ChannelRanking
from posattack.identify.grid_probe import (build_probe_datasets, frozen_grid_probe,
                                           grid_probe_ranking, segmentor_normalization)
from posattack.probes.grid_data import (GridPatchDataset, PackGridInputs, PlacePatchInGrid,
                                        cell_names)

# Every test here builds mmseg modules by their registered names.
pytestmark = pytest.mark.usefixtures('mmseg_scope')


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
