"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every output of posattack (rankings, results, reports, plots, overlays, synthetic data)
goes through here, so an interrupted run (Ctrl-C, a killed job) leaves no corrupt file.
Also the one file hash the fingerprints use (:func:`file_sha256`).
"""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Callable, Optional

import cv2
import numpy as np

# Temporary files start with this, so that the next run can tell posattack's leftovers of a
# kill -9 from the user's files (posattack.utils.owned_files removes them).
TEMP_PREFIX = '.posattack-tmp.'
# Called with the target path before every atomic write (posattack.utils.owned_files records
# the file as posattack's there, or refuses to replace a file of the user's).
_WRITE_CHECKS: list[Callable[[str], None]] = []


# What a write the system refuses raises (full, over quota or size limit, read-only, I/O).
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES,
                 errno.EPERM)


class DiskFullError(RuntimeError):
    """The device is full (or over quota): what was being written is not, the old file is."""


class OutputWriteError(RuntimeError):
    """An output could not be written for another reason of the system's (read-only, I/O)."""


# Called with the path and the sha256 of its new bytes after every atomic write
# (posattack.utils.owned_files records what posattack wrote, to tell a user's replacement).
_WRITTEN_HOOKS: list[Callable[[str, str], None]] = []


def add_written_hook(hook: Callable[[str, str], None]) -> None:
    if hook not in _WRITTEN_HOOKS:
        _WRITTEN_HOOKS.append(hook)


def remove_written_hook(hook: Callable[[str, str], None]) -> None:
    if hook in _WRITTEN_HOOKS:
        _WRITTEN_HOOKS.remove(hook)


def add_write_check(check: Callable[[str], None]) -> None:
    if check not in _WRITE_CHECKS:
        _WRITE_CHECKS.append(check)


def remove_write_check(check: Callable[[str], None]) -> None:
    if check in _WRITE_CHECKS:
        _WRITE_CHECKS.remove(check)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_error(path: str, error: OSError) -> RuntimeError:
    """One line for a write the system refused; the old file, if any, is unchanged."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        # a full disk (or quota, or file size limit) is the user's to fix
        return DiskFullError(f'no space left on the device to write {path} ({error.strerror}): '
                             'free some space (or raise the file size limit) and rerun '
                             '(tools/attack.py with --resume keeps the finished settings).')
    return OutputWriteError(f'could not write {path} ({error.strerror or error}): check the '
                            'folder (writable, on a healthy disk) and rerun; the file there '
                            'before, if any, is unchanged.')


@contextmanager
def atomic_open(path: str, mode: str = 'w', encoding: Optional[str] = 'utf-8') -> Iterator:
    """Open a temporary file beside ``path``; on success it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = os.fspath(path)
    if os.path.isdir(path):  # os.replace would fail only after the work
        raise ValueError(f'{path} is a folder, where a file is to be written: move it away '
                         'or choose another output path.')
    for check in list(_WRITE_CHECKS):
        check(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    try:
        fd, tmp_path = tempfile.mkstemp(prefix=f'{TEMP_PREFIX}{os.path.basename(path)}.',
                                        suffix='.tmp', dir=folder)
    except OSError as error:
        raise _write_error(path, error) from error
    # mkstemp makes 0600 files; give the result the permissions a plain open() would.
    os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        with os.fdopen(fd, mode, encoding=None if 'b' in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        digest = file_sha256(tmp_path) if _WRITTEN_HOOKS else None
        os.replace(tmp_path, path)
    except BaseException as error:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        if isinstance(error, OSError) and error.errno in _WRITE_ERRNOS:
            raise _write_error(path, error) from error
        raise
    for hook in list(_WRITTEN_HOOKS):
        hook(path, digest)


def write_text_atomic(path: str, text: str) -> str:
    with atomic_open(path, 'w') as handle:
        handle.write(text)
    return path


def write_bytes_atomic(path: str, data: bytes) -> str:
    with atomic_open(path, 'wb') as handle:
        handle.write(data)
    return path


def json_safe(obj: Any) -> Any:
    """Plain JSON types; NaN/inf become None so the file is strict JSON (null)."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if hasattr(obj, 'item') and callable(obj.item):  # 0-d torch tensors and kin
        return json_safe(obj.item())
    return obj


def write_json_atomic(path: str, obj: Any, indent: Optional[int] = 2) -> str:
    """JSON with NaN written as null (strict JSON readers reject NaN)."""
    return write_text_atomic(path, json.dumps(json_safe(obj), indent=indent,
                                              allow_nan=False) + '\n')


def write_image_atomic(path: str, image: np.ndarray) -> str:
    """Encode with OpenCV by the file's extension (``image`` as cv2 expects: BGR or gray)."""
    extension = os.path.splitext(path)[1] or '.png'
    ok, encoded = cv2.imencode(extension, image)
    if not ok:
        raise ValueError(f'OpenCV could not encode an image of shape {image.shape} as '
                         f'{extension!r} for {path}.')
    return write_bytes_atomic(path, encoded.tobytes())


def file_sha256(path: str, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (checkpoints are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b''):
            digest.update(chunk)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- files
def read_json(path: str, kind: str = 'JSON file', fix: str = '') -> Any:
    """Read a JSON file, with an error that names the file when it is missing, broken or not
    text at all; ``kind`` says what the file should be, ``fix`` how to get a good one."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{kind[0].upper() + kind[1:]} not found: {path!r}. ' + (
            fix or 'Check the path (a sweep writes results.json into its work dir).'))
    with open(path, encoding='utf-8') as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f'{path!r} is not valid JSON ({err}); ' + (
                fix or 'was it written completely? Re-run the step that produces it.')) from err
        except UnicodeDecodeError:  # binary junk: the codec's message would not name the file
            raise ValueError(f'{path}: not a {kind} (binary content, not UTF-8 JSON); '
                             + (fix or 'pass the JSON file itself.')) from None
