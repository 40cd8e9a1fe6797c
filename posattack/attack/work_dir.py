"""Taking a work dir for one run: checked before any compute, locked, cleared of old outputs.

:func:`claim_work_dir` runs first in :func:`posattack.attack.experiment.run_attack`: a work dir or
show dir that is a file, or one nobody can write to, fails in a second instead of after
the sweep; a second run into the same work dir is refused (see work_dir_lock.py); a folder
of the user's (not empty, and no posattack manifest, :mod:`posattack.utils.owned_files`) is
refused; a show dir another work dir owns is refused; temporary files a killed run left are
removed; a refused run leaves no folder behind that it created. While the claim holds, every
file the run writes there is recorded as posattack's. :func:`clear_earlier_outputs` then
removes, at the start of a fresh (non ``--resume``) run, the files an earlier run wrote (and
only those: a manifest lists them), so that the new report can never show the old run's plots
or overlays. :func:`check_outside_test_data` refuses output folders among the test images,
which panels named after the images could otherwise replace.

    with claim_work_dir(work_dir, show_dir):
        ...
        if not resume:
            clear_earlier_outputs(work_dir, show_dir)
"""
from __future__ import annotations

import os
import os.path as osp
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Optional

from ..report.overlay_manifest import MANIFEST_NAME, read_overlay_manifest, remove_listed_overlays
from ..utils.output_folder import check_output_dir, claim_output_folder
from ..utils.owned_files import claim_folder, claimed_folder

__all__ = ['RUN_OUTPUTS', 'check_output_dir', 'check_outside_test_data', 'claim_work_dir',
           'clear_earlier_outputs']

# Every file tools/attack.py writes into the work dir (overlays: see overlay_manifest.py).
RUN_OUTPUTS = ('results.json', 'results.csv', 'report.md', 'ranking.json', 'per_image.npz',
               'miou_vs_channels.png', 'iou_vs_border_distance.png', 'class_drop_heatmap.png',
               MANIFEST_NAME)
# A work dir of a posattack from before manifests is known by its results.json, or by the
# ranking.json a run killed before its first results left.
RUN_LEGACY_MARK = (('results.json', ('posattack.results/1', )),
                   ('ranking.json', ('posattack.ranking/1', )))
DEFAULT_OVERLAY_FOLDER = 'overlays'
# What a --resume reads and checks itself (read_results_file, load_previous_per_image,
# ranking provenance, the overlay manifest): changed since written, they are judged there.
RESUME_STATE = ('results.json', 'per_image.npz', 'ranking.json', MANIFEST_NAME, 'summary.json')


def _inside(path: str, folder: str) -> bool:
    path, folder = osp.realpath(path), osp.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _legacy_outputs(work_dir: str, outputs: Sequence[str]) -> list[str]:
    """What a work dir of an older posattack holds of its own: the known output names, and
    the panels its overlays.json lists inside it."""
    names = list(outputs)
    manifest = read_overlay_manifest(work_dir)
    if manifest is not None:
        folder = osp.normpath(manifest.get('show_dir', ''))
        names += [osp.normpath(osp.join(folder, name)) for name in manifest.get('files', [])
                  if not osp.isabs(name)]
    return [name for name in names if not name.startswith('..')]


def resume_state(name: str) -> bool:
    """A file a resume reads and checks itself (a pooled run's models' too)."""
    return osp.basename(name) in RESUME_STATE


def _claim_folders(work_dir: str, show_dir: Optional[str], outputs: Sequence[str],
                   legacy, resume: bool) -> list:
    owned = [claim_folder(work_dir, '--work-dir', legacy=legacy,
                          legacy_outputs=_legacy_outputs(work_dir, outputs),
                          checked_by_reader=resume_state if resume else None)]
    for name in outputs:
        if osp.isdir(osp.join(work_dir, name)):
            raise ValueError(f'--work-dir {work_dir} holds a folder {name}, where the run '
                             'writes a file: move it away or pass another --work-dir.')
    if show_dir and not _inside(show_dir, work_dir):
        shown = claim_folder(show_dir, '--show-dir', owner=osp.abspath(work_dir),
                             refuse_foreign=False)
        shown.save()  # now: a second work dir reaching for this show dir is refused
        owned.append(shown)
    return owned


def _release_show_dir(owned: list) -> None:
    """A show dir's manifest that lists no panel (the run was refused, or drew none) goes."""
    for folder in owned[1:]:
        if not folder.files and osp.isfile(folder.manifest_path):
            os.unlink(folder.manifest_path)


@contextmanager
def claim_work_dir(work_dir: str, show_dir: Optional[str] = None,
                   outputs: Sequence[str] = RUN_OUTPUTS, legacy=RUN_LEGACY_MARK,
                   resume: bool = False):
    """Check, create, lock and claim the run's folders on rank 0; every rank fails alike.

    ``outputs``: the names the run writes in the work dir; ``legacy``: (file name, formats)
    that mark a work dir of a posattack from before manifests (adopted, see owned_files);
    ``resume``: the files a resume checks itself may have changed (see RESUME_STATE).
    """
    with claim_output_folder(
            work_dir, lambda: _claim_folders(work_dir, show_dir, outputs, legacy, resume),
            extra_dirs=[('--show-dir', show_dir)], release=_release_show_dir):
        yield


def clear_earlier_outputs(work_dir: str, show_dir: Optional[str],
                          keep: Sequence[Optional[str]] = ()) -> None:
    """Remove what an earlier run wrote here, before a fresh run writes its own.

    Only files a manifest lists go; a file of the user's in the work dir or the show dir
    stays. ``keep``: files this run reads (a ``--ranking`` that is the work dir's
    ranking.json).
    """
    keep = [osp.abspath(path) for path in keep if path]
    remove_listed_overlays(work_dir)  # the earlier run's panels, wherever its show dir was
    for folder in (work_dir, show_dir):
        owned = claimed_folder(folder) if folder else None
        if owned is not None:
            owned.remove_files(keep)


def _test_data_folders(dataset) -> list[str]:
    folders = set()
    root = getattr(dataset, 'data_root', None)
    # data_root '' or '.' (paths relative to where one runs) would hold every folder
    if root and not _inside(os.getcwd(), root):
        folders.add(osp.abspath(root))
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        for key in ('img_path', 'seg_map_path'):
            if info.get(key):
                folders.add(osp.dirname(osp.abspath(info[key])))
    return sorted(folders)


def check_outside_test_data(dataset, folders: dict) -> None:
    """Refuse an output folder (``{option: path}``) that is, or lies inside, a folder of
    test images or label maps: panels are named after the images."""
    data = _test_data_folders(dataset)
    for option, path in folders.items():
        if not path:
            continue
        inside = next((folder for folder in data if _inside(path, folder)), None)
        if inside is not None:
            raise ValueError(f'{option} {path} lies in the test data ({inside} holds test '
                             'images or labels), whose files the outputs could replace: pass '
                             'a folder outside the dataset.')
