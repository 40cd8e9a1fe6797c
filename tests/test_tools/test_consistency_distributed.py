"""tools/consistency.py under torchrun (2 processes, gloo on CPU) gives the 1-process numbers.

3 images over 2 processes: shards of 2 and 1, so an image counted twice or lost would change
the counts. Corners are keyed by image, not by process, so every pair is the same in both.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import (REPO_ROOT, free_port, load_json, load_tool, make_checkpoint,  # noqa: F401
                     one_torch_thread, run_cli, write_tiny_config)

CONSISTENCY = os.path.join(REPO_ROOT, 'tools', 'consistency.py')
CLI = load_tool('consistency')
ARGS = ['--max-images', '3', '--max-shift', '4', '8', '--trials', '2', '--batch-size', '1']


@pytest.mark.slow
def test_two_processes_give_the_one_process_numbers(synthetic_root, tmp_path):
    config = write_tiny_config(tmp_path / 'tiny.py', synthetic_root)
    checkpoint = make_checkpoint(config, tmp_path / 'model.pth')
    single_dir, dist_dir = tmp_path / 'single', tmp_path / 'dist'
    code, stderr = run_cli(CLI, [config, checkpoint, '--work-dir', single_dir] + ARGS)
    assert code == 0, stderr

    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get('PYTHONPATH')])))
    completed = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         f'--master_port={free_port()}', CONSISTENCY, str(config), str(checkpoint),
         '--launcher', 'pytorch', '--work-dir', str(dist_dir)] + ARGS,
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    single = load_json(single_dir / 'consistency.json')
    dist = load_json(dist_dir / 'consistency.json')
    assert dist['num_images'] == single['num_images'] == 3
    assert dist['metrics'] == single['metrics']
    details = load_json(dist_dir / 'consistency_details.json')
    assert details['num_images'] == 3  # every image once, none padded in
    assert details == load_json(single_dir / 'consistency_details.json')
    # (had both processes scored all 3 images, collect_results would have interleaved their
    # lists into images 0, 0, 1 and the numbers would differ)
