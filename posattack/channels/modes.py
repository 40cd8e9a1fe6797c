"""The names of the ways to choose channels, in one place.

An attack *setting* is ``CLEAN`` (nothing removed), ``TARGETED`` (the top of a ranking) or
``RANDOM`` (a seeded draw of as many); the removal hook also takes ``EXPLICIT`` channel ids.
They are plain strings, as they appear in configs, results.json and the CSV.
"""
from __future__ import annotations

CLEAN = 'clean'
TARGETED = 'targeted'
RANDOM = 'random'
EXPLICIT = 'explicit'

#: The modes of an attack setting (tools/attack.py's sweep), in the order reports show them.
SETTING_MODES = (CLEAN, TARGETED, RANDOM)
#: How the removal hook and select_channels choose channels.
SELECTION_MODES = (TARGETED, RANDOM, EXPLICIT)
