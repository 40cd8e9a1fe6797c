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
