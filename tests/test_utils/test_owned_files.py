"""posattack.utils.owned_files: only files posattack wrote are ever removed or replaced (issue 23).

The expectation in each test is the user's files, byte for byte, as the test made them.
"""
from __future__ import annotations

import json
import os

import pytest

from posattack.utils.fileio import TEMP_PREFIX, write_json_atomic, write_text_atomic
from posattack.utils.owned_files import (MANIFEST_NAME, OwnedFolder, claim_folder, owned_folders,
                                         remove_owned, unused_path)

LEGACY = (('results.json', ('posattack.results/1', )), )


def test_a_folder_of_the_users_is_refused_a_new_or_empty_one_is_not(tmp_path):
    (tmp_path / 'mine').mkdir()
    (tmp_path / 'mine' / 'report.md').write_text('my notes')
    (tmp_path / 'mine' / 'results.json').write_text('{"mine": 1}')  # not posattack's format
    with pytest.raises(ValueError) as error:
        claim_folder(str(tmp_path / 'mine'), '--work-dir', legacy=LEGACY,
                     legacy_outputs=['report.md', 'results.json'])
    message = str(error.value)
    assert f'--work-dir {tmp_path / "mine"} is not empty' in message
    assert 'report.md, results.json' in message and 'pass a new or empty folder' in message
    assert '\n' not in message
    assert (tmp_path / 'mine' / 'report.md').read_text() == 'my notes'
    assert claim_folder(str(tmp_path / 'new'), '--work-dir').files == set()
    (tmp_path / 'locked').mkdir()
    (tmp_path / 'locked' / '.lock').write_text('1')  # a killed run's lock file: nothing of the user
    assert claim_folder(str(tmp_path / 'locked'), '--work-dir').files == set()


def test_writes_are_recorded_and_a_users_file_is_never_replaced(tmp_path):
    owned = claim_folder(str(tmp_path), '--work-dir')
    with owned_folders([owned]):
        write_json_atomic(str(tmp_path / 'results.json'), {'a': 1})
        write_text_atomic(str(tmp_path / 'overlays' / 'x.png'), 'panel')
        (tmp_path / 'notes.txt').write_text('mine')  # the user's, added during the run
        with pytest.raises(ValueError, match='refusing to replace .*notes.txt: posattack did '
                           'not write it'):
            write_text_atomic(str(tmp_path / 'notes.txt'), 'ours')
        write_json_atomic(str(tmp_path / 'results.json'), {'a': 2})  # ours: replaced
    assert (tmp_path / 'notes.txt').read_text() == 'mine'
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest['files'] == ['overlays/x.png', 'results.json']
    # the next run clears exactly those
    again = claim_folder(str(tmp_path), '--work-dir')
    again.remove_files()
    assert sorted(os.listdir(tmp_path)) == [MANIFEST_NAME, 'notes.txt', 'overlays']
    assert os.listdir(tmp_path / 'overlays') == []


def test_a_work_dir_of_an_older_posattack_is_adopted_by_its_known_names(tmp_path):
    (tmp_path / 'results.json').write_text(json.dumps({'format': 'posattack.results/1'}))
    (tmp_path / 'report.md').write_text('old report')
    (tmp_path / 'notes.txt').write_text('mine')
    owned = claim_folder(str(tmp_path), '--work-dir', legacy=LEGACY,
                         legacy_outputs=['results.json', 'report.md', 'results.csv'])
    assert owned.files == {'results.json', 'report.md'}
    owned.remove_files()
    assert sorted(os.listdir(tmp_path)) == [MANIFEST_NAME, 'notes.txt']


def test_a_show_dir_another_work_dir_owns_is_refused(tmp_path):
    shown = claim_folder(str(tmp_path / 'panels'), '--show-dir', owner=str(tmp_path / 'a'),
                         refuse_foreign=False)
    os.makedirs(tmp_path / 'panels')
    shown.save()
    assert claim_folder(str(tmp_path / 'panels'), '--show-dir', owner=str(tmp_path / 'a'),
                        refuse_foreign=False) is not None  # its own run: fine
    with pytest.raises(ValueError, match=f'--show-dir {tmp_path / "panels"} holds the panels '
                       f'of the run in {tmp_path / "a"}: pass another --show-dir'):
        claim_folder(str(tmp_path / 'panels'), '--show-dir', owner=str(tmp_path / 'b'),
                     refuse_foreign=False)


def test_temporaries_of_a_killed_run_go_and_look_alikes_of_the_user_stay(tmp_path):
    ours = tmp_path / f'{TEMP_PREFIX}results.json.k3j2.tmp'
    ours.write_text('half')
    (tmp_path / '.results.json.k3j2.tmp').write_text('the user named it so')
    owned = claim_folder(str(tmp_path), '--work-dir', refuse_foreign=False)
    assert owned.remove_debris() == [ours.name]
    assert os.listdir(tmp_path) == ['.results.json.k3j2.tmp']


def test_a_panel_named_like_a_users_file_takes_another_name(tmp_path):
    (tmp_path / 'img.png').write_text('mine')
    owned = claim_folder(str(tmp_path), '--show-dir', refuse_foreign=False)
    with owned_folders([owned]):
        path = unused_path(str(tmp_path / 'img.png'))
        assert path == str(tmp_path / 'img-2.png')
        write_text_atomic(path, 'panel')
        assert unused_path(path) == path  # ours now: the next run replaces it
    assert (tmp_path / 'img.png').read_text() == 'mine'


def test_remove_owned_removes_only_listed_files(tmp_path):
    OwnedFolder(str(tmp_path), ['a.png']).save()
    (tmp_path / 'a.png').write_text('ours')
    (tmp_path / 'b.png').write_text('mine')
    assert remove_owned(str(tmp_path / 'a.png')) and remove_owned(str(tmp_path / 'b.png')) is False
    assert sorted(os.listdir(tmp_path)) == [MANIFEST_NAME, 'b.png']


def test_an_output_path_that_is_a_folder_is_one_line(tmp_path):
    (tmp_path / 'ranking.json').mkdir()
    with pytest.raises(ValueError, match='ranking.json is a folder, where a file is to be '
                       'written'):
        write_text_atomic(str(tmp_path / 'ranking.json'), '{}')


def test_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    import errno

    import posattack.utils.fileio as fileio
    target = tmp_path / 'results.json'
    target.write_text('{"old": 1}')

    def full(fd):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(fileio.os, 'fsync', full)
    with pytest.raises(fileio.DiskFullError, match=f'no space left on the device to write '
                       f'{target}') as error:
        write_json_atomic(str(target), {'new': 2})
    assert isinstance(error.value, RuntimeError) and '\n' not in str(error.value)
    assert target.read_text() == '{"old": 1}' and os.listdir(tmp_path) == ['results.json']


def test_a_manifest_naming_files_outside_its_folder_never_removes_them(tmp_path):
    """A hand-edited or damaged manifest listed '../notes.txt': clearing the earlier run
    deleted the user's file beside the work dir."""
    work = tmp_path / 'work'
    work.mkdir()
    (tmp_path / 'notes.txt').write_text('mine')
    (work / 'report.md').write_text('ours')
    with open(work / MANIFEST_NAME, 'w') as handle:
        json.dump(dict(format='posattack.files/1', owner=None,
                       files=['report.md', '../notes.txt', str(tmp_path / 'notes.txt')]), handle)
    claim_folder(str(work), '--work-dir').remove_files()
    assert (tmp_path / 'notes.txt').read_text() == 'mine'
    assert not (work / 'report.md').exists()


def test_a_users_file_put_under_an_output_name_posattack_wrote_is_told_apart(tmp_path):
    """Was a known limit: the manifest listed the name, so a fresh run took the user's
    report.md (written over posattack's) for its own and deleted or replaced it."""
    work = tmp_path / 'work'
    with owned_folders([claim_folder(str(work), '--work-dir')]):
        write_text_atomic(str(work / 'report.md'), 'ours')
        write_text_atomic(str(work / 'results.json'), '{}')
    copy = tmp_path / 'copy'   # cp -r: new times, same bytes: still posattack's
    os.mkdir(copy)
    for name in os.listdir(work):
        (copy / name).write_bytes((work / name).read_bytes())
    with owned_folders([claim_folder(str(copy), '--work-dir')]):
        write_text_atomic(str(copy / 'report.md'), 'ours again')
    (work / 'report.md').unlink()
    (work / 'report.md').write_text('my own report')
    with pytest.raises(ValueError, match='report.md changed since posattack wrote it'):
        claim_folder(str(work), '--work-dir')
    owned = OwnedFolder.read(str(work))
    with owned_folders([owned]):
        with pytest.raises(ValueError, match='refusing to replace .*report.md: it changed'):
            write_text_atomic(str(work / 'report.md'), 'new')
    owned.remove_files()
    assert (work / 'report.md').read_text() == 'my own report'
    assert not (work / 'results.json').exists()
    assert remove_owned(str(work / 'report.md')) is False
