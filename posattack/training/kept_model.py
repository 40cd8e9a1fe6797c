"""Whether the model a work dir keeps is the training a config asks for.

Scripts that rerun on kept models (``tools/train.py --keep-finished``, used by ``make
tables-aug-shift``) must never take a model trained another way for the one asked for. The
record needs no file of ours: MMEngine's Runner stores in every checkpoint the config it
trained with (``meta['cfg']``: the merged config's text, ``--cfg-options`` included), the
seed it used and the iteration reached. :func:`kept_model` compares them with the config
that would train now:

* the parts that decide the trained weights (:data:`TRAINING_KEYS`; loader settings that only
  change how fast images come are left out) and the seed, leaf by leaf: any difference is a
  :class:`KeptModelMismatch` naming the first few;
* the iteration against ``train_cfg.max_iters``: finished, or a run to resume.

What the config cannot say (an edit of a model class's code, a data set regenerated in
place) is not caught: that is what a work dir of its own per experiment is for.
"""
from __future__ import annotations

import os.path as osp
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from ..utils.checkpoint import CheckpointError, load_checkpoint
from ..utils.config_values import plain_config_value, without_loader_only_keys

__all__ = ['KeptModel', 'KeptModelMismatch', 'TRAINING_KEYS', 'kept_model', 'training_parts',
           'training_differences']

# What decides the weights a training ends with (work_dir, hooks, logging and the val/test
# settings do not).
TRAINING_KEYS = ('model', 'train_dataloader', 'train_cfg', 'optim_wrapper', 'param_scheduler',
                 'randomness', 'default_scope')
_MAX_LISTED = 4


class KeptModelMismatch(ValueError):
    """The work dir's model was trained with another config, seed or data."""


@dataclass(frozen=True)
class KeptModel:
    """The last checkpoint of a work dir whose recorded training matches the config."""
    checkpoint: str
    iteration: int
    epoch: int
    train_cfg: dict
    seed: Optional[int]

    @property
    def finished(self) -> bool:
        """Whether it reached the loop's end (max_iters or max_epochs of ``train_cfg``)."""
        if self.train_cfg.get('max_iters') is not None:
            return self.iteration >= self.train_cfg['max_iters']
        return self.epoch >= self.train_cfg.get('max_epochs', 0)


def training_parts(cfg: Mapping) -> dict:
    """The parts of ``cfg`` (a merged MMEngine Config) that decide the trained weights."""
    parts = {key: plain_config_value(cfg.get(key)) for key in TRAINING_KEYS}
    parts['train_dataloader'] = without_loader_only_keys(parts['train_dataloader'])
    return parts


def _leaves(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out = {}
        for key in value:
            out.update(_leaves(value[key], f'{prefix}.{key}' if prefix else key))
        return out
    if isinstance(value, list) and value:
        out = {}
        for index, item in enumerate(value):
            out.update(_leaves(item, f'{prefix}[{index}]'))
        return out
    return {prefix: value}


_MISSING = '<not set>'


def training_differences(recorded: Mapping, wanted: Mapping) -> list[str]:
    """``key: recorded there vs wanted now`` for each leaf of the training parts that differs."""
    theirs, ours = _leaves(training_parts(recorded), ''), _leaves(training_parts(wanted), '')
    keys = list(ours) + [key for key in theirs if key not in ours]
    return [f'{key}: {theirs.get(key, _MISSING)!r} there vs {ours.get(key, _MISSING)!r} now'
            for key in keys if theirs.get(key, _MISSING) != ours.get(key, _MISSING)]


def _recorded_config(meta: Mapping, path: str):
    from mmengine.config import Config  # local: only a kept model is read this way
    text = meta.get('cfg')
    if not isinstance(text, str):
        raise KeptModelMismatch(
            f'{path} records no training config (not saved by an MMEngine Runner), so it '
            'cannot be shown to be this training: move it away or use another --work-dir.')
    return Config.fromstring(text, '.py')


def kept_model(work_dir: str, cfg) -> Optional[KeptModel]:
    """The last checkpoint of ``work_dir`` if its recorded training is ``cfg``'s, None when
    there is none; :class:`KeptModelMismatch` (one line, what differs and the fix) otherwise."""
    pointer = osp.join(work_dir, 'last_checkpoint')  # written by MMEngine's CheckpointHook
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        path = f.read().strip()
    if not osp.isfile(path):  # written relative to where the training ran
        path = osp.join(work_dir, osp.basename(path))
    fix = (f'move {osp.abspath(work_dir)} away to train again, or train into another '
           '--work-dir')
    try:
        meta = load_checkpoint(path).get('meta') or {}
    except CheckpointError as error:
        raise KeptModelMismatch(f'{pointer} names a checkpoint that does not load '
                                f'({error}); {fix}.') from error
    differences = training_differences(_recorded_config(meta, path), cfg)
    wanted_seed = (cfg.get('randomness') or {}).get('seed')
    if wanted_seed is None:
        differences.append('randomness.seed: the config sets none, so no kept model can be '
                           'shown to be its training')
    elif (meta.get('seed') is not None and meta['seed'] != wanted_seed
          and not any(d.startswith('randomness.seed') for d in differences)):
        differences.append(f'seed: {meta["seed"]!r} there vs {wanted_seed!r} now')
    if differences:
        listed = '; '.join(differences[:_MAX_LISTED])
        more = (f' (and {len(differences) - _MAX_LISTED} more)'
                if len(differences) > _MAX_LISTED else '')
        raise KeptModelMismatch(f'{path} was trained another way ({listed}{more}); {fix}.')
    return KeptModel(checkpoint=path, iteration=int(meta.get('iter', 0)),
                     epoch=int(meta.get('epoch', 0)),
                     train_cfg=plain_config_value(cfg.get('train_cfg') or {}),
                     seed=meta.get('seed'))
