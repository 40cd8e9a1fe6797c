"""--resume for the options that were still refused or unchecked (issue 23): other
--regions (the attack and the depth profile), and test images edited in place.

The expectations are independent runs: a fresh run with the new regions gives the numbers
a resumed one must give; an image edited in place is named.
"""
from __future__ import annotations

import json
import os
import shutil

import pytest
from helpers import (load_cli, load_tool, one_torch_thread, run_cli, snapshot,  # noqa: F401
                     tiny_cli_files, write_tiny_config)

CLI = load_cli()
SMALL = ['--num-channels', 8, '--seeds', 1, '--max-images', 3, '--bootstrap', 50]


@pytest.fixture(scope='module')
def files(synthetic_root, tmp_path_factory):
    return tiny_cli_files(tmp_path_factory.mktemp('resume_more'), synthetic_root)


def _argv(files, work_dir, *extra):
    return [files.config, files.checkpoint, '--work-dir', work_dir, *extra] + SMALL


def _results(work_dir):
    with open(os.path.join(work_dir, 'results.json')) as f:
        return json.load(f)


def _scores(work_dir):
    return {s['key']: s['metrics'] for s in _results(work_dir)['settings']}


def test_resume_with_more_regions_scores_them_for_every_setting(files, tmp_path):
    """Was refused: 'regions: [...] there vs [...] now'."""
    work_dir = tmp_path / 'work'
    assert run_cli(CLI, _argv(files, work_dir, '--num-overlays', 1, '--regions', 'paper'))[0] == 0
    panels = snapshot(work_dir / 'overlays')
    ranking = (work_dir / 'ranking.json').read_bytes()
    code, stderr = run_cli(CLI, _argv(files, work_dir, '--num-overlays', 1, '--regions',
                                      'paper', 'halves', 'grid=2x2', '--resume'))
    assert code == 0, stderr
    fresh = tmp_path / 'fresh'
    assert run_cli(CLI, _argv(files, fresh, '--no-overlays', '--regions', 'paper', 'halves',
                              'grid=2x2'))[0] == 0
    assert _scores(work_dir) == _scores(fresh)
    assert 'cell_1_1.mIoU' in _scores(work_dir)['clean']
    assert _results(work_dir)['tests'] == _results(fresh)['tests']
    assert (work_dir / 'ranking.json').read_bytes() == ranking   # the identification kept
    assert snapshot(work_dir / 'overlays') == panels


def test_a_profile_resumed_with_other_regions_evaluates_its_layers_again(files, tmp_path):
    """Was refused: 'comes from a different profile (regions: ...)'."""
    profile = load_tool('depth_profile')
    base = [files.config, files.checkpoint, '--work-dir', tmp_path / 'profile', '--layers',
            'backbone:3', '--fractions', '0.1', '--seeds', '1', '--bootstrap', '20',
            '--max-images', '2']
    assert run_cli(profile, base + ['--regions', 'paper'])[0] == 0
    code, stderr = run_cli(profile, base + ['--regions', 'halves', '--resume'])
    assert code == 0, stderr
    fresh = [a if a != tmp_path / 'profile' else tmp_path / 'fresh' for a in base]
    assert run_cli(profile, fresh + ['--regions', 'halves'])[0] == 0
    layer = os.path.join('layers', 'backbone_3')
    assert _scores(tmp_path / 'profile' / layer) == _scores(tmp_path / 'fresh' / layer)
    assert 'left.mIoU' in _scores(tmp_path / 'fresh' / layer)['clean']


def _edit_in_place_keeping_the_size(path):
    """Change one pixel and write the PNG back at its old byte size (decoders stop at IEND,
    so zero bytes after it pad the file): the path-and-size fingerprint cannot see it."""
    import cv2
    size = os.path.getsize(path)
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    original = int(image[0, 0, 0])
    for value in range(256):
        image[0, 0, 0] = value
        data = cv2.imencode('.png', image, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()
        if len(data) <= size and value != original:
            with open(path, 'wb') as handle:
                handle.write(data + b'\0' * (size - len(data)))
            assert os.path.getsize(path) == size
            return
    raise AssertionError('no same-size edit found')


def test_resume_names_a_test_image_edited_in_place(files, tmp_path):
    """Was accepted: sizes and paths unchanged, old and new scores mixed."""
    data = tmp_path / 'data'
    shutil.copytree(files.data, data)
    config = write_tiny_config(tmp_path / 'tiny.py', data)
    argv = [config, files.checkpoint, '--work-dir', tmp_path / 'work', '--no-overlays'] + SMALL
    assert run_cli(CLI, argv)[0] == 0
    images = sorted((data / 'leftImg8bit' / 'val').rglob('*.png'))
    os.utime(images[1])   # touched, same bytes: accepted
    more = [a if a != 1 else 2 for a in argv]   # --seeds 2: a resume that adds a draw
    code, stderr = run_cli(CLI, more + ['--resume'])
    assert code == 0, stderr
    _edit_in_place_keeping_the_size(images[0])
    before = snapshot(tmp_path / 'work')
    code, stderr = run_cli(CLI, [a if a != 2 else 3 for a in more] + ['--resume'])
    assert code == 2 and stderr.count('\n') == 1, stderr
    assert f'the test file {images[0]} changed' in stderr and 'drop --resume' in stderr
    assert snapshot(tmp_path / 'work') == before


def test_a_profile_resume_refuses_other_data_and_images_edited_in_place(files, tmp_path):
    """Both were accepted: the profile's fingerprint held paths and the image count only,
    so a finished layer scored on other images was kept."""
    profile = load_tool('depth_profile')
    data = tmp_path / 'data'
    shutil.copytree(files.data, data)
    config = write_tiny_config(tmp_path / 'tiny.py', data)
    base = [config, files.checkpoint, '--work-dir', tmp_path / 'profile', '--layers',
            'backbone:3', '--fractions', '0.1', '--seeds', '1', '--bootstrap', '20',
            '--max-images', '2', '--resume']
    assert run_cli(profile, base)[0] == 0
    other = tmp_path / 'other'
    shutil.copytree(files.data, other)
    code, stderr = run_cli(profile, base + ['--cfg-options',
                                            f'test_dataloader.dataset.data_root={other}'])
    assert code == 2 and 'images_sha256: the test images differ' in stderr, stderr
    # a ranking file lost: identified again, not a 'not found'
    os.unlink(tmp_path / 'profile' / 'rankings' / 'backbone_3.json')
    code, stderr = run_cli(profile, base)
    assert code == 0, stderr
    assert (tmp_path / 'profile' / 'rankings' / 'backbone_3.json').is_file()
    images = sorted((data / 'leftImg8bit' / 'val').rglob('*.png'))
    _edit_in_place_keeping_the_size(images[0])
    code, stderr = run_cli(profile, base)
    assert code == 2 and f'the test file {images[0]} changed' in stderr, stderr
