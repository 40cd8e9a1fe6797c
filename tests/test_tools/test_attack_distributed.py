"""tools/dist_attack.sh: two processes (torchrun, gloo on CPU) give the one-process numbers.

3 images over 2 processes: shards of 2 and 1, so an image counted twice (padding) or lost
would change the confusions. Both runs use batch size 1 and one thread, so every image goes
through the same float operations in both and the comparison can be exact. A probe
(tests/helpers/dist_probe/sitecustomize.py) records which images each worker evaluated.
"""
from __future__ import annotations

import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from helpers import (DIST_ATTACK, HELPERS_DIR, REPO_ROOT, free_port, load_cli,  # noqa: F401
                     load_json, make_checkpoint, one_torch_thread, run_cli, write_tiny_config)

PROBE_DIR = osp.join(HELPERS_DIR, 'dist_probe')
# Ranked in the sweep's first pass (--identify-on test): the test follows both passes.
ARGS = ['--num-channels', '8', '16', '--seeds', '2', '--max-images', '3', '--batch-size', '1',
        '--num-overlays', '2', '--identify-on', 'test']


@pytest.mark.slow
def test_two_processes_give_the_one_process_numbers(synthetic_root, tmp_path):
    config = write_tiny_config(tmp_path / 'tiny.py', synthetic_root)
    checkpoint = make_checkpoint(config, tmp_path / 'model.pth')

    single_dir = tmp_path / 'single'
    assert torch.get_num_threads() == 1  # one_torch_thread: as each torchrun worker has
    code, stderr = run_cli(load_cli(), [config, checkpoint, '--work-dir', single_dir] + ARGS)
    assert code == 0, stderr

    dist_dir = tmp_path / 'dist'
    shard_log = str(tmp_path / 'shards')
    python_path = [PROBE_DIR, REPO_ROOT, os.environ.get('PYTHONPATH')]
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()), OMP_NUM_THREADS='1',
               POSATTACK_SHARD_LOG=shard_log,
               PYTHONPATH=os.pathsep.join(filter(None, python_path)))
    completed = subprocess.run(['bash', DIST_ATTACK, config, checkpoint, '2', '--work-dir',
                                str(dist_dir)] + ARGS, cwd=str(tmp_path), env=env,
                               capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    # two workers; in each pass (identification, then targeted) every image exactly once
    shards = [load_json(f'{shard_log}.{rank}') for rank in (0, 1)]
    assert [shard['world_size'] for shard in shards] == ['2', '2']
    assert len(shards[0]['passes']) == len(shards[1]['passes']) == 2
    for first, second in zip(shards[0]['passes'], shards[1]['passes']):
        assert (len(first), len(second)) == (2, 1)
        assert len(set(first) | set(second)) == 3

    single, dist = load_json(single_dir / 'results.json'), load_json(dist_dir / 'results.json')
    assert dist['num_images'] == single['num_images'] == 3
    assert [s['key'] for s in dist['settings']] == [s['key'] for s in single['settings']]
    assert len(dist['settings']) == 7
    for ours, theirs in zip(dist['settings'], single['settings']):
        assert ours['metrics'] == theirs['metrics'], ours['key']
        assert ours['per_class'] == theirs['per_class'], ours['key']

    # the per-image counts are gathered and ordered by image, so the bootstrap resamples the
    # same images in the same order: every interval and verdict is exactly the one-process one
    assert dist['tests'] == single['tests'] and len(dist['tests']) > 0
    assert dist['statistics'] == single['statistics']

    single_ranking = load_json(single_dir / 'ranking.json')
    dist_ranking = load_json(dist_dir / 'ranking.json')
    assert dist_ranking['num_images'] == 3  # both shards, each image once
    assert dist_ranking['orders'] == single_ranking['orders']

    # rank 0 gathered every process's candidates: the same two overlay panels
    assert sorted(os.listdir(dist_dir / 'overlays')) == sorted(os.listdir(single_dir / 'overlays'))
    assert len(os.listdir(dist_dir / 'overlays')) == 2
    assert osp.isfile(dist_dir / 'report.md')


def test_channel_probe_works_on_a_process_with_an_empty_shard(demo_cfg, tiny_segmentor):
    """With more processes than images a shard is empty; the channel count (and so every
    rank's settings) must still come out, or that rank fails and the others wait forever."""
    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader

    from posattack.attack.experiment import _num_channels, build_test_dataloader
    from posattack.attack.feature_split import FeatureSplit
    from posattack.channels.layers import resolve_layer
    dataset = build_test_dataloader(demo_cfg, None, 1).dataset
    empty_shard = DataLoader(dataset, batch_size=2, sampler=[], collate_fn=pseudo_collate)
    split = FeatureSplit(tiny_segmentor, resolve_layer(tiny_segmentor, 'backbone:3'))
    assert _num_channels(split, empty_shard) == 128


@pytest.mark.slow
def test_held_out_identification_over_two_processes_reads_each_capped_image_once(
        synthetic_root, tmp_path):
    """--identify-on train with a cap of 3 of the 4 train images, over 2 processes: the
    processes together rank on exactly the one-process images (a padded or per-rank capped
    shard would read 4, or one image twice), so ranking.json and every number match."""
    config = write_tiny_config(tmp_path / 'tiny.py', synthetic_root)
    checkpoint = make_checkpoint(config, tmp_path / 'model.pth')
    args = ['--num-channels', '8', '--seeds', '2', '--max-images', '3', '--batch-size', '1',
            '--no-overlays', '--identify-on', 'train', '--identify-max-images', '3']
    single_dir, dist_dir = tmp_path / 'single', tmp_path / 'dist'
    code, stderr = run_cli(load_cli(), [config, checkpoint, '--work-dir', single_dir] + args)
    assert code == 0, stderr
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()), OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT,
                                                        os.environ.get('PYTHONPATH')])))
    completed = subprocess.run(['bash', DIST_ATTACK, config, checkpoint, '2', '--work-dir',
                                str(dist_dir)] + args, cwd=str(tmp_path), env=env,
                               capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    single_ranking = load_json(single_dir / 'ranking.json')
    dist_ranking = load_json(dist_dir / 'ranking.json')
    assert single_ranking['num_images'] == dist_ranking['num_images'] == 3
    record = dist_ranking['model']['identification']
    assert record == single_ranking['model']['identification']
    assert record['num_images'] == 3 and len(record['images']) == 3
    assert dist_ranking['orders'] == single_ranking['orders']
    single, dist = load_json(single_dir / 'results.json'), load_json(dist_dir / 'results.json')
    assert [s['metrics'] for s in dist['settings']] == [s['metrics'] for s in single['settings']]
