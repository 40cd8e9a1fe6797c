"""The depth profile's read-out column: how much position each profiled layer *holds*
(decodable by the ICLR 2020 read-out, :mod:`posattack.readout`), beside how much the
prediction *depends* on its position channels (the attack).

Opt-in (``ProfileOptions.readout``, ``tools/depth_profile.py --readout``): per layer, one
read-out per target map on the layer alone (no fused read-out: the column is per layer),
trained on the config's train images and scored on its test images and on black, white and
noise inputs. It runs before the attack, so a bad target name or an empty image folder
fails before any long computation; its work dir is ``<profile>/readout/`` (resumable with
the profile's ``--resume``).

Usage::

    column = readout_column(model, cfg, opts, ['backbone.layer1', 'backbone:3'])
    column['backbone:3']['gradient_h']['natural']['spc']['estimate']
"""
from __future__ import annotations

import os.path as osp
from collections.abc import Sequence

from ..readout.run import ReadoutOptions, readout_model

__all__ = ['readout_column', 'readout_options']


def readout_options(opts, layers: Sequence[str]) -> ReadoutOptions:
    """The read-out run of a profile: its layers, one read-out each, the profile's seeds."""
    return ReadoutOptions(
        opts.config, opts.checkpoint, osp.join(opts.work_dir, 'readout'),
        cfg_options=opts.cfg_options, trust_checkpoint=opts.trust_checkpoint,
        layers=list(layers), fuse=False, targets=list(opts.readout_targets),
        epochs=opts.readout_epochs, bootstrap=opts.bootstrap,
        bootstrap_seed=opts.bootstrap_seed, resume=opts.resume)


def readout_column(model, cfg, opts, layers: Sequence[str]) -> dict[str, dict]:
    """Per layer, per target map, per input: ``{'spc': {...}, 'mae': {...}, 'constant': n}``."""
    result = readout_model(model, cfg, readout_options(opts, layers))
    column: dict[str, dict] = {layer: {} for layer in layers}
    for row in result['rows']:
        column[row['layers'][0]][row['target']] = row['scores']
    return column
