"""A fresh sweep of bad inputs and faults over the four model tools (issue 23,
docs/reliability.md): each case was a traceback, a hang or a lost file before, and is one
line now (exit 2, or 130 for Ctrl-C), checked before the compute where the input allows.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import (REPO_ROOT, load_cli, load_tool, make_checkpoint,  # noqa: F401
                     one_torch_thread, run_cli, snapshot, write_tiny_config)

CLI = load_cli()
SMALL = ['--num-channels', 8, '--seeds', 1, '--max-images', 2, '--bootstrap', 20,
         '--no-overlays']


@pytest.fixture(scope='module')
def files(synthetic_root, tmp_path_factory):
    root = tmp_path_factory.mktemp('sweep')
    config = write_tiny_config(root / 'tiny.py', synthetic_root)
    return config, make_checkpoint(config, root / 'model.pth')


def _one_line(code, stderr, *phrases, status=2):
    lines = [line for line in stderr.splitlines() if line.startswith(('error: ',
                                                                      'interrupted: '))]
    assert code == status and len(lines) == 1 and 'Traceback' not in stderr, stderr
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])


@pytest.mark.parametrize('option, phrase', [
    ('test_dataloader=None', 'the config has no test_dataloader with a dataset'),  # traceback
    ('test_dataloader.batch_size=abc', 'test_dataloader.batch_size must be a whole number'),
    ('test_dataloader.dataset.pipeline=[]', "end with dict(type='PackSegInputs')"),  # 'inputs'
])
def test_odd_cfg_options_name_the_setting(files, tmp_path, option, phrase):
    config, checkpoint = files
    code, stderr = run_cli(CLI, [config, checkpoint, '--work-dir', tmp_path / 'w',
                                 '--cfg-options', option] + SMALL)
    _one_line(code, stderr, phrase)
    assert not (tmp_path / 'w').exists()  # a refused run leaves no folder


def test_a_truncated_ranking_json_on_resume_names_the_fix(files, tmp_path):
    config, checkpoint = files
    argv = [config, checkpoint, '--work-dir', tmp_path / 'w'] + SMALL
    assert run_cli(CLI, argv)[0] == 0
    ranking = tmp_path / 'w' / 'ranking.json'
    ranking.write_bytes(ranking.read_bytes()[:100])
    code, stderr = run_cli(CLI, argv + ['--resume', '--seeds', 2])
    _one_line(code, stderr, f'Delete {ranking} to identify again')


@pytest.mark.slow  # a process: identify's own __main__ block
def test_identify_never_replaces_a_users_file_at_out(files, tmp_path):
    config, checkpoint = files
    mine = tmp_path / 'notes.json'
    mine.write_text('{"my": "notes"}')
    completed = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, 'tools', 'identify.py'), config, checkpoint,
         '--split', 'val', '--num-images', '2', '--out', str(mine)], capture_output=True,
        text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    _one_line(completed.returncode, completed.stderr, f'--out {mine} exists and is not a file '
              'posattack wrote')
    assert mine.read_text() == '{"my": "notes"}'   # was overwritten with a ranking


def test_consistency_trials_are_bounded_before_any_compute(files, tmp_path):
    config, checkpoint = files
    code, stderr = run_cli(load_tool('consistency'), [
        config, checkpoint, '--work-dir', tmp_path / 'w', '--trials', 10**8])  # grew unbounded
    _one_line(code, stderr, 'at most 64 crop pairs per image', '--trials')


@pytest.mark.parametrize('tool', ['consistency', pytest.param('identify',
                                                                marks=pytest.mark.slow)])
def test_ctrl_c_is_one_line_and_130(files, tmp_path, monkeypatch, tool):
    config, checkpoint = files

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    if tool == 'consistency':
        import posattack.evaluation.consistency as consistency
        monkeypatch.setattr(consistency, 'load_segmentor', interrupted)
        code, stderr = run_cli(load_tool('consistency'), [config, checkpoint, '--work-dir',
                                                          tmp_path / 'w'])
        _one_line(code, stderr, 'interrupted', status=130)
        return
    # identify's __main__ block is what a user runs: a subprocess, interrupted in the load
    script = ('import runpy, sys, posattack.models.builder as b\n'
              'def stop(*a, **k): raise KeyboardInterrupt\n'
              'b.load_segmentor = stop\n'
              f'sys.argv = ["identify.py", {config!r}, {checkpoint!r}, "--out", '
              f'{str(tmp_path / "r.json")!r}]\n'
              f'runpy.run_path({os.path.join(REPO_ROOT, "tools", "identify.py")!r}, '
              'run_name="__main__")\n')
    completed = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                               timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    _one_line(completed.returncode, completed.stderr, 'interrupted', status=130)


@pytest.mark.slow  # a process: the file size limit must not bind the test runner
def test_a_file_size_limit_while_writing_is_one_line_and_keeps_the_old_file(tmp_path):
    """ulimit -f (EFBIG) was a traceback; the disk-full path named ENOSPC only."""
    target = tmp_path / 'results.json'
    target.write_text('old')
    script = ('import resource, signal\n'
              'signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n'
              'resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))\n'
              'from posattack.utils.fileio import DiskFullError, write_text_atomic\n'
              'try:\n'
              f'    write_text_atomic({str(target)!r}, "x" * 100000)\n'
              'except DiskFullError as error:\n'
              '    print(error)\n')
    completed = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                               timeout=120, env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    assert f'no space left on the device to write {target}' in completed.stdout, completed
    assert target.read_text() == 'old'
    assert os.listdir(tmp_path) == ['results.json']   # no temporary left
