"""Position read-out (Islam, Jia & Bruce, ICLR 2020): how much absolute position a frozen
layer holds, decoded by a small trained read-out and scored against position maps.

* :mod:`.target_maps`: the maps (gradients, Gaussian, stripes), a registry;
* :mod:`.inputs`: image folders and the black, white and noise inputs;
* :mod:`.base`: the read-out interface and registry; :mod:`.posenet`: the authors' read-out;
* :mod:`.features`: frozen features of named layers, padding and random-init variants;
* :mod:`.training`: the authors' optimisation; :mod:`.metrics`: SPC, MAE, intervals;
* :mod:`.run`: every variant, layer set and target (tools/position_readout.py);
  :mod:`.report`: readout.md and readout.png.
"""
from __future__ import annotations

from . import posenet  # noqa: F401  (registers the built-in read-out)
from .base import READOUTS, PositionReadout, build_readout, register_readout
from .metrics import TargetRanks, image_scores, spearman, summarize
from .run import READOUT_FORMAT, ReadoutOptions, readout_model, run_readout
from .target_maps import TARGET_MAPS, register_target_map, target_map, target_map_names

__all__ = [
    'READOUTS', 'READOUT_FORMAT', 'PositionReadout', 'ReadoutOptions', 'TARGET_MAPS',
    'TargetRanks', 'build_readout', 'image_scores', 'readout_model', 'register_readout',
    'register_target_map', 'run_readout', 'spearman', 'summarize', 'target_map',
    'target_map_names',
]
