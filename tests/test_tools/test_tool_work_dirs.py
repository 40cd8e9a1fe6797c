"""tools/depth_profile.py and tools/consistency.py take their work dir like tools/attack.py
(issue 23): a fresh run into a folder of the user's is refused before the model is loaded,
touching nothing; a folder the tool wrote itself is taken again; a user's file added to it
under one of the tool's output names is refused, never replaced.

Before, both tools wrote into any folder: a user's profile.md, layers/*/results.json or
consistency.json was replaced without a word. The expectation is the user's files as the
test wrote them (their bytes), independent of the code under test.
"""
from __future__ import annotations

import pytest
from helpers import (load_tool, make_checkpoint, one_torch_thread, run_cli, snapshot,  # noqa: F401
                     write_tiny_config)

import posattack.evaluation.consistency as consistency
import posattack.profile.run as profile_run
from posattack.utils.owned_files import MANIFEST_NAME

PROFILE = load_tool('depth_profile')
CONSISTENCY = load_tool('consistency')
PROFILE_ARGS = ['--layers', 'backbone:3', '--fractions', '0.1', '--seeds', '1', '--bootstrap',
                '20', '--max-images', '2']
CONSISTENCY_ARGS = ['--max-images', '2', '--max-shift', '4']


@pytest.fixture(scope='module')
def files(synthetic_root, tmp_path_factory):
    root = tmp_path_factory.mktemp('tool_work_dirs')
    config = write_tiny_config(root / 'tiny.py', synthetic_root)
    return config, make_checkpoint(config, root / 'model.pth')


def _refused(code, stderr, folder):
    lines = [line for line in stderr.splitlines() if line.startswith('error: ')]
    assert code == 2 and len(lines) == 1, stderr
    assert f'--work-dir {folder} is not empty and posattack did not write it' in lines[0]
    assert 'pass a new or empty folder' in lines[0]


def _no_model(monkeypatch, module):
    def refuse(*args, **kwargs):
        raise AssertionError('the model was loaded before the work dir was checked')
    monkeypatch.setattr(module, 'load_segmentor', refuse)


@pytest.mark.parametrize('tool, module, args, users_files', [
    (PROFILE, profile_run, PROFILE_ARGS,
     {'profile.md': 'my notes', 'layers/backbone_3/results.json': '{"mine": 1}'}),
    (CONSISTENCY, consistency, CONSISTENCY_ARGS,
     {'consistency.json': '{"mine": 1}', 'consistency_details.json': '[]'}),
], ids=['depth_profile', 'consistency'])
def test_a_run_into_a_users_folder_is_refused_and_touches_nothing(files, tmp_path, monkeypatch,
                                                                  tool, module, args,
                                                                  users_files):
    config, checkpoint = files
    mine = tmp_path / 'mine'
    for name, text in users_files.items():
        (mine / name).parent.mkdir(parents=True, exist_ok=True)
        (mine / name).write_text(text)
    before = snapshot(mine)
    _no_model(monkeypatch, module)
    code, stderr = run_cli(tool, [config, checkpoint, '--work-dir', mine, *args])
    _refused(code, stderr, mine)
    assert snapshot(mine) == before


@pytest.mark.parametrize('tool, args', [(PROFILE, PROFILE_ARGS), (CONSISTENCY, CONSISTENCY_ARGS)],
                         ids=['depth_profile', 'consistency'])
def test_its_own_work_dir_is_taken_again_and_a_users_file_in_it_stays(files, tmp_path, tool,
                                                                      args):
    config, checkpoint = files
    work_dir = tmp_path / 'work'
    argv = [config, checkpoint, '--work-dir', work_dir, *args]
    assert run_cli(tool, argv)[0] == 0
    assert (work_dir / MANIFEST_NAME).is_file()
    (work_dir / 'notes.txt').write_text('mine')
    code, stderr = run_cli(tool, argv)  # a fresh run again: the folder is posattack's
    assert code == 0, stderr
    assert (work_dir / 'notes.txt').read_text() == 'mine'


def test_a_users_file_where_the_profile_writes_next_is_refused_not_replaced(files, tmp_path):
    config, checkpoint = files
    work_dir = tmp_path / 'work'
    argv = [config, checkpoint, '--work-dir', work_dir, *PROFILE_ARGS]
    assert run_cli(PROFILE, argv)[0] == 0
    mine = work_dir / 'rankings' / 'backbone.layer2.json'   # a layer not profiled yet
    mine.write_text('my ranking')
    code, stderr = run_cli(PROFILE, argv + ['--layers', 'backbone.layer2', 'backbone:3'])
    assert code == 2 and f'refusing to replace {mine}' in stderr, stderr
    assert mine.read_text() == 'my ranking'


def test_a_profile_work_dir_of_an_older_posattack_is_adopted(files, tmp_path):
    config, checkpoint = files
    work_dir = tmp_path / 'old'
    argv = [config, checkpoint, '--work-dir', work_dir, *PROFILE_ARGS]
    assert run_cli(PROFILE, argv)[0] == 0
    (work_dir / MANIFEST_NAME).unlink()  # as an older posattack left it
    code, stderr = run_cli(PROFILE, argv + ['--resume'])
    assert code == 0, stderr
    assert 'layers/backbone_3/results.json' in (work_dir / MANIFEST_NAME).read_text()
