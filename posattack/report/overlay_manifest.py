"""Which overlay panels belong to the run in a work dir: ``<work-dir>/overlays.json``.

The report embeds the panels this file lists, never whatever PNGs lie in the overlay
folder: a fresh run into an old work dir (or into a shared ``--show-dir``) would otherwise
show another run's images as its own. The file is written only after every panel is on
disk, so a run killed in between has no manifest, and ``--resume`` draws the panels again
instead of reporting "nothing left to do" with none.

    write_overlay_manifest(work_dir, show_dir, written_paths, request)
    reported_overlays(work_dir, show_dir)         # the panels to embed, [] if none are ours
"""
from __future__ import annotations

import json
import os.path as osp
from collections.abc import Sequence
from typing import Optional

from mmengine import dist

from ..utils.fileio import write_json_atomic
from ..utils.owned_files import remove_owned

__all__ = ['MANIFEST_NAME', 'overlays_up_to_date', 'read_overlay_manifest',
           'remove_listed_overlays', 'reported_overlays', 'write_overlay_manifest']

MANIFEST_NAME = 'overlays.json'
MANIFEST_FORMAT = 'posattack.overlays/1'


def _manifest_path(work_dir: str) -> str:
    return osp.join(work_dir, MANIFEST_NAME)


def _request_record(request) -> dict:
    """What decides the panels: the three settings shown and how many images."""
    return dict(settings=[s.key for s in (request.clean, request.targeted, request.random)],
                num_overlays=int(request.selector.k))


def read_overlay_manifest(work_dir: str) -> Optional[dict]:
    """The manifest, or None when there is none or it cannot be read."""
    try:
        with open(_manifest_path(work_dir), encoding='utf-8') as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get('format') != MANIFEST_FORMAT:
        return None
    return manifest


def _relative_show_dir(work_dir: str, show_dir: str) -> str:
    # Relative to the work dir, so a work dir copied or moved whole keeps its overlays.
    return osp.relpath(osp.abspath(show_dir), osp.abspath(work_dir))


def _listed_paths(work_dir: str, manifest: dict) -> list[str]:
    folder = osp.join(work_dir, manifest.get('show_dir', ''))
    return [osp.normpath(osp.join(folder, name)) for name in manifest.get('files', [])]


def remove_listed_overlays(work_dir: str, keep: Sequence[str] = ()) -> None:
    """Delete the panels an earlier run listed (and its manifest), except ``keep``.

    Only panels that posattack's file manifest lists as its own go
    (:func:`posattack.utils.owned_files.remove_owned`): an overlays.json edited, or a show
    dir the user has since filled, never costs a file of theirs.
    """
    manifest = read_overlay_manifest(work_dir)
    keep = {osp.abspath(path) for path in keep}
    if manifest is not None:
        for path in _listed_paths(work_dir, manifest):
            if osp.abspath(path) not in keep:
                remove_owned(path)
    if not keep:
        remove_owned(_manifest_path(work_dir))


def write_overlay_manifest(work_dir: str, show_dir: str, paths: Sequence[str],
                           request) -> str:
    """Record the panels just written (removing those of the run before that are not)."""
    remove_listed_overlays(work_dir, keep=paths)
    return write_json_atomic(_manifest_path(work_dir), dict(
        format=MANIFEST_FORMAT, show_dir=_relative_show_dir(work_dir, show_dir),
        files=[osp.relpath(osp.abspath(path), osp.abspath(show_dir)) for path in paths],
        **_request_record(request)))


def reported_overlays(work_dir: str, show_dir: Optional[str]) -> list[str]:
    """The panels the report should embed: those this work dir's manifest lists."""
    manifest = read_overlay_manifest(work_dir)
    if not show_dir or manifest is None \
            or manifest.get('show_dir') != _relative_show_dir(work_dir, show_dir):
        return []
    return [path for path in _listed_paths(work_dir, manifest) if osp.isfile(path)]


def overlays_up_to_date(work_dir: str, show_dir: str, request) -> bool:
    """Whether the panels of ``request`` are all on disk in ``show_dir``.

    Rank 0's answer on every process: rank 0 writes the manifest, and a process that read
    it a moment earlier would start a pass alone and wait forever in its collectives.
    """
    answer = [_overlays_on_disk(work_dir, show_dir, request) if dist.get_rank() == 0
              else None]
    dist.broadcast_object_list(answer)  # a no-op outside a launcher
    return bool(answer[0])


def _overlays_on_disk(work_dir: str, show_dir: str, request) -> bool:
    manifest = read_overlay_manifest(work_dir)
    if manifest is None or manifest.get('show_dir') != _relative_show_dir(work_dir, show_dir):
        return False
    if any(manifest.get(key) != value for key, value in _request_record(request).items()):
        return False
    return all(osp.isfile(path) for path in _listed_paths(work_dir, manifest))
