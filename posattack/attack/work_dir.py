"""Taking a work dir for one run: checked before any compute, locked, cleared of old outputs.

:func:`claim_work_dir` runs first in :func:`posattack.attack.experiment.run_attack`: a work dir or
show dir that is a file, or one nobody can write to, fails in a second instead of after
the sweep; a second run into the same work dir is refused (see work_dir_lock.py); a
refused run leaves no folder behind that it created. :func:`clear_earlier_outputs` then
removes, at the start of a fresh (non ``--resume``) run, the files an earlier run wrote,
so that the new report can never show the old run's plots or overlays.

    with claim_work_dir(work_dir, show_dir):
        ...
        if not resume:
            clear_earlier_outputs(work_dir, show_dir)
"""
from __future__ import annotations

import glob
import os
import os.path as osp
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Optional

from mmengine import dist

from ..report.overlay_manifest import MANIFEST_NAME, remove_listed_overlays
from .work_dir_lock import WorkDirBusyError, WorkDirLock

__all__ = ['RUN_OUTPUTS', 'check_output_dir', 'claim_work_dir', 'clear_earlier_outputs']

# Every file tools/attack.py writes into the work dir (overlays: see overlay_manifest.py).
RUN_OUTPUTS = ('results.json', 'results.csv', 'report.md', 'ranking.json', 'per_image.npz',
               'miou_vs_channels.png', 'iou_vs_border_distance.png', 'class_drop_heatmap.png',
               MANIFEST_NAME)
DEFAULT_OVERLAY_FOLDER = 'overlays'


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


def _remove_empty(folders: list[str]) -> None:
    for folder in folders:  # deepest first
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
        _remove_empty(created)
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
def claim_work_dir(work_dir: str, show_dir: Optional[str] = None):
    """Check, create and lock the run's folders on rank 0; every rank fails alike."""
    lock, created, problem = None, [], None
    if dist.get_rank() == 0:
        try:
            created = check_output_dir(work_dir, '--work-dir')
            if show_dir:
                created += check_output_dir(show_dir, '--show-dir')
            lock = _take_lock(work_dir)
        except (ValueError, WorkDirBusyError) as error:
            _remove_empty(created)
            problem = error
    shared = [problem]
    dist.broadcast_object_list(shared)  # a no-op outside a launcher
    if shared[0] is not None:
        raise shared[0]
    try:
        yield
    finally:
        if lock is not None:
            lock.release()
            # A run refused later on (bad layer, missing data) leaves no empty folders.
            _remove_empty(sorted(created, key=len, reverse=True))


def clear_earlier_outputs(work_dir: str, show_dir: Optional[str],
                          keep: Sequence[Optional[str]] = ()) -> None:
    """Remove what an earlier run wrote here, before a fresh run writes its own.

    ``keep``: files this run reads (a ``--ranking`` that is the work dir's ranking.json).
    """
    keep = {osp.abspath(path) for path in keep if path}
    remove_listed_overlays(work_dir)
    for name in RUN_OUTPUTS:
        path = osp.join(work_dir, name)
        if osp.isfile(path) and osp.abspath(path) not in keep:
            os.unlink(path)
    # The default overlay folder belongs to the work dir: panels of an older posattack
    # (before overlays.json existed) are cleared too. A --show-dir elsewhere may hold the
    # user's own files, so only the panels a manifest lists are removed from it.
    default = osp.join(work_dir, DEFAULT_OVERLAY_FOLDER)
    for path in glob.glob(osp.join(default, '*.png')):
        os.unlink(path)
