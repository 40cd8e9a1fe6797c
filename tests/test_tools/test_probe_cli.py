"""tools/probe.py end to end: frozen-probe rankings that drive an attack, training a probe
config, the table runs, one-line bad input."""
from __future__ import annotations

import json
import os.path as osp

import pytest
from helpers import REPO_ROOT, one_torch_thread  # noqa: F401  (one_torch_thread: a fixture)

import posattack.probes  # noqa: F401 - registers GAPNet, PermuteNet, GridPatchDataset, ...
from posattack.channels.ranking import ChannelRanking
from posattack.probes.grid_data import cell_names
from posattack.probes.table import row_key

# Every test here builds mmseg modules by their registered names.
pytestmark = pytest.mark.usefixtures('mmseg_scope')


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
