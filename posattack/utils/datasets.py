"""Describe a dataset in an error message, and count what may not be countable."""
from __future__ import annotations

from typing import Any, Optional

__all__ = ['describe_dataset', 'length_or_none']


def length_or_none(obj: Any) -> Optional[int]:
    """``len(obj)``, or None for an object without a length (an iterable sampler, a generator)."""
    try:
        return len(obj)
    except TypeError:
        return None


def describe_dataset(dataset: Any) -> str:
    """``'CityscapesDataset, data_root=...'``: what a user checks when a dataset is empty."""
    parts = [type(dataset).__name__]
    for attribute in ('data_root', 'data_prefix', 'ann_file'):
        value = getattr(dataset, attribute, None)
        if value:
            parts.append(f'{attribute}={value!r}')
    return ', '.join(parts)

