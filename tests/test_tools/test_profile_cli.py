"""tools/depth_profile.py end to end on the tiny demo model: the files, numbers that agree with
independent runs (tools/identify.py's one-layer identification, tools/attack.py once per
layer with the profile's ranking), resume, torchrun, and the refusals."""
from __future__ import annotations

import os
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import (REPO_ROOT, free_port, load_cli, load_json, load_tool,  # noqa: F401
                     make_checkpoint, one_torch_thread, run_cli, write_tiny_config)

from posattack.data.dataloader import build_test_dataloader
from posattack.identify import identify_channels
from posattack.models.builder import load_segmentor
from posattack.profile.concentration import concentration

LAYERS = ['backbone.layer2', 'backbone:3']  # one replayed inside the backbone, one fast
SETTINGS = ['--fractions', '0.1', '--seeds', '2', '--bootstrap', '50', '--max-images', '3',
            '--batch-size', '1']


def error_line(stderr: str) -> str:
    """The one line the tool prints on bad input (library warnings may come before it)."""
    lines = [line for line in stderr.splitlines() if line.startswith('error: ')]
    assert len(lines) == 1 and stderr.rstrip('\n').endswith(lines[0]), stderr
    return lines[0]


@pytest.fixture(scope='module')
def model_files(synthetic_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp('profile_cli')
    config = write_tiny_config(folder / 'tiny.py', synthetic_root)
    return folder, config, make_checkpoint(config, folder / 'model.pth')


@pytest.fixture(scope='module')
def profiled(model_files):
    folder, config, checkpoint = model_files
    work_dir = folder / 'profile'
    code, stderr = run_cli(load_tool('depth_profile'), [config, checkpoint, '--work-dir', work_dir,
                                                  '--layers'] + LAYERS + SETTINGS)
    assert code == 0, stderr
    return work_dir


def test_writes_the_profile_files(profiled):
    for name in ('profile.json', 'profile.md', 'identification.json',
                 'concentration_vs_depth.png', 'gap_vs_depth.png', 'class_drop_by_layer.png',
                 'rankings/backbone.layer2.json', 'rankings/backbone_3.json',
                 'layers/backbone.layer2/results.json', 'layers/backbone_3/per_image.npz',
                 'layers/backbone_3/report.md'):
        assert osp.isfile(osp.join(profiled, name)), name
    profile = load_json(profiled / 'profile.json')
    assert [row['layer'] for row in profile['layers']] == LAYERS
    assert [row['num_channels'] for row in profile['layers']] == [32, 128]
    assert [row['path'] for row in profile['layers']][1] == 'fast'
    assert profile['layers'][0]['path'].startswith('replay')
    markdown = (profiled / 'profile.md').read_text()
    assert '`backbone.layer2`' in markdown and 'next stage (hook)' in markdown
    assert '3/32' in markdown and '13/128' in markdown


def test_concentration_is_that_of_the_one_layer_identification(profiled, model_files):
    folder, config, checkpoint = model_files
    model, cfg = load_segmentor(config, checkpoint)
    loader = build_test_dataloader(cfg, 1, 3)
    identification = {e['layer']: e for e in load_json(profiled / 'identification.json')['layers']}
    profile = {row['layer']: row for row in load_json(profiled / 'profile.json')['layers']}
    for layer in LAYERS:
        expected = identify_channels(model, loader, layer=layer, progress=False)
        ours = load_json(profiled / 'rankings' / f'{layer.replace(":", "_")}.json')
        np.testing.assert_allclose(ours['scores']['overall'], expected.scores['overall'],
                                   rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(identification[layer]['abs_horizontal'],
                                   expected.scores['overall'], rtol=1e-6, atol=1e-9)
        assert ours['orders'] == expected.orders
        for direction, key in (('horizontal', 'abs_horizontal'), ('vertical', 'abs_vertical')):
            recomputed = concentration(identification[layer][key])
            got = profile[layer]['concentration'][direction]
            assert got == pytest.approx(recomputed)


def test_each_layer_equals_attack_py_with_the_profile_ranking(profiled, model_files):
    folder, config, checkpoint = model_files
    for layer in LAYERS:
        safe = layer.replace(':', '_')
        attack_dir = folder / f'attack_{safe}'
        code, stderr = run_cli(load_cli(), [
            config, checkpoint, '--work-dir', attack_dir, '--layer', layer, '--ranking',
            profiled / 'rankings' / f'{safe}.json', '--no-overlays'] + SETTINGS)
        assert code == 0, stderr
        theirs = load_json(attack_dir / 'results.json')
        ours = load_json(profiled / 'layers' / safe / 'results.json')
        assert [s['key'] for s in ours['settings']] == [s['key'] for s in theirs['settings']]
        for a, b in zip(ours['settings'], theirs['settings']):
            if layer == 'backbone:3':  # the same fast path on both sides: the same floats
                assert a['metrics'] == b['metrics'], (layer, a['key'])
                assert a['per_class'] == b['per_class'], (layer, a['key'])
            else:  # the replay's linear shortcut may round differently from a full forward
                assert a['metrics'] == pytest.approx(b['metrics'], abs=0.05), (layer, a['key'])
        if layer == 'backbone:3':
            assert ours['tests'] == theirs['tests']
        row = next(r for r in load_json(profiled / 'profile.json')['layers'] if r['layer'] == layer)
        gap = next(t for t in theirs['tests'] if t['kind'] == 'targeted_vs_random_draws')
        assert row['attack'][0]['targeted_minus_random']['estimate'] == pytest.approx(
            gap['estimate'], abs=0.05)


def test_resume_keeps_finished_layers_and_refuses_another_image_set(profiled, model_files):
    folder, config, checkpoint = model_files
    results = profiled / 'layers' / 'backbone_3' / 'results.json'
    before = (os.stat(results).st_mtime_ns, load_json(profiled / 'profile.json'))
    code, stderr = run_cli(load_tool('depth_profile'), [config, checkpoint, '--work-dir', profiled,
                                                  '--resume', '--layers'] + LAYERS + SETTINGS)
    assert code == 0, stderr
    assert os.stat(results).st_mtime_ns == before[0]
    assert load_json(profiled / 'profile.json')['layers'] == before[1]['layers']
    other = [a if a != '3' else '2' for a in SETTINGS]  # --max-images 2
    code, stderr = run_cli(load_tool('depth_profile'), [config, checkpoint, '--work-dir', profiled,
                                                  '--resume', '--layers'] + LAYERS + other)
    assert code == 2
    line = error_line(stderr)
    assert '--resume refused' in line and 'num_images: 3 there vs 2 now' in line


@pytest.mark.parametrize('args, message', [
    (['--layers', 'backbone.layer9'], "Unknown layer 'backbone.layer9'"),
    (['--layers', 'backbone:0'], "'backbone:0' is not read by the prediction"),
    (['--layers', 'all', 'backbone:3'], '--layers all stands alone'),
    (['--fractions', '1.5'], '--fractions 1.5 is out of range'),
    (['--bootstrap', '0'], '--bootstrap must be between 1 and'),
])
def test_bad_input_is_refused_in_one_line_before_any_work(model_files, tmp_path, args, message):
    folder, config, checkpoint = model_files
    work_dir = tmp_path / 'refused'
    code, stderr = run_cli(load_tool('depth_profile'), [config, checkpoint, '--work-dir', work_dir,
                                                  '--max-images', '2'] + args)
    assert code == 2
    assert message in error_line(stderr)
    assert not osp.exists(work_dir)


def test_unread_layer_refusal_names_the_layers_that_are_read(model_files, tmp_path):
    folder, config, checkpoint = model_files
    code, stderr = run_cli(load_tool('depth_profile'), [config, checkpoint, '--work-dir',
                                                  tmp_path / 'x', '--layers', 'backbone:1'])
    assert code == 2
    assert 'backbone.layer1 backbone.layer2 backbone.layer3 backbone:3' in error_line(stderr)


@pytest.mark.slow
def test_two_processes_give_the_one_process_profile(profiled, model_files, tmp_path):
    folder, config, checkpoint = model_files
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get('PYTHONPATH')])))
    completed = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         f'--master_port={free_port()}', osp.join(REPO_ROOT, 'tools', 'depth_profile.py'), config,
         checkpoint, '--launcher', 'pytorch', '--work-dir', str(tmp_path / 'dist'),
         '--layers'] + LAYERS + SETTINGS, cwd=str(tmp_path), env=env, capture_output=True,
        text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    single = load_json(profiled / 'profile.json')
    dist = load_json(tmp_path / 'dist' / 'profile.json')
    assert dist['num_images'] == single['num_images'] == 3
    for ours, theirs in zip(dist['layers'], single['layers']):
        assert ours['layer'] == theirs['layer']
        for direction in ('horizontal', 'vertical'):
            assert ours['concentration'][direction] == pytest.approx(
                theirs['concentration'][direction])
        assert ours['attack'] == theirs['attack']


def test_profile_table_stamps_the_run_and_copies_the_numbers(profiled, tmp_path):
    out = tmp_path / 'table.md'
    code, stderr = run_cli(load_tool('profile_table'), [
        profiled / 'profile.json', '--out', out, '--command', 'python tools/depth_profile.py X Y',
        '--seconds', '90'])
    assert code == 0, stderr
    text = out.read_text()
    assert 'by `python tools/depth_profile.py X Y`, 1.5 min; 3 test images' in text
    row = next(r for r in load_json(profiled / 'profile.json')['layers']
               if r['layer'] == 'backbone:3')
    gini = row['concentration']['horizontal']['gini']
    assert '| `backbone:3` | 128 | ' in text and f'| {gini:.2f} |' in text
    code, stderr = run_cli(load_tool('profile_table'), [
        profiled / 'identification.json', '--out', out, '--command', 'x'])
    assert code == 2 and 'is not a profile.json' in error_line(stderr)


def test_resume_recomputes_only_what_changed(profiled, model_files, tmp_path):
    folder, config, checkpoint = model_files
    work_dir = tmp_path / 'copy'
    shutil.copytree(profiled, work_dir)
    counts = work_dir / 'layers' / 'backbone_3' / 'per_image.npz'
    swept = os.stat(counts).st_mtime_ns
    # another bootstrap: the statistics again from the stored per-image counts, no new sweep
    other = [a if a != '50' else '40' for a in SETTINGS]
    code, stderr = run_cli(load_tool('depth_profile'), [config, checkpoint, '--work-dir', work_dir,
                                                  '--resume', '--layers'] + LAYERS + other)
    assert code == 0, stderr
    assert os.stat(counts).st_mtime_ns == swept
    results = load_json(work_dir / 'layers' / 'backbone_3' / 'results.json')
    assert results['statistics']['num_resamples'] == 40
    # a new layer: identification runs again for all (one pass), finished layers are kept
    code, stderr = run_cli(load_tool('depth_profile'), [
        config, checkpoint, '--work-dir', work_dir, '--resume', '--layers', 'backbone.layer1']
        + LAYERS + other)
    assert code == 0, stderr
    assert os.stat(counts).st_mtime_ns == swept
    profile = load_json(work_dir / 'profile.json')
    assert [row['layer'] for row in profile['layers']] == ['backbone.layer1'] + LAYERS
    assert [e['layer'] for e in load_json(work_dir / 'identification.json')['layers']] == \
        ['backbone.layer1'] + LAYERS
