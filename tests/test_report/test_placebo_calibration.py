"""The verdict tests are calibrated on a trained demo model: >= 100 placebos, <= 5% "holds".

A demo DeepLabv3 (the embedded default's config) is trained briefly on its own synthetic
data, attacked with 101 random draws at the primary count (5% of the channels), and every
draw is then tested as if it were the targeted set (tools/tables/placebo_table.py's computation).
Exchangeable draws must be called "holds" at most alpha of the time; the test posattack used
before the rank tests (an image-bootstrap interval of one draw minus the others' mean) is
computed beside it as the reference the issue measured (18-22% there).
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import REPO_ROOT, load_cli, load_json, run_cli  # noqa: F401

from posattack.report.per_image import PerImageCounts
from posattack.report.placebo_check import placebo_rows

DEMO_CONFIG = os.path.join(REPO_ROOT, 'configs', 'demo',
                           'deeplabv3_r18-tiny_synthetic-cityscapes.py')
NUM_DRAWS = 101


def _data_options(root):
    return [f'{key}.dataset.data_root={root}'
            for key in ('train_dataloader', 'val_dataloader', 'test_dataloader')]


@pytest.fixture(scope='module')
def attacked_demo(tmp_path_factory):
    from posattack.data.synthetic import generate_cityscapes
    root = tmp_path_factory.mktemp('placebo')
    data = root / 'data'
    generate_cityscapes(data, num_train=40, num_val=20, size=(128, 256), seed=7)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    train = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, 'tools', 'train.py'), DEMO_CONFIG,
         '--work-dir', str(root / 'train'), '--cfg-options', *_data_options(data),
         'train_cfg.max_iters=150', 'train_cfg.val_interval=1000'],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert train.returncode == 0, train.stderr[-3000:]
    checkpoint = (root / 'train' / 'last_checkpoint').read_text().strip()
    work_dir = root / 'attack'
    code, stderr = run_cli(load_cli(), [
        DEMO_CONFIG, checkpoint, '--work-dir', work_dir, '--fractions', '0.05',
        '--max-draws', NUM_DRAWS, '--exceedances', NUM_DRAWS + 1, '--bootstrap', 200,
        '--no-overlays', '--cfg-options', *_data_options(data)])
    assert code == 0, stderr
    return work_dir


@pytest.mark.slow
def test_rank_tests_call_at_most_5_percent_of_placebos_significant(attacked_demo):
    results = load_json(attacked_demo / 'results.json')
    assert results['ranking_source']['split'] == 'train'          # held out by default
    assert results['ranking_source']['on_scored_images'] is False
    counts = PerImageCounts.load(str(attacked_demo / 'per_image.npz'))
    rows = placebo_rows(results, counts, num_resamples=500)
    assert {r['statistic'] for r in rows} == {'claim 1: full-image drop',
                                              'claim 2: periphery - center drop (DiD)'}
    for row in rows:
        assert row['primary'] and row['num_draws'] == NUM_DRAWS
        assert row['rank_test']['num_placebos'] >= 100
        assert row['rank_test']['rate'] <= 0.05, row
    # the report states the same check for the run's own primary tests
    for test in results['tests']:
        assert test['primary'] and test['placebo']['num_placebos'] == NUM_DRAWS
        assert test['placebo']['rate'] <= 0.05
    report = (attacked_demo / 'report.md').read_text()
    assert 'placebo false positives' in report and 'none of them scored (held out)' in report
