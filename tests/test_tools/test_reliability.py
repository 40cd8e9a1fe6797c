"""tools/attack.py never reports a wrong result silently (issue 13, docs/reliability.md).

Each test reproduces a fault that used to end in a normal-looking report, a traceback, or
lost results, and checks what happens now: a one-line error naming the problem and the fix
(exit status 2), or a correct result. The CLI runs in this process (``main(argv)``).
"""
from __future__ import annotations

import json
import os
import os.path as osp
import re
import shutil
import signal
from types import SimpleNamespace

import pytest
import torch
from helpers import (REPO_ROOT, load_cli, one_torch_thread, run_cli, snapshot,  # noqa: F401
                     start_lock_holder, tiny_cli_files, write_tiny_config)

import posattack.attack.experiment as experiment
from posattack.channels.ranking import ChannelRanking
from posattack.data.synthetic import generate_cityscapes
from posattack.utils.owned_files import MANIFEST_NAME as OWNED_FILES_MANIFEST

CLI = load_cli()
# 3 images, N = 8 of 128 channels, one random seed: clean, targeted, random
# Ranked on the scored images during the sweep (--identify-on test): these runs have two
# passes (clean and random, then targeted), which the kill and resume tests stop between.
SMALL = ['--num-channels', 8, '--seeds', 1, '--max-images', 3, '--identify-on', 'test']


@pytest.fixture(scope='module')
def files(synthetic_root, tmp_path_factory):
    return tiny_cli_files(tmp_path_factory.mktemp('reliability'), synthetic_root)


@pytest.fixture(scope='module')
def reference(files):
    """An uninterrupted run with 2 overlays: what a correct run writes."""
    work_dir = files.root / 'reference'
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', work_dir,
                                 '--num-overlays', 2] + SMALL)
    assert code == 0, stderr
    return work_dir


@pytest.fixture
def own_data(files, tmp_path):
    """A dataset of this test's own (the 4 train and 4 val images of the session's, seed 0)
    and a config on it, so that the test may regenerate or damage it (the train images rank
    the channels, held out from the val images that are scored)."""
    root = tmp_path / 'data'
    generate_cityscapes(root, num_train=4, num_val=4, size=(64, 128), seed=0)
    return SimpleNamespace(root=root, config=write_tiny_config(tmp_path / 'own.py', root))


def _results(work_dir):
    with open(osp.join(work_dir, 'results.json')) as f:
        return json.load(f)


def _scores(work_dir):
    return {s['key']: (s['metrics'], s['per_class']) for s in _results(work_dir)['settings']}


def _one_line_error(code, stderr, *phrases):
    assert code == 2, stderr
    assert stderr.startswith('error: ') and stderr.count('\n') == 1, stderr
    for phrase in phrases:
        assert phrase in stderr, (phrase, stderr)


def _val_images(root):
    return sorted(str(p) for p in (root / 'leftImg8bit' / 'val').rglob('*_leftImg8bit.png'))


@pytest.fixture
def no_compute(monkeypatch):
    """Fails the test if the run gets as far as loading the model."""
    def refuse(*args, **kwargs):
        raise AssertionError('the model was loaded: the check came after compute began')
    monkeypatch.setattr(experiment, 'load_segmentor', refuse)


# ----------------------------------------------------------------------------- 1. resume
def test_resume_refuses_a_dataset_regenerated_in_place(files, own_data, tmp_path):
    """Same data_root, same image count, other images: merged in silently before."""
    work_dir = tmp_path / 'work'
    argv = [own_data.config, files.checkpoint, '--work-dir', work_dir, '--no-overlays'] + SMALL
    assert run_cli(CLI, argv)[0] == 0
    generate_cityscapes(own_data.root, num_train=0, num_val=4, size=(64, 128), seed=1)
    before = snapshot(work_dir)
    code, stderr = run_cli(CLI, argv + ['--resume'])
    _one_line_error(code, stderr, '--resume refused', 'the test images differ')
    assert 'config' not in stderr.split('(', 1)[1]  # the config did not change
    assert snapshot(work_dir) == before


def test_resume_refuses_other_cfg_options(files, reference, tmp_path):
    work_dir = tmp_path / 'work'
    shutil.copytree(reference, work_dir)
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', work_dir,
                                 '--resume', '--num-overlays', 2, '--cfg-options',
                                 'model.decode_head.align_corners=True'] + SMALL)
    _one_line_error(code, stderr, '--resume refused', 'config_sha256: the config contents '
                    'differ (model or test data settings, --cfg-options included)')


def test_resume_refuses_a_ranking_left_from_other_images(files, own_data, tmp_path):
    """ranking.json without results.json (a run killed in pass 1's last write) was reused
    for whatever images the next --resume had."""
    work_dir = tmp_path / 'work'
    argv = [own_data.config, files.checkpoint, '--work-dir', work_dir, '--no-overlays'] + SMALL
    assert run_cli(CLI, argv)[0] == 0
    os.unlink(work_dir / 'results.json')
    generate_cityscapes(own_data.root, num_train=0, num_val=4, size=(64, 128), seed=1)
    code, stderr = run_cli(CLI, argv + ['--resume'])
    _one_line_error(code, stderr, f'{work_dir / "ranking.json"} was identified in another '
                    'experiment', 'images_sha256: the test images differ', 'Delete it')


def test_resume_keeps_a_ranking_left_from_the_same_images(files, reference, tmp_path):
    work_dir = tmp_path / 'work'
    os.makedirs(work_dir)
    shutil.copy(reference / 'ranking.json', work_dir / 'ranking.json')
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', work_dir,
                                 '--resume', '--num-overlays', 2] + SMALL)
    assert code == 0, stderr
    assert _scores(work_dir) == _scores(reference)


def test_resume_explains_a_work_dir_of_an_older_posattack(files, reference, tmp_path):
    work_dir = tmp_path / 'work'
    shutil.copytree(reference, work_dir)
    results = _results(work_dir)
    for key in ('config_sha256', 'images_sha256', 'ranking_sha256'):
        del results['fingerprint'][key]
    (work_dir / 'results.json').write_text(json.dumps(results))
    argv = [files.config, files.checkpoint, '--work-dir', work_dir, '--resume',
            '--num-overlays', 2] + SMALL
    code, stderr = run_cli(CLI, argv)
    _one_line_error(code, stderr, 'was written by an older posattack that did not record '
                    'config_sha256, images_sha256, ranking_sha256', 'Drop --resume')
    # and a ranking.json of an older posattack (no record of its images)
    os.unlink(work_dir / 'results.json')
    ranking = json.loads((work_dir / 'ranking.json').read_text())
    del ranking['model']['identified_on']
    (work_dir / 'ranking.json').write_text(json.dumps(ranking))
    code, stderr = run_cli(CLI, argv)
    _one_line_error(code, stderr, 'does not record which images, config and checkpoint')


def test_resume_refuses_an_edited_ranking_file(files, reference, tmp_path):
    ranking_path = tmp_path / 'given.json'
    shutil.copy(reference / 'ranking.json', ranking_path)
    work_dir = tmp_path / 'work'
    argv = [files.config, files.checkpoint, '--work-dir', work_dir, '--no-overlays',
            '--ranking', ranking_path] + SMALL
    assert run_cli(CLI, argv)[0] == 0
    ranking = ChannelRanking.load(ranking_path)
    ranking.orders['overall'] = list(reversed(ranking.orders['overall']))
    ranking.order_rules.pop('overall')  # the reversed order no longer follows the scores
    ranking.save(ranking_path)
    code, stderr = run_cli(CLI, argv + ['--resume'])
    _one_line_error(code, stderr, 'ranking_sha256: the --ranking file contents differ')


# ----------------------------------------------------------------------------- 2. lock
@pytest.mark.slow
def test_a_locked_work_dir_is_refused_and_free_after_kill_9(files, tmp_path):
    work_dir = tmp_path / 'work'
    holder = start_lock_holder(work_dir)
    argv = [files.config, files.checkpoint, '--work-dir', work_dir, '--no-overlays',
            '--regions', 'paper', 'border=4', 'grid=3x3', 'frame=0.1', 'halves'] + SMALL
    try:
        code, stderr = run_cli(CLI, argv)
        _one_line_error(code, stderr, f'in use by process {holder.pid}', 'another --work-dir')
        assert os.listdir(work_dir) == ['.lock']  # nothing of ours written
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    # the README's region example, once refused for making 'left' twice
    code, stderr = run_cli(CLI, argv)
    assert code == 0, stderr
    assert _results(work_dir)['regions'] == (
        ['full', 'left', 'right', 'center', 'periphery', 'band_0', 'band_1', 'band_2',
         'band_3'] + [f'cell_{r}_{c}' for r in range(3) for c in range(3)]
        + ['frame', 'interior', 'top', 'bottom'])
    assert not (work_dir / '.lock').exists()


# The attack tool in a process of its own that stops for good once pass 1 is written (its
# targeted settings wait in pass 2): the moment a kill -9 is most likely to land.
_STALLED_ATTACK = """
import sys, time
sys.path.insert(0, sys.argv[1])
import posattack.attack.sweep as sweep
evaluate = sweep._Pass.evaluate
def stalled(self, *args):
    if any(s.mode == 'targeted' for s in self.settings):
        time.sleep(600)
    return evaluate(self, *args)
sweep._Pass.evaluate = stalled
import importlib.util
spec = importlib.util.spec_from_file_location('attack', sys.argv[2])
attack = importlib.util.module_from_spec(spec)
spec.loader.exec_module(attack)
attack.main(sys.argv[3:])
"""


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_bytes(files, reference, tmp_path):
    import subprocess
    import sys
    import time
    work_dir = tmp_path / 'work'
    argv = [files.config, files.checkpoint, '--work-dir', work_dir, '--num-overlays', 2] + SMALL
    process = subprocess.Popen(
        [sys.executable, '-c', _STALLED_ATTACK, REPO_ROOT, osp.join(REPO_ROOT, 'tools',
                                                                     'attack.py')]
        + [str(a) for a in argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, OMP_NUM_THREADS='1'))
    try:
        deadline = time.time() + 300
        while not (work_dir / 'results.json').exists():
            assert process.poll() is None and time.time() < deadline, 'no pass 1'
            time.sleep(0.2)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert (work_dir / '.lock').read_text().strip() == str(process.pid)  # left behind
    assert len(_results(work_dir)['settings']) == 2  # clean and random: pass 1
    code, stderr = run_cli(CLI, argv + ['--resume'])
    assert code == 0, stderr
    # the config's LocalVisBackend logs each invocation in a folder named by its start time
    # (<timestamp>/vis_data, as mmengine's runners do): two invocations, two such folders
    resumed, expected = (_without_vis_logs(snapshot(work_dir)),
                         _without_vis_logs(snapshot(reference)))
    assert sorted(resumed) == sorted(expected)  # the stale .lock is gone too
    for name, data in expected.items():
        if name == OWNED_FILES_MANIFEST:   # the same files, sizes and hashes; written later
            data, resumed[name] = _without_times(data), _without_times(resumed[name])
        assert resumed[name] == data, name


def _without_times(manifest: bytes) -> dict:
    content = json.loads(manifest)
    content['stats'] = {name: [size, sha] for name, (size, _, sha) in content['stats'].items()}
    return content


def _without_vis_logs(files: dict) -> dict:
    return {name: data for name, data in files.items()
            if not re.fullmatch(r'\d{8}_\d{6}', name.split(os.sep)[0])}


# ----------------------------------------------------------------------------- 3. stale files
def _report_images(work_dir):
    text = (work_dir / 'report.md').read_text()
    return sorted(line.split('](', 1)[1].rstrip(')') for line in text.splitlines()
                  if line.startswith('!['))


def test_a_fresh_run_leaves_nothing_of_the_earlier_run(files, reference, tmp_path):
    work_dir = tmp_path / 'work'
    shutil.copytree(reference, work_dir)
    # a png posattack's manifest does not list (the user's, issue 23): it stays, unshown
    stray = 'frankfurt_000099_000019_leftImg8bit.png'
    (work_dir / 'overlays' / stray).write_bytes((reference / 'miou_vs_channels.png').read_bytes())
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', work_dir,
                                 '--regions', 'halves', '--num-overlays', 1] + SMALL)
    assert code == 0, stderr
    assert not (work_dir / 'iou_vs_border_distance.png').exists()  # no bands this time
    panels = sorted(set(os.listdir(work_dir / 'overlays')) - {stray})
    assert len(panels) == 1 and (work_dir / 'overlays' / stray).exists()
    assert _report_images(work_dir) == sorted(
        ['class_drop_heatmap.png', 'miou_vs_channels.png', f'overlays/{panels[0]}'])

    # a --show-dir of the user's: their files stay, and only this run's panels are shown
    show_dir = tmp_path / 'panels'
    show_dir.mkdir()
    (show_dir / 'mine.png').write_bytes(b'not ours')
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', work_dir,
                                 '--show-dir', show_dir, '--num-overlays', 1] + SMALL)
    assert code == 0, stderr
    assert (show_dir / 'mine.png').read_bytes() == b'not ours'
    assert os.listdir(work_dir / 'overlays') == [stray]  # this run's earlier panel went
    ours = sorted(set(os.listdir(show_dir)) - {'mine.png', OWNED_FILES_MANIFEST})
    assert len(ours) == 1
    assert [p for p in _report_images(work_dir) if 'panels' in p] == [f'../panels/{ours[0]}']


def test_a_kill_before_the_overlays_does_not_leave_a_report_without_them(
        files, reference, monkeypatch, tmp_path):
    work_dir = tmp_path / 'work'
    argv = [files.config, files.checkpoint, '--work-dir', work_dir, '--num-overlays', 2] + SMALL
    with monkeypatch.context() as patch:
        def killed(*args, **kwargs):
            raise KeyboardInterrupt
        patch.setattr(experiment, '_write_overlays', killed)
        assert run_cli(CLI, argv)[0] == 130
    assert _scores(work_dir) == _scores(reference)  # every setting finished
    code, stderr = run_cli(CLI, argv + ['--resume'])
    assert code == 0, stderr
    panels = sorted(os.listdir(work_dir / 'overlays'))
    assert panels == sorted(os.listdir(reference / 'overlays')) and len(panels) == 2
    for name in panels:
        assert (work_dir / 'overlays' / name).read_bytes() == \
            (reference / 'overlays' / name).read_bytes()
    assert [p for p in _report_images(work_dir) if p.startswith('overlays/')] == \
        [f'overlays/{name}' for name in panels]


# ----------------------------------------------------------------------------- 4-6. the model
def test_a_layer_the_prediction_does_not_read_is_refused(files, tmp_path):
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', tmp_path / 'w',
                                 '--layer', 'backbone:1', '--no-overlays'] + SMALL)
    _one_line_error(code, stderr, "removing all 32 channels of layer 'backbone:1' leaves the "
                    'logits unchanged', 'The decode head reads backbone:3',
                    '--layer backbone:3')
    assert not (tmp_path / 'w').exists()


def test_a_nan_checkpoint_is_refused_naming_the_module(files, tmp_path):
    checkpoint = torch.load(files.checkpoint, map_location='cpu')
    checkpoint['state_dict']['decode_head.conv_seg.weight'][3, 0, 0, 0] = float('nan')
    path = str(tmp_path / 'nan.pth')
    torch.save(checkpoint, path)
    code, stderr = run_cli(CLI, [files.config, path, '--work-dir', tmp_path / 'w',
                                 '--no-overlays'] + SMALL)
    _one_line_error(code, stderr, 'the model produces NaN/inf logits',
                    'first in module decode_head.conv_seg (Conv2d)',
                    'its weights hold NaN/inf in decode_head.conv_seg.weight')


def test_a_ranking_of_another_layer_is_refused_unless_allowed(files, reference, tmp_path):
    ranking = json.loads((reference / 'ranking.json').read_text())
    ranking['layer'] = 'backbone.layer4'  # the same tensor under another name
    path = tmp_path / 'other_layer.json'
    path.write_text(json.dumps(ranking))
    argv = [files.config, files.checkpoint, '--work-dir', tmp_path / 'w', '--no-overlays',
            '--ranking', path] + SMALL
    code, stderr = run_cli(CLI, argv)
    _one_line_error(code, stderr, "ranks the channels of layer 'backbone.layer4'",
                    "this run attacks 'backbone:3'", '--allow-ranking-layer-mismatch')
    code, stderr = run_cli(CLI, argv + ['--allow-ranking-layer-mismatch'])
    assert code == 0, stderr
    assert _scores(tmp_path / 'w') == _scores(reference)


# ----------------------------------------------------------------------------- 7. bad input
def test_cfg_options_without_equals_is_a_usage_error(files, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        CLI.main([files.config, files.checkpoint, '--work-dir', str(tmp_path),
                  '--cfg-options', 'foo'])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'foo' is not KEY=VALUE" in last and '--cfg-options test_dataloader' in last


@pytest.mark.parametrize('case', ['work dir is a file', 'show dir is a file',
                                  'unwritable work dir', 'launcher outside torchrun'])
def test_unusable_folders_and_launcher_fail_before_any_compute(case, files, tmp_path,
                                                               no_compute, monkeypatch):
    work_dir, extra = tmp_path / 'work', []
    if case == 'work dir is a file':
        work_dir.write_text('')
        phrases = [f'--work-dir {work_dir} is a file, not a folder']
    elif case == 'show dir is a file':
        (tmp_path / 'panels').write_text('')
        extra = ['--show-dir', tmp_path / 'panels']
        phrases = [f'--show-dir {tmp_path / "panels"} is a file']
    elif case == 'unwritable work dir':
        work_dir = '/sys/posattack-work'  # not writable, not even for root
        phrases = [f'--work-dir {work_dir} is not writable', 'a folder you can write to']
    else:
        for name in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
            monkeypatch.delenv(name, raising=False)
        extra = ['--launcher', 'pytorch']
        phrases = ['--launcher pytorch needs the environment torchrun sets', 'torchrun']
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', work_dir]
                           + extra + SMALL)
    _one_line_error(code, stderr, *phrases)
    if case == 'show dir is a file':
        assert not work_dir.exists()  # the work dir it created for the check is gone


def test_a_probe_config_is_refused_naming_the_model(files, tmp_path, no_compute):
    config = osp.join(REPO_ROOT, 'configs', 'probes',
                      'gapnet_r18-w16_grid3-location_synthetic.py')
    code, stderr = run_cli(CLI, [config, files.checkpoint, '--work-dir', tmp_path / 'w'])
    _one_line_error(code, stderr, 'builds a GAPNet, not an MMSegmentation segmentor',
                    'tools/probe.py')


@pytest.mark.parametrize('damage', ['truncated image', 'junk label map'])
def test_a_corrupt_png_is_named(damage, files, own_data, tmp_path):
    image = _val_images(own_data.root)[1]  # the second image: fails inside the sweep
    if damage == 'truncated image':
        victim = image
        data = open(victim, 'rb').read()
        open(victim, 'wb').write(data[:len(data) // 2])
    else:
        victim = image.replace('leftImg8bit', 'gtFine', 1).replace(
            '_leftImg8bit.png', '_gtFine_labelTrainIds.png')
        open(victim, 'wb').write(os.urandom(300))
    code, stderr = run_cli(CLI, [own_data.config, files.checkpoint, '--work-dir',
                                 tmp_path / 'w', '--no-overlays'] + SMALL)
    _one_line_error(code, stderr, 'test sample 1 cannot be loaded', f'{victim} is unreadable',
                    'corrupt or truncated', 'replace the file')


def test_binary_junk_ranking_and_zero_batch_size(files, tmp_path):
    junk = tmp_path / 'ranking.json'
    junk.write_bytes(bytes(range(256)) * 4)
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', tmp_path / 'w',
                                 '--ranking', junk] + SMALL)
    _one_line_error(code, stderr, f'{junk}: not a ranking file (binary content')
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', tmp_path / 'w',
                                 '--batch-size', 0] + SMALL)
    _one_line_error(code, stderr, '--batch-size must be >= 1, got 0')
    assert 'data_root' not in stderr
