"""Which files in a folder posattack wrote: ``<folder>/.posattack-files.json``.

A fresh run used to clear its work dir by file names (results.json, report.md,
overlays/*.png), so a folder of the user's that held a report.md or a png lost them without a
word. Now every folder a run writes into keeps a manifest of the files posattack wrote there,
recorded *before* each write (:func:`posattack.utils.fileio.atomic_open` asks
:func:`check_write` while a folder is claimed), and

* a run into a non-empty folder without a manifest is refused (:func:`claim_folder`), unless
  it is a work dir of an earlier posattack (recognised by its own results file and adopted:
  its known output names count as posattack's);
* clearing an earlier run removes only files a manifest lists (:func:`remove_owned`);
* a write that would replace a file no manifest lists is refused, never done.

    folder = claim_folder(work_dir, '--work-dir')        # refuses a folder of the user's
    with owned_folders([folder]):
        write_json_atomic(osp.join(work_dir, 'results.json'), results)   # recorded
"""
from __future__ import annotations

import json
import os
import os.path as osp
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from typing import Optional

from . import fileio

__all__ = ['MANIFEST_NAME', 'OwnedFolder', 'check_replaceable', 'claim_folder', 'claimed_folder',
           'owned_folders', 'remove_owned', 'unused_path']

MANIFEST_NAME = '.posattack-files.json'
MANIFEST_FORMAT = 'posattack.files/1'
# Files a run may leave behind that are never the user's: its lock and its temporaries.
_OWN_DEBRIS_PREFIXES = (fileio.TEMP_PREFIX, '.posattack-write-test-')
_LOCK_NAME = '.lock'


class OwnedFolder:
    """A folder and the files in it (paths relative to it) that posattack wrote.

    ``owner``: for a show dir outside its work dir, the work dir (relative to the folder,
    so that the two moved together stay paired); None for a work dir, which owns itself.
    """

    def __init__(self, folder: str, files: Iterable[str] = (), owner: Optional[str] = None,
                 stats: Optional[dict] = None):
        self.folder = osp.abspath(folder)
        self.files = set(files)
        self.owner = owner
        # name -> [size, mtime_ns, sha256] as posattack wrote it: a file replaced since (by
        # the user, under posattack's output name) is told apart and never replaced/removed
        self.stats = {name: stat for name, stat in (stats or {}).items()
                      if name in self.files and isinstance(stat, list) and len(stat) == 3}
        # names a resume reads and checks itself (results.json, per_image.npz, ...): changed,
        # they are judged by their reader (refused as damaged, or of another run), not here
        self.checked_by_reader: Callable[[str], bool] = lambda name: False

    @property
    def manifest_path(self) -> str:
        return osp.join(self.folder, MANIFEST_NAME)

    @classmethod
    def read(cls, folder: str) -> Optional['OwnedFolder']:
        """The folder's manifest, or None when it has none (or one that cannot be read)."""
        try:
            with open(osp.join(folder, MANIFEST_NAME), encoding='utf-8') as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get('format') != MANIFEST_FORMAT \
                or not isinstance(data.get('files'), list):
            return None
        # only names inside the folder: a hand-edited or damaged manifest listing
        # '../x' or '/home/me/x' must never make a fresh run delete a file outside it
        inside = [str(f) for f in data['files'] if isinstance(f, str) and f
                  and not osp.isabs(f) and not osp.normpath(f).startswith(os.pardir)]
        stats = data.get('stats') if isinstance(data.get('stats'), dict) else {}
        return cls(folder, inside, data.get('owner'), stats)

    def save(self) -> None:
        # atomic_open itself, not write_json_atomic's guard: the manifest never lists itself
        with fileio.atomic_open(self.manifest_path, 'w') as handle:
            json.dump(dict(format=MANIFEST_FORMAT, owner=self.owner,
                           files=sorted(self.files),
                           stats={name: self.stats[name] for name in sorted(self.stats)}),
                      handle, indent=1)

    def relative(self, path: str) -> Optional[str]:
        """``path`` relative to the folder, or None when it lies outside."""
        path = osp.abspath(path)
        if path == self.folder or not path.startswith(self.folder + os.sep):
            return None
        return osp.relpath(path, self.folder)

    def owns(self, path: str) -> bool:
        return self.relative(path) in self.files

    def changed(self, name: str) -> bool:
        """Whether the listed file ``name`` is no longer what posattack wrote there (same
        size and time: unchanged; else its bytes decide, so a copied work dir is still ours)."""
        recorded = self.stats.get(name)
        if self.checked_by_reader(name):
            return False
        path = osp.join(self.folder, name)
        if recorded is None or not osp.isfile(path) or osp.islink(path):
            return recorded is not None and osp.lexists(path)
        stat = os.stat(path)
        if [stat.st_size, stat.st_mtime_ns] == recorded[:2]:
            return False
        return fileio.file_sha256(path) != recorded[2]

    def written(self, path: str, sha256: Optional[str]) -> None:
        name = self.relative(path)
        if name in self.files and sha256 is not None and osp.isfile(path):
            stat = os.stat(path)
            self.stats[name] = [stat.st_size, stat.st_mtime_ns, sha256]
            self.save()

    def record(self, path: str) -> None:
        name = self.relative(path)
        if name is not None and name not in self.files:
            self.files.add(name)
            self.save()

    def remove_files(self, keep: Iterable[str] = ()) -> None:
        """Delete every listed file (not ``keep``); the manifest then lists what is left."""
        keep = {osp.abspath(path) for path in keep}
        for name in sorted(self.files):
            path = osp.join(self.folder, name)
            if osp.abspath(path) in keep or self.changed(name):  # a user's file now: stays
                continue
            if osp.isfile(path) or osp.islink(path):
                os.unlink(path)
            self.files.discard(name)
            self.stats.pop(name, None)
        if osp.exists(self.manifest_path):
            self.save()

    def remove_debris(self) -> list[str]:
        """Temporary files of a run killed mid-write (kill -9 skips every cleanup)."""
        removed = []
        for name in _entries(self.folder):
            if name.startswith(_OWN_DEBRIS_PREFIXES) and osp.isfile(osp.join(self.folder,
                                                                             name)):
                os.unlink(osp.join(self.folder, name))
                removed.append(name)
        return removed


def _entries(folder: str) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


def _foreign_entries(folder: str) -> list[str]:
    """What a folder holds besides posattack's lock, manifest and temporaries, and empty
    folders (the run's own show dir, created when it was checked, holds nothing to lose)."""
    return [name for name in _entries(folder)
            if name not in (MANIFEST_NAME, _LOCK_NAME)
            and not name.startswith(_OWN_DEBRIS_PREFIXES)
            and not (osp.isdir(osp.join(folder, name)) and not _entries(osp.join(folder, name)))]


def _is_posattack_results(path: str, formats) -> bool:
    try:
        with open(path, encoding='utf-8') as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return False
    if callable(formats):  # a file of a format from before format fields
        return formats(data)
    return isinstance(data, dict) and data.get('format') in formats


def claim_folder(folder: str, option: str, owner: Optional[str] = None,
                 legacy: Sequence[tuple[str, Sequence[str]]] = (),
                 legacy_outputs: Sequence[str] = (),
                 refuse_foreign: bool = True,
                 checked_by_reader: Optional[Callable[[str], bool]] = None) -> OwnedFolder:
    """The folder's manifest, checked: whose it is, and whether a run may write there.

    ``owner``: the work dir a show dir belongs to (absolute); a show dir another work dir
    owns is refused. ``legacy``: (file name, formats) that mark a work dir of a posattack
    from before manifests, whose ``legacy_outputs`` present are adopted as posattack's
    (``formats`` may be a predicate on the file's JSON, for files without a format field).
    ``refuse_foreign``: refuse a non-empty folder without a manifest (a work dir); a show
    dir of the user's is accepted, and its files are never touched. ``checked_by_reader``:
    on a resume, the names the run reads and checks itself; any other file changed since
    posattack wrote it is refused.
    """
    owned = OwnedFolder.read(folder)
    if owned is not None and checked_by_reader is not None:
        owned.checked_by_reader = checked_by_reader
    relative_owner = osp.relpath(owner, osp.abspath(folder)) if owner else None
    if owned is not None:
        if owned.owner is not None and owner is not None and osp.normpath(
                osp.join(owned.folder, owned.owner)) != osp.abspath(owner):
            theirs = osp.normpath(osp.join(owned.folder, owned.owner))
            raise ValueError(f'{option} {folder} holds the panels of the run in {theirs}: '
                             f'pass another {option} (one per work dir).')
        changed = [name for name in sorted(owned.files) if owned.changed(name)]
        if changed:
            shown = ', '.join(changed[:3]) + (', ...' if len(changed) > 3 else '')
            raise ValueError(f'{option} {folder}: {shown} changed since posattack wrote '
                             f'{"it" if len(changed) == 1 else "them"} (a file of yours under '
                             "posattack's output name?), and a run would replace or remove "
                             'it: move it away, or pass another folder.')
        owned.owner = relative_owner
        return owned
    foreign = _foreign_entries(folder)
    for name, formats in legacy:
        if _is_posattack_results(osp.join(folder, name), formats):
            adopted = [n for n in legacy_outputs if osp.isfile(osp.join(folder, n))]
            owned = OwnedFolder(folder, adopted, relative_owner)
            owned.save()
            return owned
    if foreign and refuse_foreign:
        shown = ', '.join(foreign[:3]) + (', ...' if len(foreign) > 3 else '')
        raise ValueError(f'{option} {folder} is not empty and posattack did not write it '
                         f'(no {MANIFEST_NAME}; it holds {shown}): pass a new or empty '
                         'folder, so that no file of yours is replaced or removed.')
    return OwnedFolder(folder, (), relative_owner)


# ----------------------------------------------------------------------------- the guard
_ACTIVE: list[OwnedFolder] = []


def _claim_of(path: str) -> Optional[OwnedFolder]:
    """The deepest claimed folder that holds ``path`` (a model's work dir inside a pooled
    run's records its own files)."""
    holders = [owned for owned in _ACTIVE if owned.relative(path) is not None]
    return max(holders, key=lambda owned: len(owned.folder)) if holders else None


def claimed_folder(folder: str) -> Optional[OwnedFolder]:
    """The active claim on exactly ``folder``, if any."""
    folder = osp.abspath(folder)
    return next((owned for owned in _ACTIVE if owned.folder == folder), None)


def check_write(path: str) -> None:
    """Called before every atomic write: record it, or refuse to replace a user's file."""
    if osp.basename(path) == MANIFEST_NAME:
        return
    owned = _claim_of(path)
    if owned is None:
        return
    if osp.lexists(path) and not owned.owns(path):
        raise ValueError(f'refusing to replace {path}: posattack did not write it (it is not '
                         f'in {owned.manifest_path}); move it away, or pass another folder.')
    if osp.lexists(path) and owned.changed(owned.relative(path)):
        raise ValueError(f'refusing to replace {path}: it changed since posattack wrote it '
                         '(a file of yours under its output name?); move it away, or pass '
                         'another folder.')
    owned.record(path)


def _written(path: str, sha256: Optional[str]) -> None:
    """Called after every atomic write: what posattack wrote, to tell a replacement later."""
    if osp.basename(path) == MANIFEST_NAME:
        return
    owned = _claim_of(path)
    if owned is not None:
        owned.written(path, sha256)


def unused_path(path: str) -> str:
    """``path``, or ``stem-2.ext``, ``stem-3.ext``, ... : the first one that replaces no file
    of the user's (panels are named after the images, which a user's folder may hold)."""
    owned = _claim_of(path)
    if owned is None:
        return path
    stem, extension = osp.splitext(path)
    candidate, number = path, 1
    while osp.lexists(candidate) and not owned.owns(candidate):
        number += 1
        candidate = f'{stem}-{number}{extension}'
    return candidate


@contextmanager
def owned_folders(folders: Sequence[OwnedFolder]):
    """Record every atomic write under ``folders`` in their manifests while the block runs."""
    _ACTIVE.extend(folders)
    fileio.add_write_check(check_write)
    fileio.add_written_hook(_written)
    try:
        yield
    finally:
        for owned in folders:
            _ACTIVE.remove(owned)
        if not _ACTIVE:
            fileio.remove_write_check(check_write)
            fileio.remove_written_hook(_written)


def _nearest_manifest(path: str) -> Optional[OwnedFolder]:
    claimed = _claim_of(path)
    if claimed is not None:
        return claimed
    folder = osp.dirname(osp.abspath(path))
    while True:
        owned = OwnedFolder.read(folder)
        if owned is not None:
            return owned
        parent = osp.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def remove_owned(path: str) -> bool:
    """Delete ``path`` if a manifest (the claimed folder's, else the nearest one above it)
    lists it as posattack's; a file no manifest lists is the user's and stays."""
    owned = _nearest_manifest(path)
    if owned is None or not owned.owns(path) or owned.changed(owned.relative(path)):
        return False
    if osp.isfile(path) or osp.islink(path):
        os.unlink(path)
    owned.files.discard(owned.relative(path))
    owned.save()
    return True


def check_replaceable(path: str, formats: Sequence[str], option: str) -> None:
    """Refuse an output file path (a tool's ``--out``) that holds a file posattack did not
    write: only a JSON file of one of posattack's ``formats`` may be replaced (tools/identify.py
    used to overwrite whatever ``--out`` named)."""
    if not osp.lexists(path) or osp.isdir(path):
        return
    if osp.islink(path) or not _is_posattack_results(path, formats):
        raise ValueError(f'{option} {path} exists and is not a file posattack wrote (a '
                         f'{" or ".join(formats)} JSON file): pass another {option}, or move '
                         'the file away.')
