"""The depth profile: where in depth a segmentor keeps position, the attack layer by layer.

* :mod:`.depth_layers`: which tensors along the depth can be attacked and does the
  prediction read them; :mod:`.concentration`: how concentrated a layer's position signal is;
* :mod:`.run`: identify every layer in one pass, then attack each (tools/depth_profile.py);
* :mod:`.report`: profile.md and its plots.

This package also answers for the 0.1 module ``posattack.profile``: the names it held are
exported here.
"""
from __future__ import annotations

from .run import (ALL_LAYERS, DEFAULT_FRACTIONS, IDENTIFICATION_FORMAT, PROFILE_FORMAT,
                  ProfileOptions, build_profile, forward_channels, identify_layers, profile_model,
                  run_profile, safe_layer_name)

__all__ = [
    'ALL_LAYERS', 'DEFAULT_FRACTIONS', 'IDENTIFICATION_FORMAT', 'PROFILE_FORMAT', 'ProfileOptions',
    'build_profile', 'forward_channels', 'identify_layers', 'profile_model', 'run_profile',
    'safe_layer_name',
]
