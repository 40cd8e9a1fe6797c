"""tools/attack.py never loses a user's file, resumes for every option, and refuses
mismatched provenance in one line (issue 23, docs/reliability.md).

Each test reproduces a fault of the issue: a user's file deleted or replaced, a resume that
failed or lost overlays, a per-image file or ranking of another run taken silently, a
traceback. The expectation is independent of the code under test: the user's files as the
test wrote them, or an uninterrupted run's numbers.
"""
from __future__ import annotations

import json
import os
import shutil
import signal

import numpy as np
import pytest
from helpers import (load_cli, one_torch_thread, run_cli, snapshot, start_lock_holder,  # noqa: F401
                     tiny_cli_files, write_tiny_config)

import posattack.attack.experiment as experiment
from posattack.utils.fileio import TEMP_PREFIX
from posattack.utils.owned_files import MANIFEST_NAME

CLI = load_cli()
SMALL = ['--num-channels', 8, '--seeds', 1, '--max-images', 3]


@pytest.fixture(scope='module')
def files(synthetic_root, tmp_path_factory):
    return tiny_cli_files(tmp_path_factory.mktemp('safety'), synthetic_root, other=1)


def _argv(files, work_dir, *extra, checkpoint=None):
    return [files.config, checkpoint or files.checkpoint, '--work-dir', work_dir,
            *extra] + SMALL


def _one_line_error(code, stderr, *phrases):
    assert code == 2, stderr
    assert stderr.startswith('error: ') and stderr.count('\n') == 1, stderr
    for phrase in phrases:
        assert phrase in stderr, (phrase, stderr)


def _scores(work_dir):
    with open(os.path.join(work_dir, 'results.json')) as f:
        return {s['key']: s['metrics'] for s in json.load(f)['settings']}


@pytest.fixture
def no_compute(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError('the model was loaded: the check came after compute began')
    monkeypatch.setattr(experiment, 'load_segmentor', refuse)


# ----------------------------------------------------------------------------- 1. user files
def test_a_fresh_run_into_a_users_folder_is_refused_and_touches_nothing(files, tmp_path,
                                                                        no_compute):
    mine = tmp_path / 'mine'
    (mine / 'overlays').mkdir(parents=True)
    for name, text in [('report.md', 'my report'), ('results.json', '{"mine": true}'),
                       ('results.csv', 'a,b'), ('overlays/x.png', 'my picture')]:
        (mine / name).write_text(text)
    before = snapshot(mine)
    code, stderr = run_cli(CLI, _argv(files, mine, '--no-overlays'))
    _one_line_error(code, stderr, f'--work-dir {mine} is not empty and posattack did not '
                    'write it', 'pass a new or empty folder')
    assert snapshot(mine) == before


@pytest.mark.slow   # over 3 s of CPU (measured 3.2 s): two runs of the attack
def test_a_fresh_run_removes_only_what_posattack_wrote(files, tmp_path):
    work_dir = tmp_path / 'work'
    assert run_cli(CLI, _argv(files, work_dir, '--num-overlays', 1))[0] == 0
    (work_dir / 'notes.txt').write_text('mine')
    (work_dir / 'overlays' / 'mine.png').write_text('my picture')
    code, stderr = run_cli(CLI, _argv(files, work_dir, '--no-overlays'))
    assert code == 0, stderr
    assert (work_dir / 'notes.txt').read_text() == 'mine'
    assert os.listdir(work_dir / 'overlays') == ['mine.png']  # the earlier panel went
    assert 'mine.png' not in (work_dir / 'report.md').read_text()


def test_panels_are_refused_among_the_test_images(files, tmp_path):
    images = files.data / 'leftImg8bit' / 'val' / 'frankfurt'
    before = snapshot(files.data)
    code, stderr = run_cli(CLI, _argv(files, tmp_path / 'work', '--show-dir', images))
    _one_line_error(code, stderr, f'--show-dir {images} lies in the test data',
                    'a folder outside the dataset')
    assert snapshot(files.data) == before
    assert not (tmp_path / 'work').exists()


def test_a_show_dir_of_another_run_is_refused(files, tmp_path):
    panels = tmp_path / 'panels'
    assert run_cli(CLI, _argv(files, tmp_path / 'a', '--show-dir', panels,
                              '--num-overlays', 1))[0] == 0
    before = snapshot(panels)
    code, stderr = run_cli(CLI, _argv(files, tmp_path / 'b', '--show-dir', panels))
    _one_line_error(code, stderr, f'--show-dir {panels} holds the panels of the run in '
                    f'{tmp_path / "a"}', 'pass another --show-dir')
    assert snapshot(panels) == before


def test_an_output_name_taken_by_a_folder_is_refused_before_compute(files, tmp_path,
                                                                    no_compute):
    work_dir = tmp_path / 'work'
    (work_dir / 'results.json').mkdir(parents=True)
    (work_dir / MANIFEST_NAME).write_text(json.dumps(dict(format='posattack.files/1',
                                                          files=[])))
    code, stderr = run_cli(CLI, _argv(files, work_dir, '--no-overlays'))
    _one_line_error(code, stderr, f'--work-dir {work_dir} holds a folder results.json')


# ----------------------------------------------------------------------------- 2. resume
# mean ablation: over 3 s of CPU (measured 4.4 s; the means take a pass over the images)
@pytest.mark.parametrize('ablation', [pytest.param('mean', marks=pytest.mark.slow),
                                      'gaussian_noise'])
def test_resume_adding_draws_works_for_every_ablation(files, tmp_path, ablation):
    """Failed with 'need at least one array to stack' (pass 1 scored nothing)."""
    work_dir = tmp_path / 'work'
    argv = _argv(files, work_dir, '--ablation', ablation, '--no-overlays')
    assert run_cli(CLI, argv)[0] == 0
    first = _scores(work_dir)
    more = [a if a != 1 else 2 for a in argv]  # --seeds 2
    code, stderr = run_cli(CLI, more + ['--resume'])
    assert code == 0, stderr
    resumed = _scores(work_dir)
    assert set(resumed) == set(first) | {'random/N=8/seed=1'}
    assert all(resumed[key] == first[key] for key in first)  # kept, not recomputed
    if ablation == 'mean':  # deterministic: equal to an uninterrupted run with 2 draws
        assert run_cli(CLI, [a if a != work_dir else tmp_path / 'fresh' for a in more])[0] == 0
        assert resumed == _scores(tmp_path / 'fresh')


def test_resume_adding_draws_keeps_the_overlays(files, tmp_path):
    work_dir = tmp_path / 'work'
    argv = _argv(files, work_dir, '--num-overlays', 2)
    assert run_cli(CLI, argv)[0] == 0
    panels = snapshot(work_dir / 'overlays')
    assert len(panels) == 2
    code, stderr = run_cli(CLI, [a if a != 1 else 3 for a in argv] + ['--resume'])
    assert code == 0, stderr
    assert snapshot(work_dir / 'overlays') == panels
    report = (work_dir / 'report.md').read_text()
    assert all(f'overlays/{name}' in report for name in panels)


@pytest.mark.slow   # spawns a process (the lock holder)
def test_a_pooled_run_locks_its_top_level(files, tmp_path):
    work_dir = tmp_path / 'pooled'
    holder = start_lock_holder(work_dir)
    try:
        code, stderr = run_cli(CLI, [files.config, files.checkpoint, files.other,
                                     '--work-dir', work_dir, '--no-overlays'] + SMALL)
        _one_line_error(code, stderr, f'in use by process {holder.pid}')
        assert os.listdir(work_dir) == ['.lock']
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()


def test_temporaries_of_a_kill_9_are_removed_on_the_next_start(files, tmp_path):
    work_dir = tmp_path / 'work'
    assert run_cli(CLI, _argv(files, work_dir, '--no-overlays'))[0] == 0
    stale = work_dir / f'{TEMP_PREFIX}results.json.x1y2.tmp'
    stale.write_text('{"half')
    code, stderr = run_cli(CLI, _argv(files, work_dir, '--no-overlays', '--resume'))
    assert code == 0, stderr
    assert not stale.exists()


# ----------------------------------------------------------------------------- 3. provenance
@pytest.fixture(scope='module')
def two_runs(files, tmp_path_factory):
    """The same experiment on two checkpoints (same images, same labels).

    Two attack runs, over 3 s of CPU with any test of its own: every test that takes it is
    slow (the slow rule counts a module fixture for the tests that share it)."""
    root = tmp_path_factory.mktemp('two_runs')
    for name, checkpoint in (('a', files.checkpoint), ('b', files.other)):
        code, stderr = run_cli(CLI, _argv(files, root / name, '--no-overlays',
                                          checkpoint=checkpoint))
        assert code == 0, stderr
    return root


@pytest.mark.slow   # takes two_runs
@pytest.mark.parametrize('legacy', [False, True])
def test_resume_refuses_per_image_counts_of_another_run(files, two_runs, tmp_path, legacy):
    work_dir = tmp_path / 'a'
    shutil.copytree(two_runs / 'a', work_dir)
    foreign = dict(np.load(two_runs / 'b' / 'per_image.npz'))
    if legacy:  # a file from before the fingerprint: caught by its numbers
        foreign.pop('run_sha256')
    np.savez_compressed(work_dir / 'per_image.npz', **foreign)
    before = snapshot(work_dir)
    code, stderr = run_cli(CLI, _argv(files, work_dir, '--no-overlays', '--resume'))
    _one_line_error(code, stderr, '--resume refused', 'per_image.npz',
                    'delete it and rerun with --resume')
    assert snapshot(work_dir) == before


@pytest.mark.slow   # takes two_runs
def test_resume_keeps_per_image_counts_of_an_older_posattack_that_fit(files, two_runs,
                                                                     tmp_path):
    work_dir = tmp_path / 'a'
    shutil.copytree(two_runs / 'a', work_dir)
    own = dict(np.load(work_dir / 'per_image.npz'))
    own.pop('run_sha256')
    np.savez_compressed(work_dir / 'per_image.npz', **own)
    code, stderr = run_cli(CLI, _argv(files, work_dir, '--no-overlays', '--resume'))
    assert code == 0, stderr
    assert _scores(work_dir) == _scores(two_runs / 'a')


@pytest.mark.slow   # takes two_runs
def test_a_ranking_of_another_checkpoint_is_refused_unless_allowed(files, two_runs, tmp_path):
    argv = _argv(files, tmp_path / 'w', '--no-overlays', '--ranking',
                 two_runs / 'b' / 'ranking.json')
    code, stderr = run_cli(CLI, argv)
    _one_line_error(code, stderr, 'was identified on another checkpoint',
                    '--allow-ranking-from-other-checkpoint')
    code, stderr = run_cli(CLI, argv + ['--allow-ranking-from-other-checkpoint'])
    assert code == 0, stderr


# ----------------------------------------------------------------------------- 4. one line
@pytest.mark.slow   # takes two_runs
@pytest.mark.parametrize('damage', ['truncated per_image.npz', 'results.json a list',
                                    'results.json truncated'])
def test_damaged_files_on_resume_are_one_line(files, two_runs, tmp_path, damage):
    work_dir = tmp_path / 'a'
    shutil.copytree(two_runs / 'a', work_dir)
    if damage == 'truncated per_image.npz':
        data = (work_dir / 'per_image.npz').read_bytes()
        (work_dir / 'per_image.npz').write_bytes(data[:len(data) // 2])
        phrases = ['per_image.npz', 'is not a posattack per-image counts file']
    elif damage == 'results.json a list':
        (work_dir / 'results.json').write_text('[1, 2]')
        phrases = ['results.json', 'is not a posattack results file']
    else:
        text = (work_dir / 'results.json').read_text()
        (work_dir / 'results.json').write_text(text[:len(text) // 2])
        phrases = ['results.json', 'is not valid JSON']
    code, stderr = run_cli(CLI, _argv(files, work_dir, '--no-overlays', '--resume'))
    _one_line_error(code, stderr, *phrases)


def test_slide_inference_without_crop_size_is_refused_before_the_checkpoint(files, tmp_path,
                                                                            no_compute):
    code, stderr = run_cli(CLI, _argv(files, tmp_path / 'w', '--cfg-options',
                                      "model.test_cfg.mode=slide"))
    _one_line_error(code, stderr, "mode='slide' but no crop_size or stride",
                    'model.test_cfg.crop_size')


def test_mixed_image_sizes_with_batches_of_two_give_the_batch_1_numbers(files, tmp_path):
    """mmseg's preprocessor asserted one size per batch, in the middle of the sweep."""
    from posattack.data.synthetic import generate_cityscapes
    root, narrow = tmp_path / 'data', tmp_path / 'narrow'
    generate_cityscapes(root, num_train=0, num_val=3, size=(64, 128), seed=0)
    # sorted by path, batches of 2: two wide images, then a wide and a narrow one
    generate_cityscapes(narrow, num_train=0, num_val=1, size=(64, 96), seed=1)
    for top in ('leftImg8bit', 'gtFine'):
        target = root / top / 'val' / 'narrow'
        target.mkdir()
        for path in (narrow / top / 'val').rglob('*.png'):
            shutil.move(str(path), str(target / f'n{path.name}'))
    config = write_tiny_config(tmp_path / 'mixed.py', root)
    scores = []
    for batch_size in (2, 1):
        work_dir = tmp_path / f'batch{batch_size}'
        code, stderr = run_cli(CLI, [config, files.checkpoint, '--work-dir', work_dir,
                                     '--no-overlays', '--batch-size', batch_size,
                                     '--num-channels', 8, '--seeds', 1,
                                     '--identify-on', 'test'])  # ranked in the sweep too
        assert code == 0, stderr
        scores.append(_scores(work_dir))
    assert scores[0] == scores[1]


def test_the_same_weights_under_two_names_are_one_model(files, tmp_path):
    copy = tmp_path / 'copy_of_model.pth'
    shutil.copy(files.checkpoint, copy)
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, copy, '--work-dir',
                                 tmp_path / 'pooled', '--no-overlays'] + SMALL)
    _one_line_error(code, stderr, 'the same checkpoint is given twice', 'same contents')


# ----------------------------------------------------------------------------- 5. bounds
@pytest.mark.parametrize('argv, phrase', [
    (['--seeds', 100000], '--seeds must be between 0 and 1000'),
    (['--regions', 'grid=2000x2000'], 'grid "rows" must be at most 16'),
    (['--regions', 'border=100000'], 'border "bands" must be at most 64'),
    (['--bootstrap', 10**9], '--bootstrap must be between 1 and 100000'),  # after the sweep
])
def test_absurd_sizes_are_refused_before_compute(files, tmp_path, no_compute, argv, phrase):
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', tmp_path / 'w']
                           + argv)
    _one_line_error(code, stderr, phrase)
    assert not (tmp_path / 'w').exists()


def test_identify_refuses_an_out_path_that_is_a_folder_before_loading(files, tmp_path,
                                                                      monkeypatch):
    from helpers import load_tool
    identify = load_tool('identify')

    import posattack.models.builder as builder

    def refuse(*args, **kwargs):
        raise AssertionError('the model was loaded before --out was checked')
    monkeypatch.setattr(builder, 'load_segmentor', refuse)  # main() imports it from there
    with pytest.raises(ValueError, match=f'--out {tmp_path} is a folder: pass a file path'):
        identify.main([files.config, files.checkpoint, '--out', str(tmp_path)])
