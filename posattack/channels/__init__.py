"""Channels of one tensor inside a model: name it, capture it, rank, select and remove them.

* :mod:`.layers`: ``'backbone:3'``-style names, and :func:`~.layers.capture` (a hook scoped
  by ``with``); :mod:`.forward`: run a model only as far as one tensor;
* :mod:`.ranking`: ChannelRanking, the tagged JSON format every identification method
  writes; :mod:`.ranking_comparison`: how far two rankings agree;
* :mod:`.modes` and :mod:`.selection`: which channels (targeted, random, explicit);
* :mod:`.ablations`: what a removed channel becomes (zero, mean, gaussian_noise), by name;
  :mod:`.channel_statistics`: the per-channel mean and std some ablations read;
* :mod:`.removal`: ChannelRemoval, the removal as a ``with`` block;
  :mod:`.hook`: the same as an MMEngine hook for mmseg's own tools/test.py.
"""
from __future__ import annotations

from .ablations import (ABLATIONS, Ablation, ChannelStatistics, ablation_names, get_ablation,
                        register_ablation)
from .channel_statistics import channel_means, channel_statistics
from .forward import forward_to_layer, global_average_pool
from .hook import ChannelRemovalHook
from .layers import (LayerRef, StopForward, capture, default_layer, list_layer_names,
                     parse_layer_name, replace_output, resolve_layer, select_output, unwrap_model)
from .modes import CLEAN, EXPLICIT, RANDOM, SELECTION_MODES, SETTING_MODES, TARGETED
from .ranking import ChannelRanking
from .removal import ChannelRemoval, replace_channels
from .selection import (count_from_fraction, is_integer_at_least, random_channels, select_channels,
                        validate_selection_args)

__all__ = [
    'ABLATIONS', 'Ablation', 'CLEAN', 'ChannelRanking', 'ChannelRemoval', 'ChannelRemovalHook',
    'ChannelStatistics', 'EXPLICIT', 'LayerRef', 'RANDOM', 'SELECTION_MODES', 'SETTING_MODES',
    'StopForward', 'TARGETED', 'ablation_names', 'capture', 'channel_means', 'channel_statistics',
    'count_from_fraction', 'default_layer', 'forward_to_layer', 'get_ablation',
    'global_average_pool', 'is_integer_at_least', 'list_layer_names', 'parse_layer_name',
    'random_channels', 'register_ablation', 'replace_channels', 'replace_output', 'resolve_layer',
    'select_channels', 'select_output', 'unwrap_model', 'validate_selection_args',
]
