"""Position probes: padding switch, grid data, GAPNet / PermuteNet, Table 1 runs, frozen probe.

Independent expectations: hand-placed canvases and hand-made Cityscapes crops with known
majority classes, convolutions computed with torch's functional padding, GAPNet's 1x1 read-out
computed as a linear map of pooled channels, and the orderings the paper reports (Islam et
al., ICCV 2021, Table 1) reproduced at a reduced scale with MMEngine's Runner.
"""
from __future__ import annotations

import json
import os.path as osp

import pytest
import torch
from helpers import (PROBE_CONFIG, REPO_ROOT,  # noqa: F401  (one_torch_thread: a fixture)
                     build_mmseg_model, one_torch_thread)
from torch import nn

import posattack.probes  # noqa: F401 - registers GAPNet, PermuteNet, GridPatchDataset, ...
from posattack.probes.table import (configure_probe, format_runs, format_table1, load_results,
                                    network_label, row_key, run_probe, run_table)

# Every test here builds mmseg modules by their registered names.
pytestmark = pytest.mark.usefixtures('mmseg_scope')


# ----------------------------------------------------------------------------- Table 1, reduced
# The paper trains ResNet-18 for 20 epochs on CIFAR-10 grids; here ResNetV1c-18 at 1/4 width
# trains 50-150 iterations on 16x16 crops of 16 synthetic scenes (seed 0, one CPU thread),
# a few seconds per run. Image classification is reduced to two classes (road, vegetation):
# a PermuteNet can only read class from permutation-invariant statistics of its pooled
# channels, which takes far longer to learn for more classes (see docs/probes.md).
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
    model = build_mmseg_model(cfg.model).eval()
    assert model.in_channels == 512  # ResNet-18's last stage, as the authors'
    assert [m.out_channels for m in model.backbone.stem if isinstance(m, nn.Conv2d)][-1] == 64
    assert model(torch.zeros(2, 3, 96, 96)).shape == (2, 9)
