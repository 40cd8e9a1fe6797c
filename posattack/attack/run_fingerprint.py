"""What a result depends on, hashed, so that ``--resume`` never merges two experiments.

Paths alone do not identify an experiment: the same config file edited, ``--cfg-options``
pointing ``data_root`` elsewhere, or a dataset regenerated with the same image count all
keep the paths and change the numbers. So a work dir records, besides the paths:

* ``config_sha256``: the model and the test data settings of the config *as used* (after
  ``--cfg-options``), canonical JSON (worker counts and the like are left out: they
  change no number);
* ``images_sha256``: the sorted test images and label maps (absolute paths and byte sizes);
* ``ranking_sha256``: the bytes of the ranking file(s) given with ``--ranking``.

A ranking identified during a run records the same keys (``model.identified_on``), so one
left in a work dir without results.json is reused only for the same images, config,
checkpoint and layer.
"""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
from collections.abc import Mapping
from typing import Optional

from ..utils.config_values import plain_config_value, without_loader_only_keys
from ..utils.fileio import file_sha256

__all__ = ['CONTENT_KEYS', 'PROVENANCE_KEYS', 'config_sha256', 'content_fingerprint',
           'describe_mismatch', 'differing_keys', 'images_sha256',
           'outdated_fingerprint_message', 'ranking_provenance', 'ranking_provenance_problem',
           'ranking_source_sha256', 'resume_refusal']

# Recorded since issue 13; a work dir without them was written by an older posattack.
CONTENT_KEYS = ('config_sha256', 'images_sha256', 'ranking_sha256')
# What a ranking identified on the fly depends on.
PROVENANCE_KEYS = ('checkpoint_sha256', 'config_sha256', 'images_sha256', 'layer',
                   'identification')

_WHAT_DIFFERS = {
    'config_sha256': 'the config contents differ (model or test data settings, '
                     '--cfg-options included)',
    'images_sha256': 'the test images differ (data_root, the image list, or file sizes)',
    'ranking_sha256': 'the --ranking file contents differ',
    'checkpoint_sha256': 'the checkpoint contents differ',
}


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def config_sha256(cfg) -> str:
    """The parts of a config that decide the predictions and the scored images."""
    loader = without_loader_only_keys(dict(cfg.get('test_dataloader') or {}))
    parts = dict(model=cfg.get('model'), test_dataloader=loader,
                 default_scope=cfg.get('default_scope'))
    return _sha256_text(json.dumps(plain_config_value(parts), sort_keys=True))


def _size(path) -> Optional[int]:
    try:
        return os.path.getsize(path)
    except (OSError, TypeError):
        return None


def images_sha256(dataset) -> str:
    """The test set as (image, label map) absolute paths and byte sizes, sorted.

    Sizes catch a dataset regenerated or edited in place at the same paths; hashing every
    file's bytes would cost a read of the whole dataset per run.
    """
    entries = []
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        img, seg = info.get('img_path'), info.get('seg_map_path')
        entries.append([osp.abspath(img) if img else None, _size(img),
                        osp.abspath(seg) if seg else None, _size(seg)])
    entries.sort(key=lambda entry: json.dumps(entry))
    return _sha256_text(json.dumps(entries))


def ranking_source_sha256(path: Optional[str]) -> Optional[str]:
    """sha256 of a ranking file, or of a folder's *.json files (the authors' release)."""
    if not path:
        return None
    if osp.isdir(path):
        names = sorted(name for name in os.listdir(path) if name.endswith('.json'))
        return _sha256_text(json.dumps(
            [[name, file_sha256(osp.join(path, name))] for name in names]))
    return file_sha256(path) if osp.isfile(path) else None


def content_fingerprint(cfg, dataset, ranking_path: Optional[str]) -> dict:
    """The CONTENT_KEYS of a run (added to the path-based fingerprint of results.json)."""
    return dict(config_sha256=config_sha256(cfg), images_sha256=images_sha256(dataset),
                ranking_sha256=ranking_source_sha256(ranking_path))


def outdated_fingerprint_message(path: str, recorded: Mapping) -> Optional[str]:
    """A one-line refusal for results written before the content keys existed, else None."""
    missing = [key for key in CONTENT_KEYS if key not in recorded]
    if not missing:
        return None
    return (f'--resume refused: {path} was written by an older posattack that did not record '
            f'{", ".join(missing)}, so it cannot be shown to come from this config, data and '
            'ranking. Drop --resume to start over, or use another --work-dir.')


def describe_mismatch(key: str, theirs, ours) -> str:
    """One clause of a resume refusal: what differs, in words where a hash would not say."""
    if key in _WHAT_DIFFERS and theirs is not None and ours is not None:
        return f'{key}: {_WHAT_DIFFERS[key]}'
    return f'{key}: {theirs!r} there vs {ours!r} now'


def differing_keys(recorded: Mapping, wanted: Mapping) -> list[str]:
    """The keys of ``wanted`` whose value ``recorded`` does not hold (a missing key differs)."""
    return [key for key in wanted if recorded.get(key) != wanted[key]]


def resume_refusal(path: str, recorded: Mapping, wanted: Mapping, keys, what: str) -> str:
    """The one line that refuses to resume from ``path``: each differing key in words, and
    the two ways out."""
    lines = ', '.join(describe_mismatch(key, recorded.get(key), wanted[key]) for key in keys)
    return (f'--resume refused: {path} comes from a different {what} ({lines}). '
            'Use another --work-dir, or drop --resume to start over.')


def ranking_provenance(fingerprint: Mapping) -> dict:
    """What a ranking identified in this run depends on (stored in ranking.json)."""
    return {key: fingerprint.get(key) for key in PROVENANCE_KEYS}


def ranking_provenance_problem(ranking_model: Mapping, fingerprint: Mapping,
                               path: str) -> Optional[str]:
    """Why a ranking.json left in the work dir must not be reused in this run, or None."""
    recorded = (ranking_model or {}).get('identified_on')
    if not isinstance(recorded, Mapping):
        return (f'--resume refused: {path} does not record which images, config and '
                'checkpoint it was identified on (an older posattack, or a file copied in). '
                'Delete it to identify again, or pass it as --ranking if you know it fits.')
    different = [key for key in PROVENANCE_KEYS if recorded.get(key) != fingerprint.get(key)]
    if not different:
        return None
    clauses = '; '.join(describe_mismatch(key, recorded.get(key), fingerprint.get(key))
                        for key in different)
    return (f'--resume refused: {path} was identified in another experiment ({clauses}). '
            'Delete it to identify again, or drop --resume to start over.')
