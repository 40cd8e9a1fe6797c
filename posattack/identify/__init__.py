"""Identification: rank a tensor's channels by the position they carry.

Every method has the same shape (:mod:`.base`: views, observe, all_reduce, to_ranking) and
ends in a ChannelRanking, so the sweep, tools/identify.py and the removal hook take any of
them. Methods, one per module:

* :mod:`.flip_difference`: pooled activation of x vs its flips (Islam et al., the paper);
* :mod:`.grid_probe`: the read-out weights of a frozen-backbone grid probe (a trained probe,
  so it ranks through its own driver, :func:`~.grid_probe.frozen_grid_probe`).

:mod:`.run` drives a method over a dataloader (:func:`identify_channels`).
"""
from __future__ import annotations

from .base import (IDENTIFICATION_METHODS, IdentificationMethod, build_identification_method,
                   identification_method_class, register_identification_method)
from .flip_difference import METHOD, FlipDifferenceAccumulator, flip_images
from .run import identify_channels

__all__ = [
    'FlipDifferenceAccumulator', 'IDENTIFICATION_METHODS', 'IdentificationMethod', 'METHOD',
    'build_identification_method', 'flip_images', 'identification_method_class',
    'identify_channels', 'register_identification_method',
]
