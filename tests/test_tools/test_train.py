"""tools/train.py trains the demo config on synthetic Cityscapes, writes a checkpoint that
loads under torch's weights_only default, resumes from it, and explains bad input."""
from __future__ import annotations

import importlib
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from helpers import REPO_ROOT

TRAIN_TOOL = osp.join(REPO_ROOT, 'tools', 'train.py')
DEMO_CONFIG = osp.join(REPO_ROOT, 'configs', 'demo', 'deeplabv3_r18-tiny_synthetic-cityscapes.py')


def _load_train_tool():
    """The train command's module (tools/train.py is its thin caller)."""
    return importlib.import_module('posattack.cli.train')


def _data_root_options(root):
    return [f'{key}.dataset.data_root={root}'
            for key in ('train_dataloader', 'val_dataloader', 'test_dataloader')]


def _train(work_dir, root, max_iters, *extra):
    # A subprocess, as a user runs it: the Runner's global logger/visualizer instances stay
    # out of the test process.
    command = [sys.executable, TRAIN_TOOL, DEMO_CONFIG, '--work-dir', str(work_dir), *extra,
               '--cfg-options', *_data_root_options(root), f'train_cfg.max_iters={max_iters}',
               'train_dataloader.batch_size=2', 'val_dataloader.batch_size=2',
               'default_hooks.logger.interval=1']
    # One OpenMP thread: the suite shares 2 cores with other processes, and torch's
    # spinning OpenMP threads slow down many times over when they do not get a core each.
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env=env)


@pytest.fixture(scope='module')
def trained_work_dir(synthetic_root, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('train_work_dir')
    result = _train(work_dir, synthetic_root, 4)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work_dir, result.stdout + result.stderr


@pytest.mark.slow
def test_train_writes_checkpoint_and_validates(trained_work_dir):
    from posattack.utils.checkpoint import load_checkpoint
    work_dir, log = trained_work_dir
    checkpoint_path = work_dir / 'iter_4.pth'
    assert checkpoint_path.is_file()
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith('iter_4.pth')
    assert 'mIoU' in log  # the val loop ran after the last iteration
    checkpoint = load_checkpoint(str(checkpoint_path))
    state = checkpoint['state_dict']
    assert state['decode_head.conv_seg.weight'].shape == (19, 64, 1, 1)
    assert state['backbone.layer4.1.conv2.weight'].shape == (128, 128, 3, 3)
    assert checkpoint['meta']['iter'] == 4


@pytest.mark.slow
def test_runner_checkpoint_loads_with_weights_only_after_import(trained_work_dir):
    # What the Runner's own resume does: torch.load with torch's default (weights_only=True).
    import posattack  # noqa: F401  registers the allowlist
    work_dir, _ = trained_work_dir
    checkpoint = torch.load(str(work_dir / 'iter_4.pth'), map_location='cpu', weights_only=True)
    assert 'message_hub' in checkpoint and 'optimizer' in checkpoint


@pytest.mark.slow
def test_resume_continues_from_last_checkpoint(trained_work_dir, synthetic_root):
    work_dir, _ = trained_work_dir
    result = _train(work_dir, synthetic_root, 6, '--resume')
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert 'resumed' in log.lower()
    assert 'Iter(train) [5/6]' in log and 'Iter(train) [1/6]' not in log
    assert (work_dir / 'iter_6.pth').is_file()


def test_missing_config_is_a_clear_error(tmp_path, capsys):
    tool = _load_train_tool()
    missing = tmp_path / 'no_such_config.py'
    assert tool.main([str(missing)]) == 2
    err = capsys.readouterr().err
    assert 'config file not found' in err and str(missing) in err


def test_missing_data_root_is_a_clear_error(tmp_path, capsys):
    tool = _load_train_tool()
    absent = tmp_path / 'absent_data'
    argv = [DEMO_CONFIG, '--work-dir', str(tmp_path / 'wd'), '--cfg-options',
            *_data_root_options(absent)]
    assert tool.main(argv) == 2
    err = capsys.readouterr().err
    assert str(absent) in err and 'tools/dataset_converters/make_synthetic_cityscapes.py' in err
    assert not (tmp_path / 'wd').exists()  # failed before the Runner made anything


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, synthetic_root, capsys):
    tool = _load_train_tool()
    argv = [DEMO_CONFIG, '--work-dir', str(tmp_path / 'empty'), '--resume', '--cfg-options',
            *_data_root_options(synthetic_root)]
    assert tool.main(argv) == 2
    assert 'no checkpoint' in capsys.readouterr().err


def _keep_finished_argv(work_dir, root, *options):
    return [DEMO_CONFIG, '--work-dir', str(work_dir), '--keep-finished', '--cfg-options',
            *_data_root_options(root), *options]


@pytest.mark.slow
def test_keep_finished_recognises_a_runner_checkpoint(trained_work_dir, synthetic_root, capsys):
    """What the Runner recorded in a real checkpoint (config text, seed, iteration) is matched
    against the same command: kept, no training; another seed: refused, nothing touched."""
    from posattack.utils.checkpoint import load_checkpoint
    work_dir, _ = trained_work_dir
    last = (work_dir / 'last_checkpoint').read_text().strip()
    iters = load_checkpoint(last)['meta']['iter']  # 4, or 6 after the resume test
    same = ['train_dataloader.batch_size=2', 'val_dataloader.batch_size=2',
            'default_hooks.logger.interval=1', f'train_cfg.max_iters={iters}']
    before = sorted(p.name for p in work_dir.iterdir())
    tool = _load_train_tool()
    assert tool.main(_keep_finished_argv(work_dir, synthetic_root, *same)) == 0
    assert f'kept: {last}' in capsys.readouterr().out
    assert tool.main(_keep_finished_argv(work_dir, synthetic_root, *same,
                                         'randomness.seed=5')) == 2
    err = capsys.readouterr().err.strip()
    assert 'randomness.seed: 0 there vs 5 now' in err and '\n' not in err
    assert sorted(p.name for p in work_dir.iterdir()) == before


def test_keep_finished_keeps_or_refuses_by_the_recorded_training(
        tmp_path, synthetic_root, capsys):
    """A checkpoint recording what the Runner records for this command is kept when it
    reached max_iters; one recording another data root is refused in one line, naming it."""
    tool = _load_train_tool()
    work_dir = tmp_path / 'wd'
    work_dir.mkdir()
    argv = _keep_finished_argv(work_dir, synthetic_root, 'train_cfg.max_iters=8')
    recorded = tool.build_config(tool.parse_args(argv))
    checkpoint = work_dir / 'iter_8.pth'
    torch.save(dict(meta=dict(cfg=recorded.pretty_text, seed=0, iter=8, epoch=0),
                    state_dict={}), checkpoint)
    (work_dir / 'last_checkpoint').write_text(str(checkpoint))
    assert tool.main(argv) == 0
    assert f'kept: {checkpoint}' in capsys.readouterr().out
    other = tmp_path / 'other_data'
    other.mkdir()
    moved = [a.replace(str(synthetic_root), str(other)) if a.startswith('train_dataloader')
             else a for a in argv]
    assert tool.main(moved) == 2
    err = capsys.readouterr().err.strip()
    assert (f"train_dataloader.dataset.data_root: '{synthetic_root}' there vs '{other}' now"
            in err and '\n' not in err and 'another --work-dir' in err)
    assert sorted(p.name for p in work_dir.iterdir()) == ['iter_8.pth', 'last_checkpoint']


def test_no_train_only_checks(tmp_path, synthetic_root, capsys):
    """--keep-finished --no-train (make tables-aug-shift's KEPT_ONLY=1): nothing kept is
    exit 3 with nothing trained or written; --no-train alone is a one-line error."""
    tool = _load_train_tool()
    work_dir = tmp_path / 'wd'
    assert tool.main(_keep_finished_argv(work_dir, synthetic_root) + ['--no-train']) == 3
    assert 'not kept: no finished training' in capsys.readouterr().out
    assert not work_dir.exists()
    argv = [DEMO_CONFIG, '--work-dir', str(work_dir), '--no-train']
    assert tool.main(argv) == 2
    assert '--no-train only goes with --keep-finished' in capsys.readouterr().err
