"""The bytes of the test images, checked on ``--resume``: an image edited in place is named.

The run fingerprint hashes the test set's paths and byte sizes
(:func:`posattack.attack.run_fingerprint.images_sha256`), so an image edited in place to the
same size slipped through, and a resume mixed settings scored on the old image with settings
scored on the new one. So results.json also records, per image and label map, its size,
modification time and sha256 (``image_contents``). A resume re-hashes only the files whose
size or modification time changed since (an edit changes the time; a file merely touched
keeps its bytes and is accepted), and refuses, naming the file, when the bytes differ.

    record = image_contents(dataset)                         # a fresh run: every file once
    record = check_image_contents(previous['image_contents'], dataset, path)   # on resume
"""
from __future__ import annotations

import os
import os.path as osp
from collections.abc import Sequence
from typing import Optional

from ..utils.fileio import file_sha256

__all__ = ['check_image_contents', 'image_contents']


def _test_files(dataset) -> list[str]:
    paths = []
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        paths += [osp.abspath(info[key]) for key in ('img_path', 'seg_map_path') if info.get(key)]
    return sorted(set(paths))


def _entry(path: str, sha256: Optional[str] = None) -> list:
    stat = os.stat(path)
    return [path, stat.st_size, stat.st_mtime_ns, sha256 or file_sha256(path)]


def image_contents(dataset) -> list[list]:
    """[path, size, mtime_ns, sha256] of every test image and label map, sorted by path."""
    return [_entry(path) for path in _test_files(dataset)]


def _valid(recorded) -> bool:
    return isinstance(recorded, list) and all(
        isinstance(entry, list) and len(entry) == 4 and isinstance(entry[0], str)
        for entry in recorded)


def check_image_contents(recorded: Optional[Sequence], dataset, results_path: str) -> list[list]:
    """The record for this run, refreshed; refuses when a file's bytes changed since."""
    if recorded is None:  # results of a posattack from before this record: hash them now
        return image_contents(dataset)
    if not _valid(recorded):
        raise ValueError(f'--resume refused: {results_path} holds a damaged image_contents '
                         'record: drop --resume to start over.')
    by_path = {entry[0]: entry for entry in recorded}
    fresh = []
    for path in _test_files(dataset):
        old = by_path.get(path)
        stat = os.stat(path)
        if old is not None and [stat.st_size, stat.st_mtime_ns] == old[1:3]:
            fresh.append(list(old))
            continue
        entry = _entry(path)
        if old is None or entry[3] != old[3]:
            raise ValueError(f'--resume refused: the test file {path} changed since the run '
                             f'in {osp.dirname(results_path)} began (its bytes differ), so its '
                             'settings would mix old and new scores: drop --resume to start '
                             'over, or restore the file.')
        fresh.append(entry)  # touched, same bytes
    return fresh
