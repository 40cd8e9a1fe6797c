"""The attack on MMSeg zoo architectures, through configs/paper/*.py and tools/attack.py.

Per architecture (DeepLabv3-R50-D8, PSPNet-R50-D8, SegFormer-MiT-B0): random weights saved as
a checkpoint, the ready config from configs/paper with zoo SyncBN (BN on CPU), 2 synthetic
images resized to 64x128 from the command line, one channel count, one random seed. Each
result is checked against an independent expectation: mmseg's own IoUMetric on
``model.predict``, the flip difference computed here by hand, and a ChannelRemoval-hooked
``model.predict`` for the exact fast path.
"""
from __future__ import annotations

import json
import math
import os
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import (REPO_ROOT, diversify, load_cli, load_tool, one_torch_thread,  # noqa: F401
                     run_cli)
from helpers.zoo import ARCHITECTURES, NUM_IMAGES, first_batch, tiny_data_options
from mmengine.config import Config

from posattack.attack.batched_settings import BatchedSettings
from posattack.attack.feature_split import FeatureSplit
from posattack.channels import ChannelRemoval
from posattack.channels.layers import default_layer, resolve_layer
from posattack.channels.ranking import ChannelRanking
from posattack.evaluation.metric import RegionIoUMetric
from posattack.models.builder import load_segmentor

FRAGMENTS = osp.join(REPO_ROOT, 'configs', '_base_', 'posattack')
PAPER_REGIONS = ['full', 'left', 'right', 'center', 'periphery',
                 'band_0', 'band_1', 'band_2', 'band_3']


def _cli_value(value) -> str:
    """A value as --cfg-options writes it (DictAction parses tuples and None back)."""
    if isinstance(value, tuple):
        return '(' + ','.join(map(str, value)) + ')'
    return str(value)


# The slow rule counts a module fixture for the tests that share it: the attack run of an R50
# or HRNet model alone is over 3 s of CPU (measured 4-6 s), so every test on it is slow.
HEAVY_ARCHITECTURES = ('deeplabv3_r50', 'pspnet_r50', 'fcn_hr18')


@pytest.fixture(scope='module', params=[
    pytest.param(name, marks=pytest.mark.slow) if name in HEAVY_ARCHITECTURES else name
    for name in ARCHITECTURES])
def zoo_run(request, synthetic_root, tmp_path_factory):
    """One attack per architecture through tools/attack.py, with calls to the split counted.

    The ranking rides on the sweep's pass over the scored images (--identify-on test), the
    path whose flip-difference scores test_ranking_is_the_flip_difference recomputes."""
    arch = ARCHITECTURES[request.param]
    options = dict(tiny_data_options(synthetic_root), **arch['options'])
    torch.manual_seed(0)
    model, cfg = load_segmentor(arch['config'], None, cfg_options=options)
    assert cfg.test_dataloader.dataset.pipeline[1]['type'] == 'Resize'
    diversify(model)  # random weights whose predictions depend on the features
    tmp = tmp_path_factory.mktemp(request.param)
    checkpoint = str(tmp / 'random_weights.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)

    num_removed = arch['channels'] // 8
    work_dir = tmp / 'attack'
    argv = [arch['config'], checkpoint, '--work-dir', work_dir, '--num-channels', num_removed,
            '--seeds', '1', '--max-images', NUM_IMAGES, '--batch-size', NUM_IMAGES,
            '--no-overlays', '--identify-on', 'test', '--cfg-options'] + [
                f'{key}={_cli_value(value)}' for key, value in options.items()]
    calls = {'predict_from': 0, 'predict_full': 0}

    def counted(name):
        original = getattr(FeatureSplit, name)

        def wrapper(self, *args, **kwargs):
            calls[name] += 1
            return original(self, *args, **kwargs)
        return wrapper

    original_group = BatchedSettings._predict_group

    def counted_group(self, feats, inputs, samples, group):
        # settings stacked through one head forward (posattack.attack.batched_settings):
        # each is a fast-path setting, as one predict_from call would be
        calls['predict_from'] += len(group)
        return original_group(self, feats, inputs, samples, group)

    with pytest.MonkeyPatch.context() as patch:
        for name in calls:
            patch.setattr(FeatureSplit, name, counted(name))
        patch.setattr(BatchedSettings, '_predict_group', counted_group)
        code, stderr = run_cli(load_cli(), argv)
    os.remove(checkpoint)  # 270 MB for an R50: do not leave it in pytest's tmp dirs
    assert code == 0, stderr
    with open(work_dir / 'results.json') as f:
        results = json.load(f)
    # What several checks share, computed once: the batch, its features, clean predictions.
    inputs, samples = first_batch(model, cfg)
    with torch.no_grad():
        feats = tuple(model.backbone(inputs))
        clean = _labels(model.predict(inputs, samples))
    yield SimpleNamespace(name=request.param, arch=arch, model=model, cfg=cfg,
                          results=results, work_dir=work_dir, calls=calls,
                          num_removed=num_removed, inputs=inputs, samples=samples,
                          feats=feats, clean=clean,
                          ranking=ChannelRanking.load(str(work_dir / 'ranking.json')))


def _labels(samples):
    """Label maps of predicted samples, taken now: the next predict overwrites the samples."""
    return [sample.pred_sem_seg.data[0] for sample in samples]


def _metric_values_are_sane(metrics: dict) -> None:
    differences = {key: value for key, value in metrics.items() if '_minus_' in key}
    assert differences['periphery_minus_center.mIoU'] == pytest.approx(
        metrics['periphery.mIoU'] - metrics['center.mIoU'], abs=0.011)
    for key, value in metrics.items():
        if key not in differences:
            assert value is None or math.isnan(value) or 0 <= value <= 100, (key, value)
    for region in PAPER_REGIONS:
        prefix = '' if region == 'full' else f'{region}.'
        assert prefix + 'mIoU' in metrics and prefix + 'aAcc' in metrics, region
        assert 0 <= metrics[prefix + 'aAcc'] <= 100


def test_results_hold_every_setting_with_sane_metrics(zoo_run):
    results, arch, n = zoo_run.results, zoo_run.arch, zoo_run.num_removed
    assert results['layer'] == arch['layer']
    assert results['num_channels_total'] == arch['channels']
    assert results['num_images'] == NUM_IMAGES
    assert results['regions'] == PAPER_REGIONS
    assert [s['key'] for s in results['settings']] == [
        'clean', f'targeted/overall/N={n}', f'random/N={n}/seed=0']
    for setting in results['settings']:
        _metric_values_are_sane(setting['metrics'])
    for name in ('results.csv', 'report.md', 'ranking.json'):
        assert (zoo_run.work_dir / name).is_file(), name


def test_zoo_syncbn_runs_as_batchnorm(zoo_run):
    assert zoo_run.cfg.model.decode_head.norm_cfg['type'] == 'SyncBN'  # as the zoo has it
    norms = [m for m in zoo_run.model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and not any(isinstance(m, torch.nn.SyncBatchNorm) for m in norms)


def test_clean_scores_equal_mmseg_iou_metric(zoo_run):
    """The clean full-image mIoU/aAcc are what mmseg's IoUMetric gives on model.predict."""
    from mmseg.evaluation import IoUMetric
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = zoo_run.model.dataset_meta
    metric.process({}, [dict(pred_sem_seg=dict(data=label[None]),
                             gt_sem_seg=dict(data=sample.gt_sem_seg.data))
                        for label, sample in zip(zoo_run.clean, zoo_run.samples)])
    expected = metric.compute_metrics(metric.results)
    clean = zoo_run.results['settings'][0]['metrics']
    assert clean['mIoU'] == pytest.approx(expected['mIoU'], abs=0.011)
    assert clean['aAcc'] == pytest.approx(expected['aAcc'], abs=0.011)


def test_fast_path_was_used(zoo_run):
    """Every setting went through the fast path (predict_from, alone or stacked with others);
    no full forward per setting."""
    model, arch = zoo_run.model, zoo_run.arch
    assert model.with_auxiliary_head == arch['auxiliary']  # kept or dropped: same fast path
    assert default_layer(model) == arch['layer']
    split = FeatureSplit(model, resolve_layer(model, arch['layer']))
    assert split.fast, split.why_slow
    assert zoo_run.calls == {'predict_from': 3, 'predict_full': 0}
    # Whether the linear shortcut has work here: some head convolution reads the attacked
    # tensor itself (not a pooled or concatenated copy of it).
    feats = zoo_run.feats
    read_attacked = []
    handles = [conv.register_forward_pre_hook(
        lambda module, args: read_attacked.append(module)
        if args[0] is split.attacked(feats) else None) for conv in split.shortcut.convs]
    try:
        with torch.no_grad():
            split.predict_from(feats, zoo_run.inputs, zoo_run.samples, [])
    finally:
        for handle in handles:
            handle.remove()
    assert bool(read_attacked) == arch['shortcut']


def test_exact_predict_from_equals_hooked_predict(zoo_run):
    """Bit-identical labels: exact fast path vs model.predict under a ChannelRemoval hook."""
    model, ref = zoo_run.model, resolve_layer(zoo_run.model, zoo_run.arch['layer'])
    channels = zoo_run.ranking.top('overall', zoo_run.num_removed)
    split = FeatureSplit(model, ref, exact=True)
    with torch.no_grad():
        # prefix here, not the fixture's features: the fast path as the sweep runs it
        fast = split.predict_from(split.prefix(zoo_run.inputs), zoo_run.inputs,
                                  zoo_run.samples, channels)
        with ChannelRemoval(model, ref.name, channels):
            hooked_labels = _labels(model.predict(zoo_run.inputs, zoo_run.samples))
        # The linear shortcut (the sweep's default) agrees up to float rounding.
        approx = FeatureSplit(model, ref).predict_from(zoo_run.feats, zoo_run.inputs,
                                                       zoo_run.samples, channels)
    # The removal must matter, or equality would prove nothing.
    assert any(not torch.equal(h, c) for h, c in zip(hooked_labels, zoo_run.clean))
    for got, expected in zip(fast, hooked_labels):
        assert got.dtype == expected.dtype and torch.equal(got, expected)
    agreement = np.mean([(a == e).float().mean().item() for a, e in zip(approx, hooked_labels)])
    assert agreement > 0.999


def test_ranking_is_the_flip_difference(zoo_run):
    """ranking.json's overall scores: mean over images of |GAP(z(x)) - GAP(z(hflip x))|."""
    model, ref = zoo_run.model, resolve_layer(zoo_run.model, zoo_run.arch['layer'])
    with torch.no_grad():
        pooled = zoo_run.feats[ref.index].double().mean(dim=(2, 3))
        flipped = model.backbone(zoo_run.inputs.flip(-1))[ref.index].double().mean(dim=(2, 3))
    expected = (pooled - flipped).abs().mean(dim=0)
    ranking = zoo_run.ranking
    assert ranking.num_channels == zoo_run.arch['channels']
    assert sorted(ranking.orders['overall']) == list(range(ranking.num_channels))
    np.testing.assert_allclose(ranking.scores['overall'], expected.numpy(), rtol=1e-5,
                               atol=1e-7)


# ------------------------------------------------------------------ configs, no forward pass
@pytest.mark.parametrize('arch', list(ARCHITECTURES))
def test_paper_config_resolves_zoo_base_and_builds_region_metric(arch):
    from mmseg.registry import METRICS
    cfg = Config.fromfile(ARCHITECTURES[arch]['config'])  # 'mmseg::' base from the package
    assert cfg.custom_imports == dict(imports=['posattack'], allow_failed_imports=False)
    assert cfg.default_scope == 'mmseg'
    assert cfg.model.test_cfg.mode == 'whole'  # the fast path needs whole-image inference
    for key in ('val_evaluator', 'test_evaluator'):
        metric = METRICS.build(cfg[key])
        assert isinstance(metric, RegionIoUMetric)
        assert metric.region_names == PAPER_REGIONS


def test_fragments_compose_with_channel_removal_on_a_zoo_config(tmp_path):
    """imports.py, region_metric.py and channel_removal.py side by side under a zoo config."""
    from mmseg.registry import HOOKS, METRICS
    fragments = [osp.join(FRAGMENTS, name)
                 for name in ('imports.py', 'region_metric.py', 'channel_removal.py')]
    child = tmp_path / 'child.py'
    child.write_text(
        f"_base_ = ['mmseg::pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py', "
        f"*{fragments!r}]\n"
        "test_evaluator = dict(_delete_=True, **_base_.region_metric)\n")
    cfg = Config.fromfile(str(child))
    assert cfg.custom_imports['imports'] == ['posattack']
    assert cfg.test_evaluator == dict(type='posattack.RegionIoUMetric',
                                      iou_metrics=['mIoU'],
                                      regions=['paper', dict(type='border', bands=4)])
    # command-line style overrides reach the evaluator and the hook, and both build
    cfg.merge_from_dict({'test_evaluator.regions': ['paper', 'grid'],
                         'custom_hooks.0.mode': 'random', 'custom_hooks.0.ranking': None})
    metric = METRICS.build(cfg.test_evaluator)
    assert metric.region_names[-1] == 'cell_2_2'
    hook = HOOKS.build(cfg.custom_hooks[0])
    assert type(hook).__name__ == 'ChannelRemovalHook' and hook.num_channels == 100


def test_segformer_zoo_sliding_window_falls_back_to_full_forwards(synthetic_root):
    """With the zoo's slide mode the split is slow, says why, and still predicts correctly."""
    options = dict(tiny_data_options(synthetic_root), **{'model.test_cfg.mode': 'slide'})
    torch.manual_seed(0)
    model, cfg = load_segmentor(ARCHITECTURES['segformer_b0']['config'], None,
                                cfg_options=options)
    diversify(model)
    split = FeatureSplit(model, resolve_layer(model, default_layer(model)))
    assert not split.fast and 'slide' in split.why_slow
    inputs, samples = first_batch(model, cfg, num_images=1)
    channels = list(range(0, 256, 4))
    with torch.no_grad():
        slow = split.predict_full(inputs, samples, channels)
        with ChannelRemoval(model, 'backbone:3', channels):
            expected = _labels(model.predict(inputs, samples))
        clean = _labels(model.predict(inputs, samples))
    assert any(not torch.equal(e, c) for e, c in zip(expected, clean))
    for got, want in zip(slow, expected):
        assert torch.equal(got, want)


def test_hrnet_resize_concat_head_defaults_to_its_last_branch(synthetic_root):
    """HRNet's FCN head concatenates four resized branches: the default is branch 3."""
    torch.manual_seed(0)
    model, cfg = load_segmentor('mmseg::hrnet/fcn_hr18s_4xb2-80k_cityscapes-512x1024.py', None,
                                cfg_options=tiny_data_options(synthetic_root))
    diversify(model)
    assert default_layer(model) == 'backbone:3'
    ref = resolve_layer(model, 'backbone:3')
    split = FeatureSplit(model, ref, exact=True)
    assert split.fast
    inputs, samples = first_batch(model, cfg, num_images=1)
    channels = list(range(0, 144, 3))
    with torch.no_grad():
        feats = split.prefix(inputs)
        assert split.attacked(feats).shape[1] == 144
        fast = split.predict_from(feats, inputs, samples, channels)
        with ChannelRemoval(model, ref.name, channels):
            expected = _labels(model.predict(inputs, samples))
        clean = _labels(model.predict(inputs, samples))
    assert any(not torch.equal(e, c) for e, c in zip(expected, clean))
    for got, want in zip(fast, expected):
        assert torch.equal(got, want)


# ---------------------------------------------------- tools/analysis_tools/benchmark_attack.py
@pytest.mark.slow
def test_benchmark_attack_runs_and_reports_identical_exact_labels(synthetic_root, capsys):
    benchmark = load_tool('benchmark_attack')
    args = benchmark.parse_args(['--model', 'demo', '--images', '1', '--num-channels', '4',
                                 '--seeds', '1', '--threads', '1',
                                 '--data-root', str(synthetic_root)])
    result = benchmark.benchmark_model('demo', str(synthetic_root), args)
    assert result['settings'] == 3 and result['channels'] == 128
    assert result['identical'] == result['checked'] == 3  # exact path: bit-identical labels
    assert result['shortcut_agreement'] > 0.999
    assert all(seconds > 0 for seconds in result['seconds'].values())
    # settings batched through the head: the same confusions as one at a time
    assert result['batched']['identical'] and result['batched']['settings'] == 3
    small, large = result['memory']  # one subprocess each, on 1 and 4 images
    assert (small['images'], large['images']) == (1, 4)
    for run in (small, large):
        assert 0 < run['rss_after_build_mb'] <= run['peak_rss_mb']
    benchmark.print_report([result], args)
    assert 'exact labels identical' in capsys.readouterr().out
