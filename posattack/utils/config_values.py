"""Config values compared across runs: what a work dir recorded against what runs now.

Both ``--resume`` (posattack/attack/run_fingerprint.py) and ``--keep-finished``
(posattack/training/kept_model.py) compare a config written out earlier with the one in
hand. A config read back from text has dicts for ConfigDicts and lists for tuples, and a
pipeline may hold classes, so both sides are first reduced to plain JSON-like values; and
the loader settings that only change how fast images come are left out of the comparison.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ['LOADER_ONLY_KEYS', 'plain_config_value', 'without_loader_only_keys']

# Loader settings that change how fast images come, not which, in what order or how.
LOADER_ONLY_KEYS = ('num_workers', 'persistent_workers', 'pin_memory', 'prefetch_factor')


def plain_config_value(value: Any) -> Any:
    """``value`` as plain JSON-like types: mappings to dicts with string keys, tuples to
    lists, classes to their dotted names, anything else not JSON to its repr; a config
    written out and read back compares equal to the one it came from."""
    if isinstance(value, Mapping):
        return {str(k): plain_config_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_config_value(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, type):
        return f'{value.__module__}.{value.__qualname__}'
    return repr(value)


def without_loader_only_keys(loader: Any) -> Any:
    """A dataloader config without :data:`LOADER_ONLY_KEYS` (a copy; anything that is not a
    mapping, e.g. None for a config without that loader, comes back as it is)."""
    if not isinstance(loader, Mapping):
        return loader
    return {key: value for key, value in loader.items() if key not in LOADER_ONLY_KEYS}
