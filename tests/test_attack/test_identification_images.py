"""Held-out identification: the ranking never sees a scored image unless the user asks.

tools/attack.py on the tiny synthetic set (4 train + 4 val images, the val images scored):
by default the ranking comes from the 4 train images and says so; a split that shares images
with the test set, an empty one and a missing one are one-line errors before any compute;
--identify-on test flags every verdict; a given ranking is held out only if it records images
that are not scored.
"""
from __future__ import annotations

import os
import os.path as osp

import pytest
from helpers import load_cli, load_json, run_cli, tiny_cli_files

from posattack.attack.identification_images import check_disjoint
from posattack.channels.ranking import ChannelRanking

CLI = load_cli()
QUICK = ['--num-channels', 16, '--seeds', 2, '--no-overlays', '--bootstrap', 200]


@pytest.fixture(scope='module')
def files(synthetic_root, tmp_path_factory):
    return tiny_cli_files(tmp_path_factory.mktemp('identification_images'), synthetic_root)


@pytest.fixture(scope='module')
def held_out(files):
    work_dir = files.root / 'held_out'
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', work_dir] + QUICK)
    assert code == 0, stderr
    return work_dir


def _image_names(data, split):
    return sorted(name for _, _, names in os.walk(osp.join(data, 'leftImg8bit', split))
                  for name in names)


@pytest.mark.slow   # runs tools/attack.py: over 3 s of CPU
def test_the_default_ranks_on_the_train_images_and_records_them(files, held_out):
    ranking = ChannelRanking.load(str(held_out / 'ranking.json'))
    record = ranking.model['identification']
    assert record['split'] == 'train' and record['images'] == _image_names(files.data, 'train')
    assert len(record['images']) == 4
    assert not set(record['images']) & set(_image_names(files.data, 'val'))
    results = load_json(held_out / 'results.json')
    assert results['ranking_source']['on_scored_images'] is False
    assert results['fingerprint']['identification'] == dict(split='train', max_images=500)
    assert all(not t['ranking_on_scored_images'] for t in results['tests'])
    assert 'identified on 4 train images, none of them scored (held out)' in (
        held_out / 'report.md').read_text()


@pytest.mark.slow   # runs tools/attack.py: over 3 s of CPU
def test_same_image_identification_is_flagged_everywhere(files, tmp_path):
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', tmp_path,
                                 '--identify-on', 'test'] + QUICK)
    assert code == 0, stderr
    results = load_json(tmp_path / 'results.json')
    assert results['ranking_source']['on_scored_images'] is True
    assert results['tests'] and all(t['ranking_on_scored_images'] for t in results['tests'])
    report = (tmp_path / 'report.md').read_text()
    assert report.count('ranking selected on the scored images') >= 2


@pytest.mark.slow   # runs tools/attack.py: over 3 s of CPU
def test_a_split_overlapping_the_test_images_is_refused_before_any_compute(files, tmp_path):
    work_dir = tmp_path / 'refused'
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', work_dir]
                           + QUICK + ['--identify-on', 'val', '--cfg-options',
                                      f'val_dataloader.dataset.data_root={files.data}'])
    assert code == 2
    lines = [line for line in stderr.splitlines() if line.startswith('error:')]
    assert len(lines) == 1 and 'shares 4 image(s) with the test set' in lines[0]
    assert '--identify-on train' in lines[0] and not osp.exists(work_dir)


@pytest.mark.slow   # runs tools/attack.py: over 3 s of CPU
def test_an_empty_or_missing_identification_split_is_a_one_line_error(files, tmp_path):
    empty = tmp_path / 'empty'
    os.makedirs(empty / 'leftImg8bit' / 'train')
    os.makedirs(empty / 'gtFine' / 'train')
    for root, expected in ((empty, 'The train dataset is empty'),
                           (tmp_path / 'missing', 'cannot read the train images')):
        code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir',
                                     tmp_path / 'w'] + QUICK
                               + ['--cfg-options', f'train_dataloader.dataset.data_root={root}'])
        assert code == 2 and expected in stderr, stderr
        assert not osp.exists(tmp_path / 'w')


@pytest.mark.slow   # runs tools/attack.py: over 3 s of CPU
def test_a_given_ranking_is_held_out_only_if_it_says_so(files, held_out, tmp_path):
    # the ranking of the default run records train images: held out
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', tmp_path / 'a',
                                 '--ranking', held_out / 'ranking.json'] + QUICK)
    assert code == 0, stderr
    source = load_json(tmp_path / 'a' / 'results.json')['ranking_source']
    assert source['kind'] == 'given' and source['overlap'] == 0
    assert source['on_scored_images'] is False
    # the same scores without the record of their images: not shown to be held out
    ranking = ChannelRanking.load(str(held_out / 'ranking.json'))
    ranking.model.pop('identification')
    ranking.save(str(tmp_path / 'unknown.json'))
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', tmp_path / 'b',
                                 '--ranking', tmp_path / 'unknown.json'] + QUICK)
    assert code == 0, stderr
    results = load_json(tmp_path / 'b' / 'results.json')
    assert results['ranking_source']['on_scored_images'] is None
    assert all(t['ranking_on_scored_images'] for t in results['tests'])
    assert 'not shown to be held out' in (tmp_path / 'b' / 'report.md').read_text()


def test_check_disjoint_names_a_shared_image():
    check_disjoint(['/d/a.png', '/d/b.png'], ['/d/c.png'], 'train')
    with pytest.raises(ValueError, match=r'shares 1 image\(s\) .*/d/b.png'):
        check_disjoint(['/d/a.png', '/d/b.png'], ['/d/b.png'], 'val')


@pytest.mark.slow   # runs tools/attack.py: over 3 s of CPU
def test_bad_draw_and_group_options_fail_or_warn_in_one_line(files, tmp_path):
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', tmp_path / 'g']
                           + QUICK + ['--bootstrap-groups', '(unclosed'])
    assert code == 2 and 'is not a regular expression' in stderr
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', tmp_path / 'm']
                           + QUICK + ['--max-draws', 0])
    assert code == 2 and '--max-draws must lie in 1..1000' in stderr
    assert not osp.exists(tmp_path / 'g') and not osp.exists(tmp_path / 'm')
