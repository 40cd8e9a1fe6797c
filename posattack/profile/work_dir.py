"""The depth profile's work dir, taken like the attack's: locked and marked as posattack's.

A profile writes identification.json, profile.json/.md, three plots, rankings/<layer>.json
and an attack-style folder per layer under layers/. Before manifests, a fresh profile into a
folder of the user's that held, say, a profile.md or a layers/ folder replaced those files
without a word. Now the work dir is claimed before the model is loaded
(:func:`posattack.utils.output_folder.claim_output_folder`): a non-empty folder without
posattack's manifest is refused, every file the profile writes is recorded, and a write
that would replace a file the manifest does not list is refused.

    with claim_profile_dir(opts.work_dir):
        profile = profile_model(model, cfg, opts)
"""
from __future__ import annotations

import glob
import os
import os.path as osp
from contextlib import contextmanager

from ..attack.work_dir import RUN_OUTPUTS
from ..utils.output_folder import claim_output_folder
from ..utils.owned_files import claim_folder

__all__ = ['PROFILE_OUTPUTS', 'claim_profile_dir']

PROFILE_OUTPUTS = ('identification.json', 'profile.json', 'profile.md',
                   'concentration_vs_depth.png', 'gap_vs_depth.png', 'class_drop_by_layer.png')
# A profile work dir of a posattack from before manifests, known by its own files.
PROFILE_LEGACY_MARK = (('identification.json', ('posattack.profile_identification/1', )),
                       ('profile.json', ('posattack.profile/1', )))


def _legacy_outputs(work_dir: str) -> list[str]:
    """What an older posattack's profile left: its top-level files, the rankings, and the
    attack outputs in every layer's folder (nothing else in them is adopted)."""
    names = list(PROFILE_OUTPUTS)
    names += [osp.relpath(path, work_dir)
              for path in glob.glob(osp.join(glob.escape(work_dir), 'rankings', '*.json'))]
    for layer_dir in glob.glob(osp.join(glob.escape(work_dir), 'layers', '*')):
        names += [osp.relpath(osp.join(layer_dir, name), work_dir) for name in RUN_OUTPUTS]
    return names


def _resume_state(name: str) -> bool:
    """What a profile's resume reads and checks itself (or computes again when unreadable)."""
    return name.startswith('rankings' + os.sep) or osp.basename(name) in (
        'identification.json', 'results.json', 'per_image.npz', 'ranking.json')


@contextmanager
def claim_profile_dir(work_dir: str, resume: bool = False):
    """Check, lock and claim the profile's work dir (rank 0; every rank fails alike)."""
    with claim_output_folder(work_dir, lambda: [claim_folder(
            work_dir, '--work-dir', legacy=PROFILE_LEGACY_MARK,
            legacy_outputs=_legacy_outputs(work_dir),
            checked_by_reader=_resume_state if resume else None)]):
        yield
