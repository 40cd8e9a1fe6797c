"""The files a ``--resume`` reads, checked before they are trusted: results.json, per_image.npz.

* results.json must be posattack's results (a dict of its format with a list of settings):
  a truncated or hand-edited file is refused in one line, not a traceback mid-run.
* per_image.npz is what every interval and verdict resamples. One from another run on the
  same images (another checkpoint, say) has the same images and labels, so nothing else
  catches it, and it changes the verdicts. So the file records ``run_sha256``, the sha256 of
  the fingerprint in results.json (config, checkpoint, layer, images, ranking, ablation,
  regions), and a resume refuses a file of another run. A file written before that record
  is checked by content instead: summed over its images, its counts must give each setting's
  mIoU that results.json holds.

    previous = read_results_file(results_path)
    counts = load_previous_per_image(work_dir, fingerprint, previous)
"""
from __future__ import annotations

import hashlib
import json
import os.path as osp
from collections.abc import Mapping
from typing import Optional

import numpy as np

from ..report.per_image import PerImageCounts, miou_from_counts, per_image_path
from ..utils.fileio import json_safe, read_json

__all__ = ['load_previous_per_image', 'read_results_file', 'run_sha256']

RESULTS_FORMAT = 'posattack.results/1'
# results.json rounds mIoU to 2 decimals
_MIOU_TOLERANCE = 0.006


def run_sha256(fingerprint: Mapping) -> str:
    """The hash per_image.npz records: the run's fingerprint as canonical JSON."""
    text = json.dumps(json_safe(fingerprint), sort_keys=True)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def read_results_file(path: str) -> dict:
    """results.json of an earlier run, or a one-line refusal saying what to do."""
    previous = read_json(path)  # names the file when it is not JSON (a truncated write)
    settings = previous.get('settings') if isinstance(previous, dict) else None
    if not isinstance(previous, dict) or previous.get('format') != RESULTS_FORMAT \
            or not isinstance(settings, list) \
            or not all(isinstance(s, dict) and isinstance(s.get('key'), str)
                       and isinstance(s.get('metrics'), dict) for s in settings):
        raise ValueError(f'{path!r} is not a posattack results file (format {RESULTS_FORMAT}, '
                         'a list of settings): drop --resume to start over, or use another '
                         '--work-dir.')
    return previous


def _full_miou_mismatch(counts: PerImageCounts, previous: Mapping) -> Optional[str]:
    if 'full' not in counts.regions:
        return None
    row = counts.regions.index('full')
    gt = counts.gt[:, row].astype(np.float64).sum(axis=0)
    for setting in previous.get('settings', []):
        key, recorded = setting['key'], setting['metrics'].get('mIoU')
        if key not in counts.tp or recorded is None:
            continue
        value = float(miou_from_counts(counts.tp[key][:, row].astype(np.float64).sum(axis=0),
                                       gt,
                                       counts.pred[key][:, row].astype(np.float64).sum(axis=0)))
        if not abs(value - recorded) <= _MIOU_TOLERANCE:
            return f'{key}: mIoU {value:.2f} from its counts, {recorded} in results.json'
    return None


def load_previous_per_image(work_dir: str, fingerprint: Mapping,
                            previous: Mapping) -> Optional[PerImageCounts]:
    """The earlier run's per-image counts, refused when they belong to another run."""
    path = per_image_path(work_dir)
    if not osp.exists(path):
        return None
    counts = PerImageCounts.load(path)
    fix = 'delete it and rerun with --resume to recompute the settings.'
    if counts.run_sha256 is not None:
        if counts.run_sha256 != run_sha256(fingerprint):
            raise ValueError(f'--resume refused: {path} was written by another run than '
                             f'results.json describes (another checkpoint, config, layer, '
                             f'data or ablation); {fix}')
        return counts
    mismatch = _full_miou_mismatch(counts, previous)
    if mismatch:
        raise ValueError(f'--resume refused: {path} does not belong to the results beside it '
                         f'({mismatch}); {fix}')
    return counts
