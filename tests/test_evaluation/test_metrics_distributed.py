"""RegionIoUMetric under two processes (torchrun, gloo on CPU) equals one process."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
from helpers import HELPERS_DIR, REPO_ROOT

WORKER = osp.join(HELPERS_DIR, 'region_metric_dist_worker.py')


def load_worker():
    spec = importlib.util.spec_from_file_location('region_metric_dist_worker', WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    worker = load_worker()
    single = worker.evaluate_share(worker.make_samples(), rank=0, world_size=1)

    out_path = tmp_path / 'metrics.json'
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get('PYTHONPATH')])))
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
               '--nproc_per_node', '2', WORKER, str(out_path)]
    completed = subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True,
                               text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    distributed = json.loads(out_path.read_text())

    assert distributed['world_size'] == 2
    assert set(distributed['metrics']) == set(single)
    for key, value in single.items():
        assert same(distributed['metrics'][key], value), key
    # the padded duplicate must have been dropped: counting it twice changes the scores
    doubled = worker.make_samples()
    doubled.append(doubled[0])
    counted_twice = worker.evaluate_share(doubled, rank=0, world_size=1)
    assert counted_twice['mIoU'] != single['mIoU']
