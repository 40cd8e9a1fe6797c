"""tools/attack.py end to end: outputs, resume, interruption, options, bad input.

The CLI runs in this process (its ``main(argv)``), so a run costs no interpreter start and
the tests can spy on what the sweep is asked to evaluate.
"""
from __future__ import annotations

import csv
import json
import os
import os.path as osp
import shutil
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from helpers import (load_cli, make_checkpoint, one_torch_thread, run_cli,  # noqa: F401
                     run_mmseg_test, snapshot, tiny_cli_files)

import posattack.attack.experiment as experiment
import posattack.attack.sweep as sweep
from posattack.channels.ranking import ChannelRanking
from posattack.utils.owned_files import MANIFEST_NAME as OWNED_FILES_MANIFEST

CLI = load_cli()
# 3 images (batches of 2 and 1), N in {8, 16} of 128 channels, 2 random seeds: 7 settings
# Ranked on the scored images during the sweep (--identify-on test): these tests follow the
# sweep's two passes (identification rides on pass 1, targeted settings follow in pass 2);
# the default, held-out identification is tests/test_attack/test_identification_images.py's.
SWEEP_ARGS = ['--num-channels', 8, 16, '--seeds', 2, '--max-images', 3, '--identify-on', 'test']
ALL_KEYS = ['clean', 'targeted/overall/N=8', 'random/N=8/seed=0', 'random/N=8/seed=1',
            'targeted/overall/N=16', 'random/N=16/seed=0', 'random/N=16/seed=1']


@pytest.fixture(scope='module')
def files(synthetic_root, tmp_path_factory):
    return tiny_cli_files(tmp_path_factory.mktemp('attack_cli'), synthetic_root)


@pytest.fixture(scope='module')
def full_run(files):
    """The reference: every setting in one uninterrupted run, with 2 overlays."""
    work_dir = files.root / 'full'
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', work_dir,
                                 '--num-overlays', 2] + SWEEP_ARGS)
    assert code == 0, stderr
    return work_dir


def _results(work_dir):
    with open(osp.join(work_dir, 'results.json')) as f:
        return json.load(f)


def _by_key(results):
    return {s['key']: s for s in results['settings']}


def _scores(setting):
    return setting['metrics'], setting['per_class']


@pytest.fixture
def spy(monkeypatch):
    """Records every run_sweep call (settings, identify, ranking given) and every log line."""
    calls = SimpleNamespace(sweeps=[], logs=[])
    run_sweep, print_log = experiment.run_sweep, experiment.print_log

    def recording_sweep(split, dataloader, settings, *args, **kwargs):
        calls.sweeps.append(SimpleNamespace(keys=[s.key for s in settings],
                                            identify=kwargs['identify'],
                                            ranking_given=kwargs['ranking'] is not None))
        return run_sweep(split, dataloader, settings, *args, **kwargs)

    def recording_log(message, *args, **kwargs):
        calls.logs.append(str(message))
        return print_log(message, *args, **kwargs)

    monkeypatch.setattr(experiment, 'run_sweep', recording_sweep)
    monkeypatch.setattr(experiment, 'print_log', recording_log)
    return calls


def _temp_files(folder):
    """Hidden files left behind, but for posattack's record of its files (owned_files.py)."""
    return [name for name in snapshot(folder)
            if '.tmp' in name or osp.basename(name).startswith('.')
            and osp.basename(name) != OWNED_FILES_MANIFEST]


# ----------------------------------------------------------------------------- outputs
def test_outputs_follow_the_schema(files, full_run):
    results = _results(full_run)
    by_key = _by_key(results)
    assert results['format'] == 'posattack.results/1'
    assert results['config'] == files.config and results['checkpoint'] == files.checkpoint
    assert results['layer'] == 'backbone:3' and results['num_images'] == 3
    assert results['num_channels_total'] == 128 and len(results['class_names']) == 19
    assert results['regions'] == ['full', 'left', 'right', 'center', 'periphery',
                                  'band_0', 'band_1', 'band_2', 'band_3']
    assert [s['key'] for s in results['settings']] == ALL_KEYS
    for setting in results['settings']:
        assert {'mode', 'num_channels', 'seed', 'attack_region', 'metrics',
                'per_class'} <= set(setting)
        metrics = setting['metrics']
        for key in ('mIoU', 'center.mIoU', 'periphery.mIoU', 'periphery_minus_center.mIoU'):
            assert isinstance(metrics[key], float), key
        assert metrics['periphery_minus_center.mIoU'] == pytest.approx(
            metrics['periphery.mIoU'] - metrics['center.mIoU'], abs=0.011)
        assert set(setting['per_class']) == set(results['regions'])
        assert set(setting['per_class']['full']) == set(results['class_names'])
    assert by_key['targeted/overall/N=16']['attack_region'] == 'overall'
    assert by_key['random/N=8/seed=1']['seed'] == 1 and by_key['clean']['num_channels'] == 0

    with open(osp.join(full_run, 'results.csv'), newline='') as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ['mode', 'num_channels', 'fraction', 'seed', 'attack_region',
                             'eval_region', 'class', 'iou', 'acc']
    # per setting and region: a mean row and one row per class
    assert len(rows) == len(ALL_KEYS) * len(results['regions']) * (1 + 19)
    periphery = [r for r in rows if r['eval_region'] == 'periphery' and r['class'] == 'mIoU'
                 and r['mode'] == 'targeted' and r['num_channels'] == '16']
    assert len(periphery) == 1 and float(periphery[0]['iou']) == pytest.approx(
        by_key['targeted/overall/N=16']['metrics']['periphery.mIoU'])
    report = (full_run / 'report.md').read_text()
    assert 'targeted' in report and 'random' in report and 'periphery' in report
    for plot in ('miou_vs_channels.png', 'iou_vs_border_distance.png', 'class_drop_heatmap.png'):
        image = cv2.imread(osp.join(full_run, plot))
        assert image is not None and image.shape[0] > 100, plot
    overlays = sorted(os.listdir(osp.join(full_run, 'overlays')))
    assert len(overlays) == 2 and all(name.endswith('.png') for name in overlays)
    assert cv2.imread(osp.join(full_run, 'overlays', overlays[0])) is not None

    ranking = ChannelRanking.load(osp.join(full_run, 'ranking.json'))
    assert json.loads((full_run / 'ranking.json').read_text())['format'] == 'posattack.ranking/1'
    assert ranking.layer == 'backbone:3' and ranking.num_channels == 128
    assert ranking.num_images == 3 and ranking.method == 'flip_difference'
    assert set(ranking.regions) == {'overall', 'left', 'right', 'top', 'bottom'}
    assert not _temp_files(full_run)


def test_clean_scores_equal_region_metric_in_mmseg_test_loop(files, full_run):
    """The CLI's plumbing (config file, --max-images, classes, regions) against mmseg's loop."""
    from mmengine.config import Config
    cfg = Config.fromfile(files.config)
    cfg.test_dataloader.dataset.indices = 3
    cfg.work_dir = str(files.root / 'runner')
    _, _, metrics = run_mmseg_test(cfg, files.checkpoint, None,
                                   regions=['paper', dict(type='border', bands=4)])
    clean = _by_key(_results(full_run))['clean']['metrics']
    for key, value in clean.items():
        expected = metrics[key]
        assert (value is None and np.isnan(expected)) or value == expected, key


# ----------------------------------------------------------------------------- resume
def test_resume_with_nothing_left_evaluates_nothing(files, full_run, spy, tmp_path):
    work_dir = tmp_path / 'work'
    shutil.copytree(full_run, work_dir)
    before = (work_dir / 'results.json').read_bytes()
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', work_dir,
                                 '--resume', '--num-overlays', 2] + SWEEP_ARGS)
    assert code == 0, stderr
    assert spy.sweeps == []
    assert any(line.startswith('nothing left to do') for line in spy.logs)
    assert (work_dir / 'results.json').read_bytes() == before


def test_resume_evaluates_only_new_settings(files, full_run, spy, tmp_path):
    work_dir = tmp_path / 'work'
    base = [files.config, files.checkpoint, '--work-dir', work_dir, '--no-overlays',
            '--max-images', 3, '--identify-on', 'test']   # as full_run ranks
    assert run_cli(CLI, base + ['--num-channels', 8, '--seeds', 1])[0] == 0
    first = _by_key(_results(work_dir))
    assert sorted(first) == sorted(['clean', 'targeted/overall/N=8', 'random/N=8/seed=0'])

    code, stderr = run_cli(CLI, base + ['--num-channels', 8, 16, '--seeds', 2, '--resume'])
    assert code == 0, stderr
    assert len(spy.sweeps) == 2
    resumed = spy.sweeps[1]
    assert sorted(resumed.keys) == sorted(set(ALL_KEYS) - set(first))
    assert not resumed.identify and resumed.ranking_given  # ranking.json of the first run
    results = _results(work_dir)
    assert [s['key'] for s in results['settings']] == ALL_KEYS
    for key, setting in first.items():
        assert _by_key(results)[key] == setting  # untouched
    reference = _by_key(_results(full_run))
    for key, setting in _by_key(results).items():
        assert _scores(setting) == _scores(reference[key]), key


@pytest.mark.parametrize('change', ['checkpoint', 'layer', 'config'])
def test_resume_refuses_a_work_dir_of_another_experiment(change, files, full_run, tmp_path):
    work_dir = tmp_path / 'work'
    shutil.copytree(full_run, work_dir)
    before = snapshot(work_dir)
    config, checkpoint, extra = files.config, files.checkpoint, []
    if change == 'checkpoint':
        checkpoint = make_checkpoint(config, tmp_path / 'other.pth', seed=1)
    elif change == 'layer':
        extra = ['--layer', 'backbone:2']
    else:
        config = str(tmp_path / 'copy_of_tiny.py')
        shutil.copy(files.config, config)
    code, stderr = run_cli(CLI, [config, checkpoint, '--work-dir', work_dir, '--resume']
                           + SWEEP_ARGS + extra)
    assert code == 2
    assert stderr.startswith('error: --resume refused') and stderr.count('\n') == 1
    assert change in stderr
    assert snapshot(work_dir) == before


def test_interrupted_run_keeps_finished_pass_and_resume_finishes(files, full_run, spy,
                                                                 monkeypatch, tmp_path):
    work_dir = tmp_path / 'work'
    argv = [files.config, files.checkpoint, '--work-dir', work_dir, '--num-overlays', 2]
    argv += SWEEP_ARGS
    evaluate = sweep._Pass.evaluate

    def interrupted_in_pass_two(self, *args):
        if any(s.mode == 'targeted' for s in self.settings):  # pass 2: after identification
            raise KeyboardInterrupt
        return evaluate(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(sweep._Pass, 'evaluate', interrupted_in_pass_two)
        code, stderr = run_cli(CLI, argv)
    assert code == 130 and 'rerun with --resume' in stderr
    partial = _results(work_dir)  # valid JSON, pass 1's settings only
    assert sorted(s['key'] for s in partial['settings']) == sorted(
        k for k in ALL_KEYS if not k.startswith('targeted'))
    assert ChannelRanking.load(work_dir / 'ranking.json').num_images == 3
    assert not _temp_files(work_dir)

    code, stderr = run_cli(CLI, argv + ['--resume'])
    assert code == 0, stderr
    assert spy.sweeps[-1].keys == ['targeted/overall/N=8', 'targeted/overall/N=16']
    assert not spy.sweeps[-1].identify
    reference = _results(full_run)
    results = _results(work_dir)
    assert [s['key'] for s in results['settings']] == ALL_KEYS
    for key, setting in _by_key(results).items():
        assert _scores(setting) == _scores(_by_key(reference)[key]), key
    assert (work_dir / 'ranking.json').read_bytes() == (full_run / 'ranking.json').read_bytes()
    assert os.path.isfile(work_dir / 'report.md') and not _temp_files(work_dir)


def test_fresh_run_replaces_the_ranking_of_an_earlier_run(files, full_run, tmp_path):
    """Without --resume a work dir is started over: a ranking.json left there must not
    survive, or a later --resume would pair the new results with the old ranking."""
    work_dir = tmp_path / 'work'
    shutil.copytree(full_run, work_dir)
    other = make_checkpoint(files.config, tmp_path / 'other.pth', seed=1)
    code, stderr = run_cli(CLI, [files.config, other, '--work-dir', work_dir, '--no-overlays',
                                 '--num-channels', 8, '--seeds', 0, '--max-images', 2])
    assert code == 0, stderr
    ranking = ChannelRanking.load(work_dir / 'ranking.json')
    assert ranking.num_images == 4    # the 4 train images, held out by default
    assert ranking.model['checkpoint_sha256'] == experiment.file_sha256(other)


# ----------------------------------------------------------------------------- options
def test_given_ranking_and_fractions_skip_identification(files, full_run, spy, monkeypatch,
                                                         tmp_path):
    work_dir = tmp_path / 'work'
    prefix_calls = []
    original_prefix = experiment.FeatureSplit.prefix

    def counting_prefix(self, inputs):
        prefix_calls.append(len(inputs))
        return original_prefix(self, inputs)

    monkeypatch.setattr(experiment.FeatureSplit, 'prefix', counting_prefix)
    # 0.0625 and 0.125 of 128 channels are the N = 8 and 16 of the reference run
    code, stderr = run_cli(CLI, [
        files.config, files.checkpoint, '--work-dir', work_dir, '--no-overlays',
        '--ranking', full_run / 'ranking.json', '--fractions', 0.0625, 0.125,
        '--seeds', 1, '--max-images', 3])
    assert code == 0, stderr
    assert len(spy.sweeps) == 1 and not spy.sweeps[0].identify and spy.sweeps[0].ranking_given
    # one channel-count probe, then one prefix per batch (2 + 1 images): no flips, one pass
    assert prefix_calls == [1, 2, 1]
    results = _results(work_dir)
    settings = _by_key(results)
    assert sorted(settings) == sorted(['clean', 'targeted/overall/N=8', 'random/N=8/seed=0',
                                       'targeted/overall/N=16', 'random/N=16/seed=0'])
    assert settings['targeted/overall/N=8']['fraction'] == 0.0625
    assert settings['random/N=16/seed=0']['fraction'] == 0.125
    reference = _by_key(_results(full_run))
    for key, setting in settings.items():
        assert _scores(setting) == _scores(reference[key]), key
    assert not os.path.exists(work_dir / 'ranking.json')  # the given file is not copied over


def test_mean_ablation_regions_and_max_images(files, full_run, tmp_path):
    work_dir = tmp_path / 'work'
    code, stderr = run_cli(CLI, [
        files.config, files.checkpoint, '--work-dir', work_dir, '--no-overlays',
        '--ablation', 'mean', '--regions', 'grid=2x2', 'halves', '--num-channels', 16,
        '--seeds', 1, '--max-images', 2])
    assert code == 0, stderr
    results = _results(work_dir)
    assert results['num_images'] == 2 and results['fingerprint']['ablation'] == 'mean'
    assert results['regions'] == ['full', 'cell_0_0', 'cell_0_1', 'cell_1_0', 'cell_1_1',
                                  'top', 'bottom', 'left', 'right']
    settings = _by_key(results)
    assert sorted(settings) == sorted(['clean', 'targeted/overall/N=16', 'random/N=16/seed=0'])
    metrics = settings['targeted/overall/N=16']['metrics']
    assert {'cell_1_1.mIoU', 'top.mIoU', 'bottom.mIoU'} <= set(metrics)
    assert 'center.mIoU' not in metrics and 'periphery_minus_center.mIoU' not in metrics
    assert ChannelRanking.load(work_dir / 'ranking.json').num_images == 4   # train images
    assert not os.path.exists(work_dir / 'iou_vs_border_distance.png')  # no border bands
    assert os.path.isfile(work_dir / 'miou_vs_channels.png')
    # mean ablation moves the attacked settings away from zero ablation; clean stays clean
    zero = _by_key(_results(full_run))
    assert settings['targeted/overall/N=16']['per_class']['full'] != \
        zero['targeted/overall/N=16']['per_class']['full']


# ----------------------------------------------------------------------------- bad input
# case: (arguments after CONFIG CHECKPOINT, phrases the error must contain). {missing} is a
# path that does not exist, {empty} a Cityscapes layout without images.
BAD_INPUT = {
    'too many channels': (['--num-channels', '200'], ['cannot remove 200 channels', 'has 128']),
    'unknown layer': (['--layer', 'backbone.layer9'],
                      ["Unknown layer 'backbone.layer9'", 'backbone.layer4']),
    'layer index out of range': (['--layer', 'backbone:9'], ['index 9 is out of range', '0..3']),
    'unknown attack region': (['--attack-region', 'middle'],
                              ["--attack-region 'middle'", 'overall, left, right, top, bottom']),
    'missing checkpoint': (['CHECKPOINT={missing}.pth'], ['Checkpoint file not found']),
    'missing config': (['CONFIG={missing}.py'], ['Config file not found']),
    'empty dataset dir': (['--cfg-options', 'test_dataloader.dataset.data_root={empty}'],
                          ['data_root=', '--cfg-options test_dataloader.dataset.data_root=DIR']),
    'missing dataset dir': (['--cfg-options', 'test_dataloader.dataset.data_root={missing}'],
                            ['data_root=', 'No such file or directory']),
}


@pytest.mark.parametrize('case', list(BAD_INPUT))
def test_bad_input_fails_with_one_clear_line(case, files, tmp_path):
    arguments, phrases = BAD_INPUT[case]
    empty, missing = tmp_path / 'empty', tmp_path / 'missing'
    for split_dir in ('leftImg8bit/val', 'gtFine/val'):
        (empty / split_dir).mkdir(parents=True)
    config, checkpoint, options = files.config, files.checkpoint, []
    for argument in arguments:
        argument = argument.format(empty=empty, missing=missing)
        if argument.startswith('CHECKPOINT='):
            checkpoint = argument.split('=', 1)[1]
        elif argument.startswith('CONFIG='):
            config = argument.split('=', 1)[1]
        else:
            options.append(argument)
    if '--num-channels' not in options:
        options += ['--num-channels', '8']
    work_dir = tmp_path / 'work'
    code, stderr = run_cli(CLI, [config, checkpoint, '--work-dir', work_dir, '--seeds', '1',
                                 '--no-overlays'] + options)
    assert code == 2
    assert stderr.startswith('error: ') and stderr.count('\n') == 1, stderr
    for phrase in phrases + ([str(missing)] if '{missing}' in str(arguments) else []):
        assert phrase in stderr, (phrase, stderr)
    assert not os.path.exists(work_dir)  # nothing half-written
