"""BatchedSettings: k settings stacked into one head forward give, label for label, what
``FeatureSplit.predict_from`` gives one setting at a time (the independent expectation, itself
tested against mmseg's test loop in test_feature_split.py), on the demo model and on zoo
configs with random weights; the sweep's confusions do not depend on k; k follows memory."""
from __future__ import annotations

import os.path as osp

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT, diversify, one_torch_thread  # noqa: F401

from posattack.attack.batched_settings import (HEAD_MEMORY_FACTOR, BatchedSettings, Removal,
                                               settings_per_pass)
from posattack.attack.feature_split import FeatureSplit
from posattack.attack.settings import AttackSetting
from posattack.attack.sweep import run_sweep
from posattack.channels import ChannelStatistics, select_channels
from posattack.channels.layers import default_layer, resolve_layer
from posattack.data.dataloader import build_test_dataloader
from posattack.models.builder import load_segmentor

PAPER = osp.join(REPO_ROOT, 'configs', 'paper')


def _removals(num_total: int) -> list[Removal]:
    """Clean, random sets of several sizes (one of them empty), overlapping ones."""
    removals = [Removal([])]
    for count, seed in ((num_total // 100 + 1, 0), (num_total // 20, 1), (num_total // 10, 2),
                        (num_total // 5, 3), (num_total // 5, 4)):
        removals.append(Removal(select_channels('random', num_total, num_channels=count,
                                                seed=seed)))
    return removals


def _one_at_a_time(split, feats, inputs, samples, removals):
    return [split.predict_from(feats, inputs, samples, *removal) for removal in removals]


def _assert_same_labels(batched, sequential):
    assert len(batched) == len(sequential)
    for got_setting, want_setting in zip(batched, sequential):
        assert len(got_setting) == len(want_setting)
        for got, want in zip(got_setting, want_setting):
            assert got.dtype == want.dtype and torch.equal(got, want)


def _batch(model, loader):
    data = model.data_preprocessor(next(iter(loader)), False)
    return data['inputs'], data['data_samples']


@pytest.mark.parametrize('exact', [False, True])
def test_demo_model_batched_labels_equal_one_at_a_time(tiny_segmentor, demo_cfg, exact):
    model = diversify(tiny_segmentor)
    split = FeatureSplit(model, resolve_layer(model, 'backbone:3'), exact=exact)
    inputs, samples = _batch(model, build_test_dataloader(demo_cfg, 2, 2))
    removals = _removals(128)
    with torch.no_grad():
        feats = split.prefix(inputs)
        sequential = _one_at_a_time(split, feats, inputs, samples, removals)
        # 4 per forward: groups of 4 and a remainder of 2
        batched = BatchedSettings(split, max_settings=4).predict_many(feats, inputs, samples,
                                                                       removals)
    _assert_same_labels(batched, sequential)
    # the settings differ from each other: a mix-up of rows would show
    assert any(not torch.equal(a, b) for a, b in zip(sequential[0], sequential[-1]))


def test_mean_and_noise_ablations_batched_equal_one_at_a_time(tiny_segmentor, demo_cfg):
    """Statistics ablations: the same means are written; the noise ablation draws the same
    noise, since each setting's tensor is made by the same call in the same order."""
    from posattack.channels.ablations import get_ablation
    model = diversify(tiny_segmentor)
    split = FeatureSplit(model, resolve_layer(model, 'backbone:3'))
    inputs, samples = _batch(model, build_test_dataloader(demo_cfg, 2, 2))
    with torch.no_grad():
        feats = split.prefix(inputs)
        attacked = split.attacked(feats)
        stats = ChannelStatistics(mean=attacked.mean(dim=(0, 2, 3)),
                                  std=attacked.std(dim=(0, 2, 3)))
        channel_sets = [r.channels for r in _removals(128)[1:]]
        for name in ('mean', 'gaussian_noise'):
            torch.manual_seed(7)
            ablation = get_ablation(name)
            sequential = _one_at_a_time(split, feats, inputs, samples,
                                        [Removal(c, ablation, stats) for c in channel_sets])
            torch.manual_seed(7)
            ablation = get_ablation(name)
            batched = BatchedSettings(split, 3).predict_many(
                feats, inputs, samples, [Removal(c, ablation, stats) for c in channel_sets])
            _assert_same_labels(batched, sequential)


@pytest.mark.slow  # builds R50 models: about 10 s
@pytest.mark.parametrize('config, options', [
    ('deeplabv3_r50-d8_cityscapes-512x1024_posattack.py', {}),
    ('pspnet_r50-d8_cityscapes-512x1024_posattack.py', {'model.auxiliary_head': None}),
    ('segformer_mit-b0_cityscapes-1024x1024_posattack.py', {}),
])
def test_zoo_configs_batched_labels_equal_one_at_a_time(synthetic_root, config, options):
    """Random-init zoo architectures at 64x128 (DeepLabv3's shortcut convs, PSPNet's pooling
    pyramid, SegFormer's MLP head over four stages): exact label equality, every setting."""
    options = dict(options, **{
        'test_dataloader.dataset.data_root': str(synthetic_root),
        'test_dataloader.dataset.pipeline.1.scale': (128, 64),
        'test_dataloader.num_workers': 0, 'test_dataloader.persistent_workers': False})
    torch.manual_seed(0)
    model, cfg = load_segmentor(osp.join(PAPER, config), None, cfg_options=options)
    diversify(model)
    split = FeatureSplit(model, resolve_layer(model, default_layer(model)))
    assert split.fast
    inputs, samples = _batch(model, build_test_dataloader(cfg, 2, 2))
    with torch.no_grad():
        feats = split.prefix(inputs)
        removals = _removals(split.attacked(feats).shape[1])
        sequential = _one_at_a_time(split, feats, inputs, samples, removals)
        batched = BatchedSettings(split, 3).predict_many(feats, inputs, samples, removals)
    _assert_same_labels(batched, sequential)
    assert any(not torch.equal(a, b) for a, b in zip(sequential[0], sequential[-1]))


def test_sweep_confusions_do_not_depend_on_settings_per_pass(tiny_segmentor, demo_cfg):
    model = diversify(tiny_segmentor)
    split = FeatureSplit(model, resolve_layer(model, 'backbone:3'))
    loader = build_test_dataloader(demo_cfg, 2, None)
    settings = [AttackSetting('clean')] + [AttackSetting('random', n, seed=s)
                                           for n in (6, 24) for s in range(3)]
    states = [run_sweep(split, loader, settings, 128, ['paper'], 19, progress=False,
                        settings_per_pass=k) for k in (1, 4, None)]
    for state in states[1:]:
        assert set(state.confusions) == set(states[0].confusions)
        for key, confusion in states[0].confusions.items():
            assert np.array_equal(state.confusions[key], confusion), key
        for key in states[0].per_image.tp:
            assert np.array_equal(state.per_image.tp[key], states[0].per_image.tp[key])


def test_settings_per_pass_follows_the_memory_budget():
    # DeepLabv3-R50-D8 at 1024x2048: a (1, 2048, 128, 256) float tensor, 19 classes
    attacked = torch.empty(1, 2048, 128, 256)
    per_setting = HEAD_MEMORY_FACTOR * 2048 * 128 * 256 * 4 + 2 * 19 * 1024 * 2048 * 4
    assert per_setting == 1_392_508_928  # by hand: 4 x 256 MiB + 2 x 152 MiB
    assert settings_per_pass(attacked, (1024, 2048), 19, budget_bytes=4 << 30) == 3
    assert settings_per_pass(attacked, (1024, 2048), 19, budget_bytes=3 * per_setting - 1) == 2
    assert settings_per_pass(attacked, (1024, 2048), 19, budget_bytes=1) == 1
    assert settings_per_pass(attacked, (1024, 2048), 19, budget_bytes=1 << 50, cap=8) == 8
    assert settings_per_pass(attacked, (1024, 2048), 19) >= 1  # from this machine's memory


def test_refuses_slow_path_and_bad_counts(tiny_segmentor):
    model = tiny_segmentor
    slow = FeatureSplit(model, resolve_layer(model, 'backbone.layer2'))
    with pytest.raises(ValueError, match='fast path'):
        BatchedSettings(slow)
    with pytest.raises(ValueError, match='at least 1'):
        BatchedSettings(FeatureSplit(model, resolve_layer(model, 'backbone:3')), 0)
