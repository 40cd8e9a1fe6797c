"""Taking an output folder for one run: checked before any compute, locked, claimed.

Every tool that writes a work dir (tools/attack.py, tools/depth_profile.py,
tools/consistency.py) takes it through :func:`claim_output_folder` before the model is
loaded: a folder that is a file, or one nobody can write to, fails in a second instead of
after the compute; a second run into the same folder is refused (:mod:`.work_dir_lock`); a
non-empty folder posattack did not write (no manifest, :mod:`.owned_files`) is refused, so
a fresh run can never replace or remove a user's files; temporary files a killed run left
are removed; a refused run leaves no folder behind that it created. While the claim holds,
every file the run writes there is recorded as posattack's.

    with claim_output_folder(work_dir, lambda: [claim_folder(work_dir, '--work-dir')]):
        ...   # load the model, compute, write_json_atomic(osp.join(work_dir, ...))
"""
from __future__ import annotations

import os
import os.path as osp
import tempfile
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Optional

from mmengine import dist

from .owned_files import OwnedFolder, owned_folders
from .work_dir_lock import WorkDirBusyError, WorkDirLock

__all__ = ['check_output_dir', 'claim_output_folder', 'remove_empty']


def _missing_folders(path: str) -> list[str]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    path = osp.abspath(path)
    while not osp.exists(path):
        missing.append(path)
        parent = osp.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def remove_empty(folders: list[str]) -> None:
    """Remove the folders (deepest first) as long as they are empty."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            return  # not empty (the run wrote something) or already gone


def check_output_dir(path: str, option: str) -> list[str]:
    """Fail now, with the option's name, if ``path`` cannot hold the run's outputs.

    Creates the folder (and missing parents) to prove it can: returns the folders it
    created, deepest first, so that a refused run can remove them again. The test is a real
    write, not ``os.access``, which says yes to root on any folder.
    """
    if osp.exists(path) and not osp.isdir(path):
        raise ValueError(f'{option} {path} is a file, not a folder: pass a folder path '
                         '(it is created when missing).')
    created = _missing_folders(path)
    try:
        os.makedirs(path, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix='.posattack-write-test-', dir=path)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        remove_empty(created)
        reason = error.strerror or str(error)
        raise ValueError(f'{option} {path} is not writable ({reason}): pass a folder you '
                         'can write to.') from None
    return created


def _take_lock(work_dir: str) -> WorkDirLock:
    try:
        return WorkDirLock(work_dir).acquire()
    except OSError as error:  # a file system without flock, say: one line, not a traceback
        raise ValueError(f'--work-dir {work_dir}: its lock file cannot be taken '
                         f'({error.strerror or error}); use a work dir on a local file '
                         'system.') from None


@contextmanager
def claim_output_folder(work_dir: str, claim: Callable[[], list[OwnedFolder]],
                        extra_dirs: Sequence[tuple[str, Optional[str]]] = (),
                        release: Optional[Callable[[list[OwnedFolder]], None]] = None):
    """Check, create, lock and claim a run's folders on rank 0; every rank fails alike.

    ``claim``: called on rank 0 once the work dir exists and is locked; returns the
    folders' manifests (:func:`posattack.utils.owned_files.claim_folder`), or raises
    ValueError for a folder the run must not write. ``extra_dirs``: (option, path) of
    other output folders checked and created alike (a show dir). ``release``: called with
    the claimed folders when the block ends.
    """
    lock, created, problem, owned = None, [], None, []
    if dist.get_rank() == 0:
        try:
            created = check_output_dir(work_dir, '--work-dir')
            for option, path in extra_dirs:
                if path:
                    created += check_output_dir(path, option)
            lock = _take_lock(work_dir)
            owned = claim()
            for folder in owned:
                folder.remove_debris()
        except (ValueError, WorkDirBusyError) as error:
            if lock is not None:
                lock.release()
                lock = None
            remove_empty(sorted(created, key=len, reverse=True))
            problem = error
    shared = [problem]
    dist.broadcast_object_list(shared)  # a no-op outside a launcher
    if shared[0] is not None:
        raise shared[0]
    try:
        with owned_folders(owned):
            yield owned
    finally:
        if release is not None:
            release(owned)
        if lock is not None:
            lock.release()
            # A run refused later on (bad layer, missing data) leaves no empty folders.
            remove_empty(sorted(created, key=len, reverse=True))
