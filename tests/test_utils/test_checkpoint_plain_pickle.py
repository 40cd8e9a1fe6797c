"""A code-running pickle outside torch's zip format is refused naming the global (issue 23).

torch's static scan (get_unsafe_globals_in_checkpoint) reads zip checkpoints only, so a legacy
torch.save or a plain pickle.dump that calls os.system was reported as "corrupt ... load it
unsafely if you trust it": the one hint that runs the payload. Now pickletools names the
global, and nothing runs.
"""
from __future__ import annotations

import os
import pickle

import pytest
import torch

from posattack.utils.checkpoint import CheckpointSecurityError, load_checkpoint


class _RunsShellCommand:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f'touch "{self.marker}"', ))


@pytest.mark.parametrize('writer', ['legacy torch.save', 'pickle.dump'])
def test_a_plain_pickle_running_os_system_is_refused_by_name(tmp_path, writer):
    marker, path = tmp_path / 'marker', tmp_path / 'evil.pth'
    payload = {'state_dict': {'w': torch.ones(1)}, 'x': _RunsShellCommand(marker)}
    if writer == 'pickle.dump':
        with open(path, 'wb') as handle:
            pickle.dump(payload, handle, protocol=4)
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointSecurityError) as error:
        load_checkpoint(path)
    assert 'posix.system' in str(error.value)
    assert 'posix.system' in error.value.offending_globals
    if writer == 'legacy torch.save':  # the allowlisted tensor rebuilders are not named
        assert error.value.offending_globals == ['posix.system']
    assert not marker.exists()


def test_a_config_load_from_is_refused_like_the_cli_checkpoint(tmp_path):
    """The Runner reads ``load_from`` (and ``resume``, a backbone's ``init_cfg``) through
    mmengine's CheckpointLoader, whose local loader called plain torch.load: the refusal was
    torch's traceback advising ``weights_only=False``. ``import posattack`` routes it through
    load_checkpoint."""
    from mmengine.runner.checkpoint import CheckpointLoader

    import posattack  # noqa: F401  registers the loader
    marker, path = tmp_path / 'marker', tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'x': _RunsShellCommand(marker)}, path,
               _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointSecurityError) as error:
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert error.value.offending_globals == ['posix.system']
    assert '--trust-checkpoint' in str(error.value)
    assert not marker.exists()
    safe = tmp_path / 'safe.pth'
    torch.save({'state_dict': {'w': torch.full((2, ), 3.0)}}, safe)
    loaded = CheckpointLoader.load_checkpoint(str(safe), map_location='cpu')
    assert torch.equal(loaded['state_dict']['w'], torch.full((2, ), 3.0))


@pytest.mark.slow
def test_tools_train_refuses_an_unsafe_load_from_in_one_line(tmp_path, synthetic_root):
    import subprocess
    import sys

    from helpers import REPO_ROOT
    marker, path = tmp_path / 'marker', tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'x': _RunsShellCommand(marker)}, path,
               _use_new_zipfile_serialization=False)
    roots = [f'{key}.dataset.data_root={synthetic_root}'
             for key in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    completed = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, 'tools', 'train.py'),
         os.path.join(REPO_ROOT, 'configs', 'demo', 'deeplabv3_r18-tiny_synthetic-cityscapes.py'),
         '--work-dir', str(tmp_path / 'train'), '--cfg-options', f'load_from={path}',
         'train_cfg.max_iters=1', *roots], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert completed.returncode == 2, completed.stderr[-2000:]
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and "'posix.system'" in last, completed.stderr[-2000:]
    assert 'Traceback' not in completed.stderr
    assert not marker.exists()
