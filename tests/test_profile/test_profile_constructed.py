"""A model whose answer is known: position is injected into two channels of ONE layer
(backbone.layer2 of the demo segmentor multiplies them by a left-to-right ramp), and the
profile must single that layer out."""
from __future__ import annotations

import json
import os.path as osp

import pytest
import torch
from conftest import DEMO_CONFIG
from helpers import diversify, one_torch_thread  # noqa: F401 - fixture
from torch import nn

from posattack.profile.run import ProfileOptions, profile_model

INJECTED = (3, 11)  # of backbone.layer2's 32 channels


class RampGate(nn.Module):
    """Multiply some channels by a ramp from -1 (left) to +1 (right), times ``scale``.

    A content feature f gated by an antisymmetric ramp r pools to mean(f r); after a
    horizontal flip the content sits mirrored, so it pools to about mean(f flip(r)) =
    -mean(f r): the flip difference of these channels is large, and is position, by
    construction. A vertical flip leaves r unchanged: no vertical signal is added.
    """

    def __init__(self, channels, scale=100.0):
        super().__init__()
        self.channels = list(channels)
        self.scale = scale

    def forward(self, x):
        ramp = torch.linspace(-1.0, 1.0, x.shape[-1], dtype=x.dtype)
        out = x.clone()
        out[:, self.channels] = self.scale * x[:, self.channels].abs() * ramp
        return out


@pytest.fixture
def injected_model(tiny_segmentor):
    model = diversify(tiny_segmentor)
    model.backbone.layer2 = nn.Sequential(model.backbone.layer2, RampGate(INJECTED))
    return model


def test_profile_singles_out_the_layer_with_injected_position(injected_model, demo_cfg,
                                                              tmp_path):
    opts = ProfileOptions(config=DEMO_CONFIG, checkpoint='', work_dir=str(tmp_path / 'prof'),
                          fractions=(0.1, ), seeds=2, bootstrap=50, progress=False)
    profile = profile_model(injected_model, demo_cfg, opts)
    rows = {row['layer']: row for row in profile['layers']}
    assert list(rows) == ['backbone.layer1', 'backbone.layer2', 'backbone.layer3', 'backbone:3']
    horizontal = {name: row['concentration']['horizontal'] for name, row in rows.items()}
    vertical = {name: row['concentration']['vertical'] for name, row in rows.items()}
    # the injected layer holds its horizontal signal in 2 of 32 channels (top 10% = 3 channels)
    assert max(horizontal, key=lambda k: horizontal[k]['top_10%']) == 'backbone.layer2'
    assert max(horizontal, key=lambda k: horizontal[k]['gini']) == 'backbone.layer2'
    assert horizontal['backbone.layer2']['top_10%'] > 0.7
    # and it is a horizontal signal: the vertical flip sees much less of it
    assert horizontal['backbone.layer2']['top_10%'] > vertical['backbone.layer2']['top_10%'] + 0.2
    # the layer's own ranking puts exactly the injected channels first
    with open(osp.join(str(tmp_path / 'prof'), 'rankings', 'backbone.layer2.json')) as f:
        ranking = json.load(f)
    assert sorted(ranking['orders']['overall'][:2]) == list(INJECTED)
