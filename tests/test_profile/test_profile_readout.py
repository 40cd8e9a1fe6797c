"""tools/depth_profile.py --readout: the read-out column beside concentration and the attack
gap, with the numbers tools/position_readout.py gives for the same layers alone."""
from __future__ import annotations

import os.path as osp

import pytest
from helpers import (load_json, load_tool, make_checkpoint, one_torch_thread, run_cli,  # noqa: F401
                     write_tiny_config)

LAYERS = ['backbone.layer2', 'backbone:3']
READOUT = ['--readout-targets', 'gradient_h', 'gaussian', '--readout-epochs', '2']
SETTINGS = ['--fractions', '0.1', '--seeds', '2', '--bootstrap', '50', '--max-images', '3',
            '--batch-size', '1']


@pytest.fixture(scope='module')
def model_files(synthetic_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp('profile_readout')
    config = write_tiny_config(folder / 'tiny.py', synthetic_root)
    return folder, config, make_checkpoint(config, folder / 'model.pth')


@pytest.mark.slow
def test_the_column_is_the_standalone_readout_of_each_layer(model_files):
    folder, config, checkpoint = model_files
    work_dir = folder / 'profile'
    code, stderr = run_cli(load_tool('depth_profile'), [
        config, checkpoint, '--work-dir', work_dir, '--readout', '--layers'] + LAYERS + READOUT
        + SETTINGS)
    assert code == 0, stderr
    profile = load_json(work_dir / 'profile.json')
    alone = folder / 'alone'
    code, stderr = run_cli(load_tool('position_readout'), [
        config, checkpoint, '--work-dir', alone, '--no-fuse', '--bootstrap', '50', '--epochs',
        '2', '--targets', 'gradient_h', 'gaussian', '--layers'] + LAYERS)
    assert code == 0, stderr
    standalone = load_json(alone / 'readout.json')
    for row in profile['layers']:
        assert set(row['readout']) == {'gradient_h', 'gaussian'}
        for target, scores in row['readout'].items():
            expected = next(r for r in standalone['rows']
                            if r['layers'] == [row['layer']] and r['target'] == target)
            assert scores == expected['scores']
            assert set(scores) == {'natural', 'black', 'white', 'noise'}
    markdown = (work_dir / 'profile.md').read_text()
    assert 'Position held (read-out) vs position used (attack)' in markdown
    assert 'SPC gradient_h' in markdown and 'position_by_layer.png' in markdown
    assert osp.isfile(work_dir / 'position_by_layer.png')
    table = folder / 'table.md'   # the docs' table of a profile (tools/tables/profile_table.py)
    assert load_tool('profile_table').main([str(work_dir / 'profile.json'), '--out', str(table),
                                            '--command', 'depth_profile.py --readout']) == 0
    assert 'SPC gaussian' in table.read_text()
    assert osp.isfile(folder / 'table_position_by_layer.png')


def test_an_unknown_target_map_is_refused_before_any_work(model_files, tmp_path):
    folder, config, checkpoint = model_files
    work_dir = tmp_path / 'refused'
    code, stderr = run_cli(load_tool('depth_profile'), [
        config, checkpoint, '--work-dir', work_dir, '--readout', '--readout-targets', 'spiral'])
    assert code == 2
    assert stderr.strip().splitlines()[-1].startswith("error: unknown target map 'spiral'")
    assert not osp.exists(work_dir)
