"""posattack.utils.checkpoint: weights_only loading with an explicit allowlist.

The Runner-made checkpoint itself is exercised in test_builder.py (training is the slow
part); here the allowlist, the refusals and the error messages are checked on small files.
"""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

import posattack  # noqa: F401  (registers the allowlist, as users get it)
from posattack.utils.checkpoint import (CheckpointError, CheckpointSecurityError, load_checkpoint,
                                        register_safe_globals, safe_checkpoint_globals)


class _RunsShellCommand:
    """A pickle that, when unpickled unsafely, runs `touch marker` through os.system."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f'touch "{self.marker}"', ))


class _RunsPythonCode:
    """A pickle that, when unpickled unsafely, writes the marker file through exec()."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f'open({self.marker!r}, "w").write("pwned")', ))


class _ReachesPastHistoryBuffer:
    """getattr on HistoryBuffer beyond its statistics methods: the first step of an escape."""

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


class HarmlessPayload:
    """A user class: not on the allowlist, harmless to unpickle."""

    def __init__(self, value):
        self.value = value


def _allowlisted_names():
    names = set()
    for entry in safe_checkpoint_globals():
        if isinstance(entry, tuple):
            names.add(entry[1])
        else:
            names.add(f'{entry.__module__}.{entry.__qualname__}')
    return names


def test_allowlist_holds_mmengine_and_numpy_globals():
    names = _allowlisted_names()
    expected = {
        'mmengine.logging.history_buffer.HistoryBuffer',
        'numpy._core.multiarray._reconstruct', 'numpy.core.multiarray._reconstruct',
        'numpy._core.multiarray.scalar', 'numpy.core.multiarray.scalar',
        'numpy.ndarray', 'numpy.dtype', 'numpy.dtypes.Float64DType',
        'numpy.dtypes.Int64DType', 'numpy.dtypes.BoolDType', 'builtins.getattr'
    }
    assert expected <= names
    # every dtype class numpy has is enumerated, not a hand-picked few
    dtype_classes = {getattr(np.dtypes, name) for name in dir(np.dtypes)
                     if name.endswith('DType')}  # aliases (ShortDType) name the same class
    assert len(dtype_classes) > 20
    assert dtype_classes <= set(safe_checkpoint_globals())
    # ...and getattr is a stand-in, never the real builtin
    getattr_entry = [e for e in safe_checkpoint_globals()
                     if isinstance(e, tuple) and e[1] == 'builtins.getattr']
    assert getattr_entry and getattr_entry[0][0] is not getattr


def test_register_safe_globals_is_idempotent():
    register_safe_globals()
    before = set(map(repr, torch.serialization.get_safe_globals()))
    register_safe_globals()
    register_safe_globals()
    assert set(map(repr, torch.serialization.get_safe_globals())) == before


def test_message_hub_and_numpy_values_load(tmp_path):
    hub = MessageHub('test_checkpoint_hub')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('val/mIoU', np.float64(71.25))  # IoUMetric reports numpy scalars
    payload = {
        'message_hub': hub.state_dict(),
        'arrays': [np.arange(4).astype(dtype) for dtype in
                   (np.bool_, np.int8, np.int16, np.uint32, np.int64, np.float16, np.float32,
                    np.complex64)],
        'scalars': [np.float32(2.5), np.int64(7), np.bool_(True)],
    }
    path = tmp_path / 'hub.pth'
    torch.save(payload, path)
    loaded = load_checkpoint(path)
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    assert buffer.mean() == pytest.approx(1.0)  # the statistics methods survived the trip
    assert buffer.current() == pytest.approx(0.5)
    assert loaded['message_hub']['runtime_info']['val/mIoU'] == np.float64(71.25)
    for original, restored in zip(payload['arrays'], loaded['arrays']):
        assert restored.dtype == original.dtype
        np.testing.assert_array_equal(restored, original)
    assert loaded['scalars'] == payload['scalars']
    # plain torch.load (what mmseg and the Runner call) reads it too after `import posattack`
    assert isinstance(torch.load(path)['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)


@pytest.mark.parametrize('payload_class, offending', [
    (_RunsShellCommand, 'posix.system'),
    (_RunsPythonCode, 'builtins.exec'),
])
def test_code_running_pickle_is_refused_without_running(tmp_path, payload_class, offending):
    marker = tmp_path / 'marker'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'x': payload_class(marker)}, path)
    with pytest.raises(CheckpointSecurityError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert str(path) in message
    assert offending in message
    assert 'trust_checkpoint=True' in message and '--trust-checkpoint' in message
    assert offending in error.value.offending_globals
    assert isinstance(error.value, RuntimeError)
    assert not marker.exists()
    # torch.load's own default (weights_only) still refuses after posattack's allowlist
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    assert not marker.exists()


def test_getattr_stand_in_refuses_anything_but_statistics_methods(tmp_path):
    path = tmp_path / 'escape.pth'
    torch.save({'x': _ReachesPastHistoryBuffer()}, path)
    with pytest.raises(CheckpointSecurityError) as error:
        load_checkpoint(path)
    assert "getattr(HistoryBuffer, '__init__')" in str(error.value)


def test_trusted_checkpoint_loads_unsafely(tmp_path):
    path = tmp_path / 'user_class.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'extra': HarmlessPayload(42)}, path)
    with pytest.raises(CheckpointSecurityError) as error:
        load_checkpoint(path)
    assert 'HarmlessPayload' in str(error.value)
    loaded = load_checkpoint(path, trust_checkpoint=True)
    assert loaded['extra'].value == 42
    assert torch.equal(loaded['state_dict']['w'], torch.ones(2))


def test_plain_and_legacy_state_dicts_load(tmp_path):
    state = {'conv.weight': torch.randn(2, 3, 1, 1), 'bn.num_batches_tracked': torch.tensor(3)}
    for name, zip_format in (('zip.pth', True), ('legacy.pth', False)):
        path = tmp_path / name
        torch.save(state, path, _use_new_zipfile_serialization=zip_format)
        loaded = load_checkpoint(str(path))
        assert set(loaded) == set(state)
        assert all(torch.equal(loaded[key], state[key]) for key in state)


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / 'nowhere' / 'ckpt.pth'
    with pytest.raises(FileNotFoundError, match='Checkpoint file not found') as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize('content', [b'', b'hello, not a checkpoint', 'truncated'])
def test_corrupt_file_gives_clear_error(tmp_path, content):
    path = tmp_path / 'broken.pth'
    if content == 'truncated':
        torch.save({'w': torch.ones(100)}, path)
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match='corrupt, truncated or not a PyTorch') as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)
    assert not isinstance(error.value, CheckpointSecurityError)


def test_directory_and_non_dict_content_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match='is not a file'):
        load_checkpoint(tmp_path)
    path = tmp_path / 'tensor.pth'
    torch.save(torch.ones(3), path)
    with pytest.raises(CheckpointError, match='holds a Tensor, expected a dict'):
        load_checkpoint(path)
