"""The authors' DeepLabv3-R50 OS16 checkpoint in mmseg: conversion, equal logits, the attack.

The expectation is a network written in this test from torchvision's published structure
(tests/helpers/torchvision_deeplab_reference.py), with random weights and BN statistics, saved as
their training script saves it. Converted by
tools/model_converters/convert_authors_checkpoint.py and loaded
into configs/paper/deeplabv3_r50-os16_authors_cityscapes.py, mmseg's model must give the same
logits from the same BGR image (mmseg normalises it; the reference gets their 0..1 ImageNet
normalisation), at an odd and an even size.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from helpers import (AUTHORS_RANKINGS, REPO_ROOT, load_cli, load_tool,  # noqa: F401
                     one_torch_thread, run_cli)
from helpers.torchvision_deeplab_reference import TorchvisionDeepLabV3, normalise, randomise
from mmseg.structures import SegDataSample

from posattack.attack.feature_split import FeatureSplit
from posattack.channels import ChannelRemoval
from posattack.channels.layers import default_layer, resolve_layer
from posattack.channels.ranking import AUTHORS_LAYER, ChannelRanking
from posattack.models.authors_checkpoint import map_authors_key
from posattack.models.builder import load_segmentor
from posattack.utils.checkpoint import load_checkpoint

CONFIG = osp.join(REPO_ROOT, 'configs', 'paper', 'deeplabv3_r50-os16_authors_cityscapes.py')
SIZES = [(65, 97), (64, 128)]  # (h, w): odd sizes exercise align_corners=False and padding


@pytest.fixture(scope='module')
def convert():
    return load_tool('convert_authors_checkpoint').main


@pytest.fixture(scope='module')
def reference():
    return randomise(TorchvisionDeepLabV3(num_classes=19, nested_classifier=True), seed=0)


@pytest.fixture(scope='module')
def authors_file(reference, tmp_path_factory):
    """Their file layout: model_state plus training state (best_score is a numpy float there)."""
    path = tmp_path_factory.mktemp('authors') / 'zero_padding_best_deeplabv3_resnet50_os16.pth'
    torch.save({'cur_itrs': 30000, 'model_state': reference.state_dict(),
                'best_score': np.float64(0.7431)}, str(path))
    yield str(path)
    path.unlink(missing_ok=True)  # 160 MB: do not leave it in pytest's tmp dirs


@pytest.fixture(scope='module')
def converted(authors_file, convert, tmp_path_factory):
    out = tmp_path_factory.mktemp('converted') / 'authors_os16.pth'
    assert convert([authors_file, str(out)]) == 0
    yield str(out)
    out.unlink(missing_ok=True)


@pytest.fixture(scope='module')
def model(converted):
    segmentor, _ = load_segmentor(CONFIG, converted)
    return segmentor


def _bgr_image(height, width, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)


def _mmseg_logits(model, bgr):
    """Logits at the image size through mmseg's data preprocessor and predict."""
    height, width = bgr.shape[:2]
    sample = SegDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width)))
    data = model.data_preprocessor({'inputs': [bgr.permute(2, 0, 1).contiguous()],
                                    'data_samples': [sample]}, False)
    with torch.no_grad():
        return model.predict(data['inputs'], data['data_samples'])[0].seg_logits.data


# ------------------------------------------------------------------------------ architecture
def test_backbone_convolutions_match_torchvision_layer_for_layer(reference):
    """Same kernel, stride, padding, dilation for every backbone conv, under the same name:
    in particular layer4's first block at dilation 1 and the rest at 2 (torchvision's rule)."""
    model, _ = load_segmentor(CONFIG)
    ours = {name: m for name, m in model.backbone.named_modules() if isinstance(m, torch.nn.Conv2d)}
    theirs = {name: m for name, m in reference.backbone.named_modules()
              if isinstance(m, torch.nn.Conv2d)}
    assert sorted(ours) == sorted(theirs)
    for name, conv in theirs.items():
        got = ours[name]
        assert (got.kernel_size, got.stride, got.padding, got.dilation, got.padding_mode) == (
            conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.padding_mode), name
    assert [ours[f'layer4.{i}.conv2'].dilation for i in range(3)] == [(1, 1), (2, 2), (2, 2)]
    assert isinstance(model.backbone.maxpool, torch.nn.MaxPool2d)


def test_config_is_the_papers_setting():
    """ImageNet mean/std on 0..255 with BGR->RGB, mmseg's whole-image Cityscapes test at
    1024x2048, 19 classes, align_corners=False, per-region mIoU, short type names."""
    from mmengine.config import Config
    from mmseg.registry import METRICS

    from posattack.evaluation.metric import RegionIoUMetric
    cfg = Config.fromfile(CONFIG)
    assert cfg.custom_imports['imports'] == ['posattack'] and cfg.default_scope == 'mmseg'
    preprocessor = cfg.model.data_preprocessor
    assert preprocessor.mean == [0.485 * 255, 0.456 * 255, 0.406 * 255]
    assert preprocessor.std == pytest.approx([0.229 * 255, 0.224 * 255, 0.225 * 255])
    assert preprocessor.bgr_to_rgb and 'size' not in preprocessor  # no test-time padding
    head = cfg.model.decode_head
    assert (head.type, head.num_classes, head.align_corners) == (
        'TorchvisionDeepLabHead', 19, False)
    assert cfg.model.test_cfg.mode == 'whole'
    dataset = cfg.test_dataloader.dataset
    assert dataset.type == 'CityscapesDataset' and dataset.data_prefix.img_path == 'leftImg8bit/val'
    assert dataset.pipeline[1] == dict(type='Resize', scale=(2048, 1024), keep_ratio=True)
    assert isinstance(METRICS.build(cfg.test_evaluator), RegionIoUMetric)


def test_every_authors_key_maps_and_fc_does_not():
    assert map_authors_key('backbone.layer4.0.downsample.1.running_var') == \
        'backbone.layer4.0.downsample.1.running_var'
    assert map_authors_key('classifier.classifier.0.convs.4.1.weight') == \
        'decode_head.aspp.convs.4.1.weight'
    assert map_authors_key('classifier.0.project.1.bias') == 'decode_head.aspp.project.1.bias'
    assert map_authors_key('classifier.classifier.1.weight') == 'decode_head.refine.0.weight'
    assert map_authors_key('classifier.classifier.2.num_batches_tracked') == \
        'decode_head.refine.1.num_batches_tracked'
    assert map_authors_key('classifier.classifier.4.bias') == 'decode_head.conv_seg.bias'
    assert map_authors_key('backbone.fc.weight') is None
    assert map_authors_key('classifier.classifier.3.weight') is None  # a ReLU has none


# ------------------------------------------------------------------------------ equal logits
@pytest.mark.parametrize('size', SIZES, ids=lambda s: f'{s[0]}x{s[1]}')
def test_converted_model_gives_the_reference_logits(model, reference, size):
    bgr = _bgr_image(*size)
    with torch.no_grad():
        expected = reference(normalise(bgr))[0]
    got = _mmseg_logits(model, bgr)
    assert got.shape == expected.shape == (19, *size)
    scale = expected.abs().max().item()
    assert scale > 1.0  # logits of a network whose layers all matter, not near-zero noise
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4 * scale)
    # and the labels, which is what the attack scores
    agreement = (got.argmax(0) == expected.argmax(0)).float().mean().item()
    assert agreement > 0.999


def test_dilating_all_of_layer4_would_be_caught(converted, reference):
    """The negative control: mmseg's ResNet without contract_dilation (every layer4 block at
    dilation 2) loads the same weights but gives other logits, so the equality above does
    test the dilation rule."""
    wrong, _ = load_segmentor(CONFIG, converted,
                              cfg_options={'model.backbone.contract_dilation': False})
    bgr = _bgr_image(*SIZES[0])
    with torch.no_grad():
        expected = reference(normalise(bgr))[0]
    difference = (_mmseg_logits(wrong, bgr) - expected).abs().max().item()
    assert difference > 1e-2 * expected.abs().max().item()


def test_torchvision_layout_and_data_parallel_prefix_convert_to_the_same(
        reference, authors_file, converted, convert, tmp_path):
    """torchvision's own nesting (classifier.<i>) saved from DataParallel (module.*)."""
    flat = TorchvisionDeepLabV3(num_classes=19, nested_classifier=False)
    flat.backbone.load_state_dict(reference.backbone.state_dict())
    flat.classifier.load_state_dict(reference.classifier.classifier.state_dict())
    path = tmp_path / 'torchvision_layout.pth'
    torch.save({'model_state': {f'module.{k}': v for k, v in flat.state_dict().items()}},
               str(path))
    out = tmp_path / 'out.pth'
    code = convert([str(path), str(out)])
    os.remove(path)  # 160 MB
    assert code == 0
    ours, expected = load_checkpoint(str(out)), load_checkpoint(converted)
    os.remove(out)
    assert list(ours['state_dict']) == list(expected['state_dict'])
    for key, value in expected['state_dict'].items():
        assert torch.equal(ours['state_dict'][key], value), key


def test_converted_checkpoint_is_an_mmengine_checkpoint_with_class_names(converted, model):
    checkpoint = load_checkpoint(converted)  # weights_only=True
    assert set(checkpoint) == {'meta', 'state_dict'}
    assert checkpoint['meta']['converted_from'].startswith('zero_padding_best_deeplabv3')
    assert len(checkpoint['meta']['source_sha256']) == 64
    assert list(checkpoint['state_dict']) == list(model.state_dict())
    assert model.dataset_meta['classes'][0] == 'road' and len(model.dataset_meta['classes']) == 19


# ------------------------------------------------------------------------------ refusals
def _error_line(stderr: str) -> str:
    """The tool's one error line (first imports of mmseg may print warnings before it)."""
    lines = [line for line in stderr.splitlines() if line.startswith('error:')]
    assert len(lines) == 1 and stderr.rstrip().endswith(lines[0]), stderr
    return lines[0]


def _tampered(reference, tmp_path, edit):
    state = dict(reference.state_dict())
    edit(state)
    path = tmp_path / 'tampered.pth'
    torch.save({'model_state': state}, str(path))
    return str(path)


@pytest.mark.parametrize('edit, named', [
    (lambda s: s.update({'backbone.fc.weight': torch.zeros(1000, 2048)}),
     ['keys no rule maps', 'backbone.fc.weight']),
    (lambda s: s.update({'classifier.classifier.4.weight': torch.zeros(21, 256, 1, 1)}),
     ['shapes that differ', 'classifier.classifier.4.weight', '[21, 256, 1, 1]']),
    (lambda s: s.pop('backbone.layer3.5.bn2.running_var'),
     ['does not fill', 'backbone.layer3.5.bn2.running_var']),
    (lambda s: s.update({'classifier.classifier.0.convs.5.0.weight': torch.zeros(1)}),
     ['names the model lacks', 'decode_head.aspp.convs.5.0.weight']),
], ids=['extra-key', 'wrong-shape', 'missing-key', 'key-beyond-the-model'])
def test_a_tampered_checkpoint_is_refused_with_names(reference, convert, tmp_path, capsys,
                                                     edit, named):
    path = _tampered(reference, tmp_path, edit)
    out = tmp_path / 'out.pth'
    code = convert([path, str(out)])
    os.remove(path)  # 160 MB
    assert code == 2
    error = _error_line(capsys.readouterr().err)
    assert error.startswith('error: Refusing to convert')
    for text in named:
        assert text in error
    assert not out.exists()


def test_an_unsafe_pickle_is_refused_before_anything_runs(reference, convert, tmp_path, capsys):
    path = tmp_path / 'with_args.pth'
    torch.save({'model_state': {}, 'args': argparse.Namespace(lr=0.01)}, str(path))
    assert convert([str(path), str(tmp_path / 'out.pth')]) == 2
    error = _error_line(capsys.readouterr().err)
    assert 'argparse.Namespace' in error
    assert '--trust-checkpoint' in error


def test_a_file_without_model_state_is_refused(model, convert, tmp_path, capsys):
    path = tmp_path / 'mmengine.pth'
    torch.save({'state_dict': {'a': torch.zeros(1)}, 'meta': {}}, str(path))
    assert convert([str(path), str(tmp_path / 'out.pth')]) == 2
    error = _error_line(capsys.readouterr().err)
    assert "no 'model_state'" in error and 'state_dict' in error


# ------------------------------------------------------------------------------ the attack path
def _batch(model, sizes=((64, 128), (64, 128))):
    inputs, samples = [], []
    for seed, (height, width) in enumerate(sizes):
        inputs.append(_bgr_image(height, width, seed).permute(2, 0, 1).contiguous())
        samples.append(SegDataSample(metainfo=dict(img_shape=(height, width),
                                                   ori_shape=(height, width))))
    data = model.data_preprocessor({'inputs': inputs, 'data_samples': samples}, False)
    return data['inputs'], data['data_samples']


def test_fast_path_applies_and_equals_the_hooked_forward(model):
    """backbone:3 is the default layer; the four ASPP convolutions that read it take the
    linear shortcut; exact fast-path labels equal a ChannelRemoval-hooked predict."""
    assert default_layer(model) == AUTHORS_LAYER == 'backbone:3'
    ref = resolve_layer(model, AUTHORS_LAYER)
    split = FeatureSplit(model, ref)
    assert split.fast, split.why_slow
    inputs, samples = _batch(model)
    channels = list(range(0, 2048, 3))
    with torch.no_grad():
        feats = split.prefix(inputs)
        read_attacked = []
        handles = [conv.register_forward_pre_hook(
            lambda module, args: read_attacked.append(module)
            if args[0] is split.attacked(feats) else None) for conv in split.shortcut.convs]
        try:
            split.predict_from(feats, inputs, samples, [])
        finally:
            for handle in handles:
                handle.remove()
        head = model.decode_head.aspp.convs
        assert set(read_attacked) == {head[0][0], head[1][0], head[2][0], head[3][0]}

        clean = [s.pred_sem_seg.data[0] for s in model.predict(inputs, samples)]
        with ChannelRemoval(model, ref.name, channels):
            hooked = [s.pred_sem_seg.data[0] for s in model.predict(inputs, samples)]
        exact = FeatureSplit(model, ref, exact=True).predict_from(feats, inputs, samples, channels)
        approx = split.predict_from(feats, inputs, samples, channels)
    assert any(not torch.equal(h, c) for h, c in zip(hooked, clean))  # removal matters
    for got, expected in zip(exact, hooked):
        assert torch.equal(got, expected)
    agreement = np.mean([(a == e).float().mean().item() for a, e in zip(approx, hooked)])
    assert agreement > 0.999


def _tiny_data_options(root):
    return [f'test_dataloader.dataset.data_root={root}',
            'test_dataloader.dataset.pipeline.1.scale=(128,64)',  # 1 is Resize
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']


@pytest.mark.slow
def test_attack_runs_with_the_authors_rankings_and_with_ours_and_compares(
        converted, synthetic_root, tmp_path):
    """tools/attack.py end to end on the converted model (2 synthetic images at 64x128):
    (b) the authors' released rankings, (c) our identification, (d) the comparison."""
    common = ['--num-channels', '100', '--seeds', '1', '--max-images', '2', '--batch-size', '2',
              '--no-overlays', '--cfg-options'] + _tiny_data_options(synthetic_root)
    theirs, ours = tmp_path / 'authors', tmp_path / 'ours'
    code, stderr = run_cli(load_cli(), [CONFIG, converted, '--work-dir', theirs, '--ranking',
                                        AUTHORS_RANKINGS, '--ranking-format', 'authors',
                                        '--attack-region', 'left'] + common)
    assert code == 0, stderr
    # the synthetic set has no train split at this config's data_root: rank on the 2 images
    code, stderr = run_cli(load_cli(), [CONFIG, converted, '--work-dir', ours,
                                        '--identify-on', 'test'] + common)
    assert code == 0, stderr

    with open(theirs / 'results.json') as f:
        results = json.load(f)
    assert results['num_channels_total'] == 2048
    assert [s['key'] for s in results['settings']] == [
        'clean', 'targeted/left/N=100', 'random/N=100/seed=0']
    identified = ChannelRanking.load(str(ours / 'ranking.json'))
    assert identified.layer == AUTHORS_LAYER and identified.num_channels == 2048

    compare = load_tool('compare_rankings').main
    out_dir = tmp_path / 'comparison'
    assert compare([AUTHORS_RANKINGS, str(ours / 'ranking.json'), '--format-a', 'authors',
                    '--name-a', 'authors', '--name-b', 'ours', '--out-dir', str(out_dir)]) == 0
    with open(out_dir / 'ranking_comparison.json') as f:
        comparison = json.load(f)
    assert list(comparison['orders']) == ['overall', 'left', 'right']
    assert (out_dir / 'ranking_comparison.md').read_text().count('\n| ') == 4  # header + 3
