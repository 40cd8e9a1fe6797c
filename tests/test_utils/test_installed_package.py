"""posattack as a user gets it: a wheel built from this tree, installed into a new virtualenv,
run from an empty folder with no source tree on sys.path.

The new environment sees the test environment's packages (torch, mmcv, mmseg: a .pth file
names their folder, which is not a site dir, so the clone's own editable install there is not
picked up); posattack itself comes only from the wheel. In that folder: `posattack
make-synthetic`, a user config whose `_base_` is `posattack::` fragments trained for two
iterations by MMEngine's Runner, `posattack attack ... --vis-backend tensorboard`, and the
same attack through `posattack.api.attack`. The TensorBoard event files are read back with
tensorboard's own reader and compared with results.json.
"""
from __future__ import annotations

import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import numpy as np
import pytest
from helpers import REPO_ROOT

pytestmark = pytest.mark.slow

# the clone's folders a wheel must not see (data, runs, environments, earlier builds)
_TOP_LEVEL_SKIPPED = {'.git', '.venv', 'work_dirs', 'data', 'build', 'dist', 'mutants',
                      'mutants.tmp', '.hypothesis', '.pytest_cache'}
USER_CONFIG = """\
_base_ = ['posattack::demo/deeplabv3_r18-tiny_synthetic-cityscapes.py',
          'posattack::_base_/posattack/region_metric.py']
test_evaluator = dict(_delete_=True, **_base_.region_metric)
val_evaluator = test_evaluator
train_cfg = dict(max_iters=2, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=2))
"""
TRAIN = """\
import posattack  # noqa: F401  (the `posattack::` scope; mmseg's tools do the same via imports)
from mmengine.config import Config
from mmengine.runner import Runner
cfg = Config.fromfile('user.py')
assert cfg.test_evaluator.type == 'posattack.RegionIoUMetric', cfg.test_evaluator
cfg.work_dir = 'work_dirs/user'
runner = Runner.from_cfg(cfg)
runner.train()
print('trained', type(runner.model).__name__, type(runner.visualizer).__name__)
"""
# the attack's options, on the command line and as API keywords
ATTACK_ARGS = ['--num-channels', '6', '--seeds', '2', '--max-draws', '4', '--exceedances', '1',
               '--bootstrap', '50', '--num-overlays', '1']
API = """\
import json
from posattack.api import attack
result = attack('user.py', 'work_dirs/user/iter_2.pth', work_dir='api', num_channels=[6],
                seeds=2, max_draws=4, exceedances=1, bootstrap=50, num_overlays=1,
                vis_backends=['none'])
with open('api.json', 'w') as f:
    json.dump(dict(results=result.results, claims=result.claims, plots=result.plots,
                   overlays=result.overlays, vis_dir=result.vis_dir), f)
"""


def _ignore(folder, names):
    skipped = {n for n in names if n == '__pycache__' or n == '.mim' or n.endswith('.egg-info')}
    if osp.realpath(folder) == osp.realpath(REPO_ROOT):
        skipped |= _TOP_LEVEL_SKIPPED & set(names)
    return skipped


def _run(cmd, cwd, env, timeout=600):
    done = subprocess.run([str(c) for c in cmd], cwd=str(cwd), env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f'{cmd}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}'
    return done


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """(venv python, posattack command, env, empty user folder), the wheel installed."""
    root = tmp_path_factory.mktemp('installed')
    source, dist, venv, user = (root / name for name in ('source', 'dist', 'venv', 'user'))
    shutil.copytree(REPO_ROOT, source, ignore=_ignore)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['OMP_NUM_THREADS'] = '1'
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
          '-w', dist, source], root, env)
    wheel, = glob.glob(str(dist / 'posattack-*.whl'))
    _run([sys.executable, '-m', 'venv', '--without-pip', venv], root, env)
    python = venv / 'bin' / 'python'
    purelib = _run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                   root, env).stdout.strip()
    stack = {sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']}
    with open(osp.join(purelib, '_posattack_test_stack.pth'), 'w') as f:
        f.write('\n'.join(sorted(stack)) + '\n')
    _run([sys.executable, '-m', 'pip', '--python', python, 'install', '--no-deps', '-q', wheel],
         root, env)
    user.mkdir()
    return python, venv / 'bin' / 'posattack', env, user


def test_the_package_comes_from_the_wheel_with_its_configs(installed):
    python, command, env, user = installed
    where = _run([python, '-c', 'import posattack, sys; print(posattack.__file__); '
                  'print(posattack.utils.config_scope.packaged_configs_dir())'], user, env)
    package, configs = where.stdout.split()
    assert '/venv/' in package and not package.startswith(osp.realpath(REPO_ROOT))
    assert configs.endswith('posattack/.mim/configs') and osp.isfile(
        osp.join(configs, '_base_', 'posattack', 'region_metric.py'))
    listed = _run([command, '--help'], user, env).stdout
    assert 'attack' in listed and 'make-synthetic' in listed
    bad = subprocess.run([str(command), 'atack'], cwd=str(user), env=env, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(
        "error: unknown subcommand 'atack': choose from")


def _expected_scalars(results: dict) -> dict:
    """The TensorBoard series results.json implies, computed here from its settings."""
    expected = {}
    settings = results['settings']
    counts = sorted({s['num_channels'] for s in settings if s['mode'] != 'clean'})
    for region in results['regions']:
        key = 'mIoU' if region == 'full' else f'{region}.mIoU'
        clean, = [s for s in settings if s['mode'] == 'clean']
        expected[f'mIoU/clean/{region}'] = [(n, clean['metrics'][key]) for n in counts]
        expected[f'mIoU/targeted/{region}'] = [
            (s['num_channels'], s['metrics'][key]) for s in settings if s['mode'] == 'targeted']
        expected[f'mIoU/random_mean/{region}'] = [
            (n, float(np.mean([s['metrics'][key] for s in settings
                               if s['mode'] == 'random' and s['num_channels'] == n])))
            for n in counts]
    for test in results['tests']:
        tag = f'tests/{test["kind"]}/{test["eval_region"]}'
        for field in ('estimate', 'p_value'):
            if test[field] is not None:
                expected.setdefault(f'{tag}/{field}', []).append(
                    (test['num_channels'], test[field]))
    return expected


def test_attack_from_the_wheel_logs_to_tensorboard_what_results_json_says(installed):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    python, command, env, user = installed
    _run([command, 'make-synthetic', 'data/synthetic_cityscapes', '--num-train', '4',
          '--num-val', '4'], user, env)
    (user / 'user.py').write_text(USER_CONFIG)
    trained = _run([python, '-c', TRAIN], user, env)
    assert 'trained EncoderDecoder SegLocalVisualizer' in trained.stdout
    cli = _run([command, 'attack', 'user.py', 'work_dirs/user/iter_2.pth', '--work-dir', 'cli',
                '--vis-backend', 'tensorboard', *ATTACK_ARGS], user, env)
    with open(user / 'cli' / 'results.json') as f:
        results = json.load(f)
    events, = glob.glob(str(user / 'cli' / '*' / 'vis_data' / 'events.out.tfevents.*'))
    reader = EventAccumulator(osp.dirname(events), size_guidance={'scalars': 0, 'images': 0})
    reader.Reload()
    logged = {tag: [(e.step, e.value) for e in reader.Scalars(tag)]
              for tag in reader.Tags()['scalars']}
    expected = _expected_scalars(results)
    assert sorted(logged) == sorted(expected)
    for tag, points in expected.items():
        assert [step for step, _ in logged[tag]] == [step for step, _ in points], tag
        np.testing.assert_allclose([v for _, v in logged[tag]], [v for _, v in points],
                                   rtol=1e-6, atol=1e-5, err_msg=tag)  # float32 in the file
    images = reader.Tags()['images']
    assert {'miou_vs_channels', 'class_drop_heatmap'} <= set(images)
    assert any(tag.startswith('overlay_') for tag in images)

    # the same attack through the Python API: the same numbers
    _run([python, '-c', textwrap.dedent(API)], user, env)
    with open(user / 'api.json') as f:
        api = json.load(f)
    assert api['vis_dir'] is None  # vis_backends=['none']: nothing logged
    assert [(s['key'], s['metrics']) for s in api['results']['settings']] == \
        [(s['key'], s['metrics']) for s in results['settings']]
    assert [(t['kind'], t['estimate'], t['p_value']) for t in api['results']['tests']] == \
        [(t['kind'], t['estimate'], t['p_value']) for t in results['tests']]
    assert len(api['claims']) == 2  # the paper's two, as the command logged them
    for claim in api['claims']:
        assert f"{claim['claim']}: {claim['verdict']} (" in cli.stdout + cli.stderr
    assert sorted(osp.basename(p) for p in api['plots'].values()) == sorted(
        f'{name}.png' for name in ('miou_vs_channels', 'iou_vs_border_distance',
                                   'class_drop_heatmap') if (user / 'cli' / f'{name}.png').exists())
    assert len(api['overlays']) == 1 and osp.isfile(api['overlays'][0])  # absolute paths
