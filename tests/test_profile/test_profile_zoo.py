"""The depth profile on MMSeg zoo architectures (configs/paper): which layers it picks, that it
runs end to end, and that the replay of a layer inside a ResNet-50 gives the labels of a
hooked full forward. Random weights, 2 synthetic images at 64x128, one fraction, one draw."""
from __future__ import annotations

import pytest
import torch
from helpers import diversify, one_torch_thread  # noqa: F401 - fixture
from helpers.zoo import ARCHITECTURES, NUM_IMAGES, first_batch, tiny_data_options

from posattack.attack.feature_split import FeatureSplit
from posattack.attack.prefix_replay import PrefixReplaySplit
from posattack.channels.layers import resolve_layer
from posattack.models.builder import load_segmentor
from posattack.profile.run import ProfileOptions, profile_model

STAGES = ['backbone.layer1', 'backbone.layer2', 'backbone.layer3', 'backbone:3']
EXPECTED = {
    # DeepLabv3 and PSPNet read output 3 only: stages 1-3 are attacked where the next reads them
    'deeplabv3_r50': (STAGES, [256, 512, 1024, 2048]),
    'pspnet_r50': (STAGES, [256, 512, 1024, 2048]),
    # SegFormer's head reads all four outputs: every one on the fast path
    'segformer_b0': (['backbone:0', 'backbone:1', 'backbone:2', 'backbone:3'],
                     [32, 64, 160, 256]),
    # HRNet's FCN head reads all four branches too
    'fcn_hr18': (['backbone:0', 'backbone:1', 'backbone:2', 'backbone:3'], [18, 36, 72, 144]),
}


# Over 3 s of CPU (the slow rule): profiling an R50 model, measured 7-9 s.
@pytest.mark.parametrize('name', [
    pytest.param(name, marks=pytest.mark.slow) if name.endswith('_r50') else name
    for name in EXPECTED])
def test_profile_on_zoo_architecture(name, synthetic_root, tmp_path):
    arch = ARCHITECTURES[name]
    options = dict(tiny_data_options(synthetic_root), **arch['options'])
    torch.manual_seed(0)
    model, cfg = load_segmentor(arch['config'], None, cfg_options=options)
    diversify(model)
    opts = ProfileOptions(config=arch['config'], checkpoint='', work_dir=str(tmp_path / 'p'),
                          fractions=(0.1, ), seeds=1, bootstrap=20, max_images=NUM_IMAGES,
                          batch_size=NUM_IMAGES, progress=False)
    profile = profile_model(model, cfg, opts)
    layers, channels = EXPECTED[name]
    assert [row['layer'] for row in profile['layers']] == layers
    assert [row['num_channels'] for row in profile['layers']] == channels
    for row in profile['layers']:
        assert row['path'] == 'fast' if ':' in row['layer'] else row['path'].startswith('replay')
        assert row['concentration']['horizontal']['gini'] is not None
        assert row['attack'][0]['num_channels'] == round(0.1 * row['num_channels'])
    if name == 'deeplabv3_r50':
        inputs, samples = first_batch(model, cfg)
        ref = resolve_layer(model, 'backbone.layer2')
        replay = PrefixReplaySplit(model, ref, exact=True)
        replay.prefix(inputs)
        channels_removed = list(range(0, 512, 7))
        expected = FeatureSplit(model, ref).predict_full(inputs, samples, channels_removed)
        got = replay.predict_full(inputs, samples, channels_removed)
        assert all(torch.equal(a, b) for a, b in zip(expected, got))
